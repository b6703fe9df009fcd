package chronos

import (
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// TestBerlinAndLeapDays: the next due times over Berlin's DST changes (2026-03-29 02:00 →
// 03:00, 2026-10-25 03:00 → 02:00) and leap days, as a table.
func TestBerlinAndLeapDays(t *testing.T) {
	for _, tc := range []struct {
		cron, tz, from string
		want           []string // the next times, UTC
	}{
		// 02:30 does not exist on 2026-03-29 in Berlin: skipped.
		{"30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", []string{"2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"}},
		// 02:30 happens twice on 2026-10-25 (CEST then CET): due at both instants.
		{"30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", []string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"}},
		// 03:30 exists once on both days.
		{"30 3 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", []string{"2026-03-29T01:30:00Z", "2026-03-30T01:30:00Z"}},
		// Hourly in Berlin on the fall-back day: 25 runs in that local day.
		{"0 * * * *", "Europe/Berlin", "2026-10-24T21:59:00Z", nil},
		// Leap days: Feb 29 only in leap years; "last day" schedules via day 28-29.
		{"0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", []string{"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
		{"0 12 * 2 *", "America/New_York", "2028-02-28T18:00:00Z", []string{"2028-02-29T17:00:00Z", "2029-02-01T17:00:00Z"}},
	} {
		p := mustPlan(t, Schedule{ID: "s", Cron: tc.cron, Timezone: tc.tz})
		if tc.want == nil {
			d, _ := p.Due(at(tc.from), at("2026-10-25T22:59:00Z"))
			if n := len(d.Missed) + boolToInt(d.Start != nil); n != 25 {
				t.Errorf("%s in %s over the fall-back day: %d due times, want 25", tc.cron, tc.tz, n)
			}
			continue
		}
		got := at(tc.from)
		for i, w := range tc.want {
			got = p.Next(got)
			if !got.Equal(at(w)) {
				t.Errorf("%s in %s from %s: time %d = %s, want %s", tc.cron, tc.tz, tc.from, i, got.UTC().Format(time.RFC3339), w)
				break
			}
		}
	}
}

func TestISO8601Schedules(t *testing.T) {
	for _, tc := range []struct {
		spec, from string
		want       []string // "" = no more
	}{
		{"R/2026-01-01T00:00:00Z/PT30M", "2026-01-01T10:10:00Z", []string{"2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z"}},
		{"R2/2026-01-01T00:00:00Z/P1D", "2025-12-01T00:00:00Z", []string{"2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", ""}},
		{"R0/2026-01-01T00:00:00Z/P1D", "2025-12-01T00:00:00Z", []string{""}},
		{"R/2026-01-31T08:00:00Z/P1M", "2026-02-01T00:00:00Z", []string{"2026-03-03T08:00:00Z"}},
		{"R/2026-01-01T00:00:00Z/P1W", "2026-01-01T00:00:00Z", []string{"2026-01-08T00:00:00Z"}},
		// Starts centuries back: more than a time.Duration before now.
		{"R/1700-01-01T00:00:00Z/PT1S", "2026-01-01T10:10:00Z", []string{"2026-01-01T10:10:01Z", "2026-01-01T10:10:02Z"}},
		{"R/0001-01-01T00:00:00Z/P1M", "2026-01-15T00:00:00Z", []string{"2026-02-01T00:00:00Z"}},
		// Ends with year 9999.
		{"R/9999-12-31T23:59:58Z/PT1S", "9999-12-31T23:59:58Z", []string{"9999-12-31T23:59:59Z", ""}},
	} {
		p := mustPlan(t, Schedule{ID: "s", Cron: tc.spec})
		got := at(tc.from)
		for _, w := range tc.want {
			got = p.Next(got)
			if w == "" && !got.IsZero() || w != "" && !got.Equal(at(w)) {
				t.Errorf("%s from %s: %v, want %q", tc.spec, tc.from, got, w)
				break
			}
		}
	}
	for _, bad := range []string{"R/2026-01-01T00:00:00Z", "Rx/2026-01-01T00:00:00Z/P1D", "R/yesterday/P1D", "R/2026-01-01T00:00:00Z/PT0S", "R/2026-01-01T00:00:00Z/1D",
		// Periods past a century, or past an int: they once wrapped to a zero or negative one.
		"R/2026-01-01T00:00:00Z/P101Y", "R/2026-01-01T00:00:00Z/P281474976710656Y", "R/2026-01-01T00:00:00Z/P1DT9999999999999S",
		"R/2026-01-01T00:00:00Z/PT9999999999H", "R/2026-01-01T00:00:00Z/P99999999999999999999D"} {
		if _, err := ParseSchedule(Schedule{ID: "s", Cron: bad}); err == nil || err.(*FieldError).Field != "cron" {
			t.Errorf("%q: %v, want a cron field error", bad, err)
		}
	}
	if n, err := isoSeconds("P1DT2H3M4S"); err != nil || n != 93784 {
		t.Errorf("isoSeconds = %d, %v", n, err)
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	j := Job{ID: "etl.load-1", Run: RunSpec{Cmd: "true"}}
	if err := j.Normalize(); err != nil {
		t.Fatal(err)
	}
	if j.Run.CPUs != 1 || j.Run.Mem != 128 || j.Run.Restart.Policy != RestartNever || *j.Run.Restart.BackoffLimit != 6 || j.Run.MaxLaunchDelay != 3600 || *j.SuccessfulHistoryLimit != 10 {
		t.Fatalf("defaults: %+v", j)
	}
	for field, j := range map[string]Job{
		"run.args":                     {ID: "a", Run: RunSpec{Cmd: "x", Args: []string{"y"}}},
		"run.artifacts[0].uri":         {ID: "a", Run: RunSpec{Cmd: "x", Artifacts: []Artifact{{URI: "ftp://x/y"}}}},
		"dependencies":                 {ID: "a", Run: RunSpec{Cmd: "x"}, Dependencies: []string{"b"}, Schedules: []Schedule{{ID: "s", Cron: "@daily"}}},
		"dependencies[0]":              {ID: "a", Run: RunSpec{Cmd: "x"}, Dependencies: []string{"a"}},
		"run.mem":                      {ID: "a", Run: RunSpec{Cmd: "x", CPUs: 1}},
		"run.placement.constraints[0]": {ID: "a", Run: RunSpec{Cmd: "x", Placement: &Placement{Constraints: []PlacementConstraint{{Attribute: "rack", Operator: "LIKE", Value: "("}}}}},
		"failedHistoryLimit":           {ID: "a", Run: RunSpec{Cmd: "x"}, FailedHistoryLimit: new(int(-1))},
	} {
		err := j.Normalize()
		if fe, ok := err.(*FieldError); !ok || fe.Field != field {
			t.Errorf("want an error naming %s, got %v", field, err)
		}
	}
}

func TestCycleIsNamedWithItsPath(t *testing.T) {
	jobs := map[string]*Job{
		"a": {ID: "a", Dependencies: []string{"c"}},
		"b": {ID: "b", Dependencies: []string{"a"}},
		"c": {ID: "c", Dependencies: []string{"b"}},
		"d": {ID: "d", Dependencies: []string{"a"}},
	}
	lookup := func(id string) *Job { return jobs[id] }
	err := checkGraph(jobs["a"], lookup)
	ge, ok := err.(*GraphError)
	if !ok || strings.Join(ge.Path, ",") != "a,b,c,a" {
		t.Fatalf("cycle: %v", err)
	}
	jobs["a"].Dependencies = nil
	if err := checkGraph(jobs["c"], lookup); err != nil {
		t.Fatalf("no cycle: %v", err)
	}
	if err := checkGraph(&Job{ID: "e", Dependencies: []string{"a", "zz"}}, lookup); err == nil || err.(*GraphError).Field != "dependencies[1]" {
		t.Fatalf("missing parent: %v", err)
	}
	st := &leaderState{jobs: map[string]*jobState{}}
	for id, j := range jobs {
		st.jobs[id] = &jobState{job: j}
	}
	if got := st.dependants("a"); strings.Join(got, ",") != "b,d" {
		t.Fatalf("dependants of a: %v", got)
	}
	st.jobs["e"] = &jobState{job: &Job{ID: "e", Dependencies: []string{"a"}}}
	st.jobsChanged()
	if got := st.dependants("a"); strings.Join(got, ",") != "b,d,e" {
		t.Fatalf("dependants of a after a job change: %v", got)
	}
}

// TestRunTransitions walks the run state machine through a table of updates.
func TestRunTransitions(t *testing.T) {
	now := at("2026-11-25T10:00:00Z")
	two := 2
	backoff := 10.0
	onFailure := Restart{Policy: RestartOnFailure, BackoffLimit: &two, BackoffSeconds: &backoff}
	never := Restart{Policy: RestartNever, BackoffLimit: &two}
	exit := func(n int) *int { return &n }
	for _, tc := range []struct {
		name    string
		restart Restart
		states  []task.State
		want    string
		outcome outcome
		retries int
	}{
		{"success", never, []task.State{task.Starting, task.Running, task.Finished}, RunSuccess, ended, 0},
		{"running", never, []task.State{task.Running}, RunActive, changed, 0},
		{"unreachable stays active", never, []task.State{task.Running, task.Unreachable}, RunActive, changed, 0},
		{"never: failed", never, []task.State{task.Running, task.Failed}, RunFailed, ended, 0},
		{"on failure: retry", onFailure, []task.State{task.Running, task.Failed}, RunInitial, changed, 1},
		{"dropped: launched again, no retry used", never, []task.State{task.Dropped}, RunInitial, changed, 0},
		{"unknown after reconcile: launched again", never, []task.State{task.Unknown}, RunInitial, changed, 0},
		{"gone after running: failed", never, []task.State{task.Running, task.Gone}, RunFailed, ended, 0},
		{"error: failed, not relaunched", never, []task.State{task.Error}, RunFailed, ended, 0},
	} {
		r := &Run{ID: "r", JobID: "j", Status: RunInitial, CreatedAt: now}
		r.launch("j_r.1", api.Offer{AgentID: "a1", Hostname: "h1"}, now)
		var out outcome
		for _, s := range tc.states {
			st := api.TaskStatus{TaskID: "j_r.1", State: s, Timestamp: now}
			if s == task.Failed {
				st.ExitStatus = exit(3)
			}
			out = r.onStatus(st, tc.restart, now)
		}
		if r.Status != tc.want || out != tc.outcome || r.Retries != tc.retries {
			t.Errorf("%s: status %s outcome %d retries %d, want %s %d %d", tc.name, r.Status, out, r.Retries, tc.want, tc.outcome, tc.retries)
		}
		if tc.want == RunFailed && r.CompletedAt == nil {
			t.Errorf("%s: no completedAt", tc.name)
		}
		if tc.name == "on failure: retry" && (r.NextAttemptAt == nil || r.NextAttemptAt.Sub(now) != 10*time.Second || r.waiting(now) || !r.waiting(now.Add(10*time.Second))) {
			t.Errorf("retry waits %v", r.NextAttemptAt)
		}
	}
	// A late update of an earlier attempt changes nothing.
	r := &Run{ID: "r", JobID: "j", Status: RunInitial}
	r.launch("j_r.1", api.Offer{}, now)
	r.onStatus(api.TaskStatus{TaskID: "j_r.1", State: task.Failed}, onFailure, now)
	r.launch("j_r.2", api.Offer{}, now)
	if out := r.onStatus(api.TaskStatus{TaskID: "j_r.1", State: task.Failed}, onFailure, now); out != unchanged || r.Status != RunStarting {
		t.Fatalf("late update: %d %s", out, r.Status)
	}
	// Backoff doubles and is capped.
	if onFailure.backoff(1) != 10*time.Second || onFailure.backoff(3) != 40*time.Second || onFailure.backoff(30) != maxBackoff {
		t.Fatalf("backoff: %s %s %s", onFailure.backoff(1), onFailure.backoff(3), onFailure.backoff(30))
	}
}
