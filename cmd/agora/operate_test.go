package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// TestOperatorCLIOnContainerd walks the operator's commands as README's tour does, against a
// real agora dev on containerd: an app added and followed to healthy, scaled, a task's logs, a
// task killed and replaced, a rollback, an agent drained (its tasks killed, nothing placed on
// it) and reactivated, the app removed; every answer checked against the API.
func TestOperatorCLIOnContainerd(t *testing.T) {
	// Mostly waiting: it shares the machine with the other tests that wait.
	t.Parallel()
	base, _, _ := startMarathonDev(t, taskPorts())
	m := "--master=" + base
	waitJob(t, "the service framework ready", 30*time.Second, func() bool { return httpJSON(t, "GET", base+"/v2/apps", nil, nil) == http.StatusOK })
	file := filepath.Join(t.TempDir(), "web.json")
	def := `{"id": "/cli/web", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}}, "args": ["-sleep", "24h"],
		"cpus": 0.1, "mem": 32, "instances": 2, "portDefinitions": [{"port": 0, "name": "http"}],
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1, "timeoutSeconds": 2}]}`
	if err := os.WriteFile(file, []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(want string, args ...string) string {
		t.Helper()
		out, err := agora(t, append(args, m)...)
		if err != nil {
			t.Fatalf("agora %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, want) {
			t.Fatalf("agora %v printed:\n%s\nwant it to say %q", args, out, want)
		}
		return out
	}
	appTasks := func() []appTask {
		var out struct {
			Tasks []appTask `json:"tasks"`
		}
		httpJSON(t, "GET", base+"/v2/apps/cli/web/tasks", nil, &out)
		return out.Tasks
	}
	running := func(n int) func() bool {
		return func() bool {
			ts := appTasks()
			healthy := 0
			for _, tk := range ts {
				if tk.State == "TASK_RUNNING" && len(tk.HealthCheckResults) > 0 && tk.HealthCheckResults[0].Alive {
					healthy++
				}
			}
			return len(ts) == n && healthy == n
		}
	}

	must("app /cli/web deployed in", "app", "add", file, "--wait")
	if !running(2)() {
		t.Fatalf("after app add --wait: %+v, want 2 healthy", appTasks())
	}
	must("/cli/web  2/2", "app", "list")
	must("app /cli/web deployed in", "app", "scale", "/cli/web", "3", "--wait")
	if !running(3)() {
		t.Fatalf("after app scale --wait: %+v, want 3 healthy", appTasks())
	}
	if out := must("state: TASK_RUNNING", "app", "tasks", "/cli/web", "-o", "yaml"); strings.Count(out, "state: TASK_RUNNING") != 3 {
		t.Fatalf("app tasks -o yaml:\n%s\nwant 3 running", out)
	}

	victim := appTasks()[0].ID
	must("testapp: listening", "task", "logs", victim)
	must("TASK_RUNNING", "task", "show", victim)
	must("kill sent", "task", "kill", victim, "--grace", "1s")
	waitJob(t, "the killed instance replaced", 60*time.Second, func() bool {
		for _, tk := range appTasks() {
			if tk.ID == victim {
				return false
			}
		}
		return running(3)()
	})
	var st api.TaskStatus
	if httpJSON(t, "GET", base+"/v1/tasks/"+victim, nil, &st); st.State != "TASK_KILLED" {
		t.Fatalf("the killed task is %s, want TASK_KILLED", st.State)
	}

	must("rolling back to", "app", "rollback", "/cli/web", "--wait")
	if !running(2)() {
		t.Fatalf("after the rollback: %+v, want 2 healthy (the first version's instances)", appTasks())
	}

	// A deployment that cannot finish (its readiness check never passes): deploy list shows it,
	// watch stops watching on Ctrl-C and leaves it going, cancel rolls it back.
	stuck := filepath.Join(t.TempDir(), "stuck.json")
	os.WriteFile(stuck, []byte(`{"env": {"STUCK": "1"}, "readinessChecks": [{"name": "r", "protocol": "HTTP", "path": "/never-ready",
		"portName": "http", "intervalSeconds": 1, "timeoutSeconds": 1}]}`), 0o644)
	var res changeResult
	out := must(`"deploymentId"`, "app", "update", "/cli/web", stuck, "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.DeploymentID == "" {
		t.Fatalf("app update -o json: %v\n%s", err, out)
	}
	must(res.DeploymentID, "deploy", "list")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // Ctrl-C after 2 s
	var watched strings.Builder
	err := run(ctx, []string{"agora", "deploy", "watch", res.DeploymentID, m}, &watched, &watched)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "stopped watching; deployment "+res.DeploymentID+" goes on") || !strings.Contains(watched.String(), "step 1/1") {
		t.Fatalf("deploy watch stopped by Ctrl-C: %v\n%s", err, watched.String())
	}
	must(res.DeploymentID, "deploy", "list")
	out = must("cancelled; rollback: deployment", "deploy", "cancel", res.DeploymentID)
	rollback := strings.Fields(strings.SplitN(out, "rollback: deployment ", 2)[1])[0]
	must("deployed in", "deploy", "watch", rollback)
	if !running(2)() {
		t.Fatalf("after cancelling the stuck deployment: %+v, want 2 healthy", appTasks())
	}

	var agents []api.AgentView
	httpJSON(t, "GET", base+"/v1/agents", nil, &agents)
	if len(agents) != 1 {
		t.Fatalf("agents: %+v", agents)
	}
	ag := agents[0].ID
	must("drained", "agent", "drain", ag)
	waitJob(t, "the drained agent's tasks killed", 60*time.Second, func() bool {
		return httpJSON(t, "GET", base+"/v1/agents", nil, &agents) == http.StatusOK && agents[0].Tasks == 0 && agents[0].State == "draining"
	})
	time.Sleep(3 * time.Second) // allocation cycles run every 200 ms: nothing may be placed on it
	if ts := appTasks(); len(ts) != 0 {
		t.Fatalf("tasks on a drained agent: %+v", ts)
	}
	must("STATE:           draining", "agent", "show", ag)
	must("reactivated", "agent", "reactivate", ag)
	waitJob(t, "the app back on the reactivated agent", 60*time.Second, running(2))

	must("ID  APPS  STEP", "deploy", "list")
	must("app /cli/web removed", "app", "remove", "/cli/web", "--wait")
	if code := httpJSON(t, "GET", base+"/v2/apps/cli/web", nil, nil); code != http.StatusNotFound {
		t.Fatalf("GET the removed app: %d, want 404", code)
	}
	out, err = agora(t, "app", "show", "/nope", m)
	if err == nil || exitCode(err, &strings.Builder{}) != exitError || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("app show /nope: %v\n%s", err, out)
	}
	var raw json.RawMessage
	if code := httpJSON(t, "POST", base+"/v1/tasks/nope/kill", nil, &raw); code != http.StatusNotFound {
		t.Fatalf("kill an unknown task: %d %s, want 404", code, raw)
	}
}
