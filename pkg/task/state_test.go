package task

import (
	"encoding/json"
	"testing"
)

func TestTerminalStates(t *testing.T) {
	terminal := map[State]bool{Finished: true, Failed: true, Killed: true, Error: true, Lost: true, Dropped: true, Gone: true, GoneByOperator: true}
	for _, s := range All {
		if s.IsTerminal() != terminal[s] {
			t.Errorf("%s.IsTerminal() = %v", s, s.IsTerminal())
		}
	}
}

// TestCanTransition checks every pair of states against the table drawn in state.go.
func TestCanTransition(t *testing.T) {
	live := []State{Staging, Starting, Running, Killing, Unreachable, Unknown}
	allowed := map[State][]State{
		Staging:     {Staging, Starting, Running, Killing, Unreachable},
		Starting:    {Starting, Running, Killing, Unreachable},
		Running:     {Running, Killing, Unreachable},
		Killing:     {Killing, Unreachable},
		Unreachable: {Unreachable, Running, Killing},
		Unknown:     {Unknown, Staging, Starting, Running, Killing, Unreachable},
	}
	for _, from := range All {
		for _, to := range All {
			want := false
			if !from.IsTerminal() {
				if to.IsTerminal() {
					want = true
				}
				for _, a := range allowed[from] {
					if a == to {
						want = true
					}
				}
			}
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	if len(live)+8 != len(All) {
		t.Fatalf("the test knows %d states, the package %d", len(live)+8, len(All))
	}
	if CanTransition("TASK_BOGUS", Running) || CanTransition(Running, "TASK_BOGUS") {
		t.Error("an unknown state may transition")
	}
}

func TestParseStateAndJSON(t *testing.T) {
	for in, want := range map[string]State{"TASK_RUNNING": Running, "running": Running, " Killed ": Killed, "task_gone_by_operator": GoneByOperator} {
		if got, err := ParseState(in); err != nil || got != want {
			t.Errorf("ParseState(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseState("sleeping"); err == nil {
		t.Error("ParseState(sleeping) accepted")
	}
	b, _ := json.Marshal(struct{ S State }{Running})
	if string(b) != `{"S":"TASK_RUNNING"}` {
		t.Errorf("JSON = %s", b)
	}
	var s State
	if err := json.Unmarshal([]byte(`"TASK_NAPPING"`), &s); err == nil {
		t.Error("an unknown state unmarshalled")
	}
	if err := json.Unmarshal([]byte(`"TASK_FAILED"`), &s); err != nil || s != Failed {
		t.Errorf("unmarshal = %q, %v", s, err)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add("TASK_RUNNING")
	f.Add("killing")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseState(in)
		if err != nil {
			return
		}
		if !s.Valid() {
			t.Fatalf("ParseState(%q) = %q, which is not valid", in, s)
		}
		if again, err := ParseState(string(s)); err != nil || again != s {
			t.Fatalf("%q does not parse back: %v", s, err)
		}
	})
}
