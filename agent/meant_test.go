package agent

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
)

// TestCallsMeantForAnotherAgentAreRefused: a master names the agent it means; an agent of
// another id at that address (it replaced the one meant, whose data dir was lost) answers 421
// and runs nothing, while a call naming it, or naming none (an operator's), is served.
func TestCallsMeantForAnotherAgentAreRefused(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	do := func(method, path, meant, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, a.base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if meant != "" {
			req.Header.Set(api.HeaderAgentID, meant)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	launch := `{"task_id": "meant-for-the-old", "cmd": "sleep 60", "resources": {"cpus": 0.1, "mem": 32}}`
	if code, body := do("POST", "/v1/tasks", "old-agent-S0", launch); code != http.StatusMisdirectedRequest || !strings.Contains(body, "not agent old-agent-S0") {
		t.Fatalf("a launch meant for another agent: %d %s, want 421 naming it", code, body)
	}
	if _, ok := a.tasks.get("meant-for-the-old"); ok {
		t.Fatal("the agent took a launch meant for another")
	}
	if code, body := do("GET", "/v1/tasks", "old-agent-S0", ""); code != http.StatusMisdirectedRequest {
		t.Fatalf("a task list meant for another agent: %d %s, want 421", code, body)
	}
	for _, meant := range []string{a.ID(), ""} {
		if code, body := do("GET", "/v1/tasks", meant, ""); code != http.StatusOK {
			t.Fatalf("meant for %q: %d %s, want 200", meant, code, body)
		}
	}
}
