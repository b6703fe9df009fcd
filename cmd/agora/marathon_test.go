package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// marathonApp is the part of Marathon's app JSON the tests read.
type marathonApp struct {
	ID             string              `json:"id"`
	Instances      int                 `json:"instances"`
	TasksRunning   int                 `json:"tasksRunning"`
	TasksHealthy   int                 `json:"tasksHealthy"`
	TasksUnhealthy int                 `json:"tasksUnhealthy"`
	TasksStaged    int                 `json:"tasksStaged"`
	Deployments    []map[string]string `json:"deployments"`
	Version        string              `json:"version"`
	Tasks          []struct {
		ID    string `json:"id"`
		Host  string `json:"host"`
		Ports []int  `json:"ports"`
		State string `json:"state"`
	} `json:"tasks"`
	Extra map[string]any `json:"-"`
}

func getApp(t *testing.T, base, id string) (marathonApp, int) {
	t.Helper()
	var out struct {
		App marathonApp `json:"app"`
	}
	code := httpJSON(t, "GET", base+"/v2/apps"+id+"?embed=app.tasks", nil, &out)
	return out.App, code
}

// waitApp waits until the app is as cond wants, with no deployment left.
func waitApp(t *testing.T, base, id, what string, cond func(marathonApp) bool) marathonApp {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var app marathonApp
	for time.Now().Before(deadline) {
		var code int
		app, code = getApp(t, base, id)
		if code == http.StatusOK && cond(app) && len(app.Deployments) == 0 {
			t.Logf("%s: %s", id, what)
			return app
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: never %s; last %+v", id, what, app)
	return app
}

// TestMarathonAppLifecycle is the service framework on the real path: agora dev with its agent
// on containerd, Marathon's API over HTTP. An app of the test image with 3 instances and an
// HTTP health check comes up healthy; it scales to 5 and back to 2; a task killed through the
// API is replaced; deleting the app leaves no container behind.
func TestMarathonAppLifecycle(t *testing.T) {
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	_, got := startCmd(t, []string{"dev", "--data-dir", t.TempDir(), "--containerd", sock, "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--agent-http", "127.0.0.1:0", "--containerd-namespace", ns, "--allocation-interval", "200ms",
		"--resources", fmt.Sprintf("cpus:2;mem:2048;disk:1000;ports:[%d-%d]", 32100, 32140)}, `API:\s+(http://\S+)`, `agent API:\s+(http://\S+)`)
	base, agentBase := got[0], got[1]

	app := `{"id": "/demo/web", "container": {"type": "DOCKER", "docker": {"image": "` + containerdtest.TestAppImage + `"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 3,
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}],
		"labels": {"team": "a"}, "fetch": [{"uri": "http://example.invalid/kept.tgz"}]}`
	var created map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(app), &created)
		if code == http.StatusCreated {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /v2/apps: %d %v", code, created)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if created["id"] != "/demo/web" || created["fetch"] == nil || len(created["deployments"].([]any)) != 1 {
		t.Fatalf("created %v", created)
	}
	if code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(app), nil); code != http.StatusConflict {
		t.Fatalf("the same app again: %d, want 409", code)
	}
	a := waitApp(t, base, "/demo/web", "3 healthy", func(a marathonApp) bool { return a.TasksHealthy == 3 && a.TasksRunning == 3 })
	for _, tk := range a.Tasks {
		if len(tk.Ports) != 1 || tk.Ports[0] < 32100 || tk.Ports[0] > 32140 {
			t.Fatalf("task %+v: want one port from the agent's range", tk)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", tk.Ports[0]))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the instance %s does not answer on its port: %v", tk.ID, err)
		}
		resp.Body.Close()
	}

	// Scale with a partial PUT, as Marathon's users do.
	var res map[string]string
	if code := httpJSON(t, "PUT", base+"/v2/apps/demo/web", json.RawMessage(`{"instances": 5}`), &res); code != http.StatusOK || res["deploymentId"] == "" {
		t.Fatalf("scale to 5: %d %v", code, res)
	}
	waitApp(t, base, "/demo/web", "5 healthy", func(a marathonApp) bool { return a.TasksHealthy == 5 && a.Instances == 5 })
	if code := httpJSON(t, "PATCH", base+"/v2/apps/demo/web", json.RawMessage(`{"instances": 2}`), &res); code != http.StatusOK {
		t.Fatalf("scale to 2: %d %v", code, res)
	}
	a = waitApp(t, base, "/demo/web", "2 running", func(a marathonApp) bool { return a.TasksRunning == 2 && len(a.Tasks) == 2 })

	// A task killed through the API is replaced.
	victim := a.Tasks[0].ID
	var killed map[string]any
	if code := httpJSON(t, "DELETE", base+"/v2/apps/demo/web/tasks/"+victim, nil, &killed); code != http.StatusOK {
		t.Fatalf("kill a task: %d %v", code, killed)
	}
	waitApp(t, base, "/demo/web", "replaced the killed task", func(a marathonApp) bool {
		if a.TasksHealthy != 2 || len(a.Tasks) != 2 {
			return false
		}
		for _, tk := range a.Tasks {
			if tk.ID == victim {
				return false
			}
		}
		return true
	})

	// Bad input: Marathon's 422 names the path.
	var bad struct {
		Message string `json:"message"`
		Details []struct {
			Path string `json:"path"`
		} `json:"details"`
	}
	if code := httpJSON(t, "PUT", base+"/v2/apps/demo/web", json.RawMessage(`{"cpus": -1, "instances": -3}`), &bad); code != http.StatusUnprocessableEntity ||
		len(bad.Details) != 2 || bad.Details[0].Path != "/cpus" {
		t.Fatalf("bad update: %d %+v", code, bad)
	}
	var listed struct {
		Apps []marathonApp `json:"apps"`
	}
	if code := httpJSON(t, "GET", base+"/v2/apps?label=team==a", nil, &listed); code != http.StatusOK || len(listed.Apps) != 1 {
		t.Fatalf("GET /v2/apps?label=team==a: %d %+v", code, listed)
	}
	if code := httpJSON(t, "GET", base+"/v2/apps?label=team==b", nil, &listed); code != http.StatusOK || len(listed.Apps) != 0 {
		t.Fatalf("GET /v2/apps?label=team==b: %d %+v", code, listed)
	}

	// Delete: every instance ends; no container stays.
	if code := httpJSON(t, "DELETE", base+"/v2/apps/demo/web", nil, &res); code != http.StatusOK {
		t.Fatalf("delete: %d %v", code, res)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, code := getApp(t, base, "/demo/web")
		var tasks []api.Task
		httpJSON(t, "GET", agentBase+"/v1/tasks", nil, &tasks)
		live := 0
		for _, tk := range tasks {
			if !tk.Status.State.IsTerminal() {
				live++
			}
		}
		if code == http.StatusNotFound && live == 0 && containersIn(t, ns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after delete: app %d, %d live tasks, %d containers", code, live, containersIn(t, ns))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var deps []map[string]any
	if code := httpJSON(t, "GET", base+"/v2/deployments", nil, &deps); code != http.StatusOK || len(deps) != 0 {
		t.Fatalf("deployments after everything settled: %d %v", code, deps)
	}
	var tasks struct {
		Tasks []map[string]any `json:"tasks"`
	}
	if code := httpJSON(t, "GET", base+"/v2/tasks?status=running", nil, &tasks); code != http.StatusOK || len(tasks.Tasks) != 0 {
		t.Fatalf("GET /v2/tasks: %d %v", code, tasks)
	}
}

// containersIn counts the containers in a containerd namespace.
func containersIn(t *testing.T, ns string) int {
	t.Helper()
	ctx := containerdtest.Context(t)
	client := containerdtest.Client(t)
	cs, err := client.Containers(namespaces.WithNamespace(ctx, ns))
	if err != nil {
		t.Fatal(err)
	}
	return len(cs)
}
