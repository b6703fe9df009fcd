package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"

	"github.com/agora-sched/agora/frameworks/marathon"
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

// startMarathonDev runs agora dev with its agent on containerd (ports firstPort to +40), and
// extra flags, and returns its API, its agent's API and its containerd namespace.
func startMarathonDev(t *testing.T, firstPort int, extra ...string) (base, agentBase, ns string) {
	t.Helper()
	return startMarathonDevIn(t, t.TempDir(), firstPort, extra...)
}

// startMarathonDevIn is startMarathonDev with its data dir.
func startMarathonDevIn(t *testing.T, dataDir string, firstPort int, extra ...string) (base, agentBase, ns string) {
	t.Helper()
	sock := containerdtest.Socket(t)
	ns = testNamespace(t)
	_, got := startCmd(t, append([]string{"dev", "--data-dir", dataDir, "--containerd", sock, "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--agent-http", "127.0.0.1:0", "--containerd-namespace", ns, "--allocation-interval", "200ms", "--dns", "127.0.0.1:0",
		"--resources", fmt.Sprintf("cpus:2;mem:2048;disk:1000;ports:[%d-%d]", firstPort, firstPort+40)}, extra...), `API:\s+(http://\S+)`, `agent API:\s+(http://\S+)`)
	return got[0], got[1], ns
}

// postApp creates an app, retrying while the service framework is starting.
func postApp(t *testing.T, base, app string) map[string]any {
	t.Helper()
	var created map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(app), &created)
		if code == http.StatusCreated {
			return created
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /v2/apps: %d %v", code, created)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
	t.Parallel()
	first := taskPorts()
	base, agentBase, ns := startMarathonDev(t, first, "--fetch-allow-net", "127.0.0.1/32") // the artifact server is on loopback
	artifacts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("kept")) }))
	defer artifacts.Close()

	app := `{"id": "/demo/web", "container": {"type": "DOCKER", "docker": {"image": "` + containerdtest.TestAppImage + `"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 3,
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}],
		"labels": {"team": "a"}, "fetch": [{"uri": "` + artifacts.URL + `/kept.txt"}]}`
	created := postApp(t, base, app)
	if created["id"] != "/demo/web" || created["fetch"] == nil || len(created["deployments"].([]any)) != 1 {
		t.Fatalf("created %v", created)
	}
	if code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(app), nil); code != http.StatusConflict {
		t.Fatalf("the same app again: %d, want 409", code)
	}
	a := waitApp(t, base, "/demo/web", "3 healthy", func(a marathonApp) bool { return a.TasksHealthy == 3 && a.TasksRunning == 3 })
	for _, tk := range a.Tasks {
		if len(tk.Ports) != 1 || tk.Ports[0] < first || tk.Ports[0] > first+40 {
			t.Fatalf("task %+v: want one port from the agent's range", tk)
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", tk.Ports[0]))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the instance %s does not answer on its port: %v", tk.ID, err)
		}
		resp.Body.Close()
	}

	// /metrics, in Prometheus's format, from the master and the service framework.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"agora_marathon_apps 1", `agora_marathon_instances{state="TASK_RUNNING"} 3`, `agora_tasks{state="TASK_RUNNING"} 3`,
		`agora_offers_total{result="accepted"}`, "agora_allocation_cycle_seconds_count", `agora_status_updates_total{state="TASK_RUNNING"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
		}
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

	// Delete: every instance ends; no container stays; the app's StopApplication deployment
	// ends once the framework has heard its instances were killed (the app reads as gone at once).
	if code := httpJSON(t, "DELETE", base+"/v2/apps/demo/web", nil, &res); code != http.StatusOK {
		t.Fatalf("delete: %d %v", code, res)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, code := getApp(t, base, "/demo/web")
		live := liveTasks(t, agentBase)
		var deps []map[string]any
		depCode := httpJSON(t, "GET", base+"/v2/deployments", nil, &deps)
		if code == http.StatusNotFound && live == 0 && containersIn(t, ns) == 0 && depCode == http.StatusOK && len(deps) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after delete: app %d, %d live tasks, %d containers, deployments %d %v", code, live, containersIn(t, ns), depCode, deps)
		}
		time.Sleep(200 * time.Millisecond)
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

// sseEvent is one event of /v2/events.
type sseEvent struct {
	Type string
	Data map[string]any
	At   time.Time
}

// streamEvents reads /v2/events until the test ends.
func streamEvents(t *testing.T, base string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v2/events", nil)
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "text/event-stream" {
			break
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("GET /v2/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	out := make(chan sseEvent, 10000)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var typ string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var d map[string]any
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d) == nil {
					out <- sseEvent{Type: typ, Data: d, At: time.Now()}
				}
			}
		}
	}()
	return out
}

// eventStamp is an event's own timestamp: the framework's clock when it published it, which a
// busy machine cannot move (the time the test read it can lag by seconds, more for one event
// than for the next).
func eventStamp(t *testing.T, ev sseEvent) time.Time {
	t.Helper()
	s, _ := ev.Data["timestamp"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("event %v: timestamp %q: %v", ev.Data, s, err)
	}
	return at
}

func nextEvent(t *testing.T, ch <-chan sseEvent, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	timeout := time.After(90 * time.Second)
	for {
		select {
		case ev := <-ch:
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s within 90s", what)
		}
	}
}

// TestMarathonRollingUpgradeAndFailures: a config change rolls the app within its
// upgradeStrategy, as watched through /v2/events; an instance made unhealthy is replaced; a
// command that fails at once is relaunched with a growing backoff.
func TestMarathonRollingUpgradeAndFailures(t *testing.T) {
	t.Parallel()
	base, _, _ := startMarathonDev(t, taskPorts())
	events := streamEvents(t, base)
	nextEvent(t, events, "event_stream_attached", func(ev sseEvent) bool { return ev.Type == "event_stream_attached" })
	created := postApp(t, base, `{"id": "/roll", "container": {"type": "DOCKER", "docker": {"image": "`+containerdtest.TestAppImage+`"}},
		"args": ["-sleep", "24h"], "env": {"RELEASE": "1"}, "cpus": 0.1, "mem": 32, "instances": 4,
		"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25},
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1, "timeoutSeconds": 5, "maxConsecutiveFailures": 3}]}`)
	a := waitApp(t, base, "/roll", "4 healthy", func(a marathonApp) bool { return a.TasksHealthy == 4 })
	first := created["deployments"].([]any)[0].(map[string]any)["id"]
	nextEvent(t, events, "the creation's deployment_success", func(ev sseEvent) bool { return ev.Type == "deployment_success" && ev.Data["id"] == first })

	// Follow every task through the events: running and alive is healthy.
	type seen struct{ running, alive, ended bool }
	tasks := map[string]*seen{}
	for _, tk := range a.Tasks {
		tasks[tk.ID] = &seen{running: true, alive: true}
	}
	var res map[string]string
	if code := httpJSON(t, "PUT", base+"/v2/apps/roll", json.RawMessage(`{"env": {"RELEASE": "2"}}`), &res); code != http.StatusOK {
		t.Fatalf("update: %d %v", code, res)
	}
	minHealthy, maxLive := 4, 4
	nextEvent(t, events, "deployment_success", func(ev sseEvent) bool {
		id, _ := ev.Data["taskId"].(string)
		if id != "" && tasks[id] == nil {
			tasks[id] = &seen{}
		}
		switch ev.Type {
		case "status_update_event":
			st := ev.Data["taskStatus"].(string)
			tasks[id].running = st == "TASK_RUNNING"
			tasks[id].ended = st != "TASK_RUNNING" && st != "TASK_STARTING" && st != "TASK_STAGING" && st != "TASK_KILLING"
			if !tasks[id].running {
				tasks[id].alive = false
			}
		case "health_status_changed_event":
			tasks[id].alive = ev.Data["alive"] == true
		}
		healthy, live := 0, 0
		for _, s := range tasks {
			if s.running && s.alive {
				healthy++
			}
			if !s.ended {
				live++
			}
		}
		minHealthy, maxLive = min(minHealthy, healthy), max(maxLive, live)
		return ev.Type == "deployment_success" && ev.Data["id"] == res["deploymentId"]
	})
	if minHealthy < 2 || maxLive > 5 {
		t.Fatalf("during the upgrade: %d healthy at the fewest (want >= ceil(0.5×4) = 2), %d instances at the most (want <= floor(1.25×4) = 5)", minHealthy, maxLive)
	}
	t.Logf("rolling upgrade: at least %d healthy, at most %d instances", minHealthy, maxLive)
	a = waitApp(t, base, "/roll", "4 healthy of the new version", func(a marathonApp) bool { return a.TasksHealthy == 4 && len(a.Tasks) == 4 })
	for _, tk := range a.Tasks {
		if tasks[tk.ID] == nil || !tasks[tk.ID].running {
			t.Fatalf("task %s after the upgrade was not seen starting in the events", tk.ID)
		}
	}

	// Unhealthy: the test app's /health fails; the agent kills it; it is replaced.
	sick := a.Tasks[0]
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/health/fail", sick.Ports[0]), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nextEvent(t, events, "the sick task killed", func(ev sseEvent) bool {
		return ev.Type == "status_update_event" && ev.Data["taskId"] == sick.ID && ev.Data["taskStatus"] == "TASK_KILLED"
	})
	waitApp(t, base, "/roll", "the sick instance replaced", func(a marathonApp) bool {
		if a.TasksHealthy != 4 || len(a.Tasks) != 4 {
			return false
		}
		for _, tk := range a.Tasks {
			if tk.ID == sick.ID {
				return false
			}
		}
		return true
	})

	// A command that fails at once: relaunched after 1, 2, 4 s (backoffFactor 2). What is
	// measured is each failure to the next launch's first update, by the events' own stamps
	// (the framework's clock): a busy machine only makes that longer, never shorter than the
	// delay. (The times the test reads them are no measure: the framework decides on a failure,
	// commits, then publishes, so under load its event can come seconds after the decision
	// the backoff counts from.)
	postApp(t, base, `{"id": "/crash", "cmd": "exit 3", "cpus": 0.1, "mem": 32, "instances": 1, "backoffSeconds": 1, "backoffFactor": 2, "portDefinitions": []}`)
	var gaps []time.Duration
	var failedAt time.Time
	ended := map[string]bool{}
	for failures := 0; failures < 4; {
		ev := nextEvent(t, events, "an update of /crash", func(ev sseEvent) bool {
			return ev.Type == "status_update_event" && ev.Data["appId"] == "/crash"
		})
		id, _ := ev.Data["taskId"].(string)
		switch {
		case ev.Data["taskStatus"] == "TASK_FAILED":
			failures++
			failedAt, ended[id] = eventStamp(t, ev), true
		case !failedAt.IsZero() && !ended[id] && len(gaps) < failures:
			gaps = append(gaps, eventStamp(t, ev).Sub(failedAt)) // the next launch's first update
		}
	}
	t.Logf("from each failure to the next launch: %v", gaps)
	for i, g := range gaps {
		if want := time.Duration(1<<i) * time.Second; g < want-100*time.Millisecond {
			t.Fatalf("launch %d came %v after the failure before it, want at least %v (backoffSeconds 1, backoffFactor 2): gaps %v", i+2, g, want, gaps)
		}
	}
	if len(gaps) < 3 {
		t.Fatalf("saw %d relaunches between 4 failures: gaps %v", len(gaps), gaps)
	}
	// The queue shows it waiting with its delay; resetting the delay launches it at once.
	var q struct {
		Queue []struct {
			Count int `json:"count"`
			Delay struct {
				TimeLeftSeconds int `json:"timeLeftSeconds"`
			} `json:"delay"`
			App struct {
				ID string `json:"id"`
			} `json:"app"`
		} `json:"queue"`
	}
	failed := time.Now() // the 4th failure: the next launch waits 8 s
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code := httpJSON(t, "GET", base+"/v2/queue", nil, &q)
		if code == http.StatusOK && len(q.Queue) == 1 && q.Queue[0].App.ID == "/crash" && q.Queue[0].Count == 1 && q.Queue[0].Delay.TimeLeftSeconds >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v2/queue after 4 failures: %d %+v", code, q)
		}
	}
	if code := httpJSON(t, "DELETE", base+"/v2/queue/crash/delay", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /v2/queue/crash/delay: %d", code)
	}
	nextEvent(t, events, "a launch of /crash at once", func(ev sseEvent) bool {
		return ev.Type == "status_update_event" && ev.Data["appId"] == "/crash" && ev.Data["taskStatus"] == "TASK_STARTING"
	})
	if waited := time.Since(failed); waited > 4*time.Second {
		t.Fatalf("relaunched %v after the 4th failure, want about at once once the delay (8 s) was reset", waited)
	}
	var crash struct {
		App struct {
			LastTaskFailure map[string]any `json:"lastTaskFailure"`
		} `json:"app"`
	}
	httpJSON(t, "GET", base+"/v2/apps/crash?embed=app.lastTaskFailure", nil, &crash)
	if crash.App.LastTaskFailure["state"] != "TASK_FAILED" {
		t.Fatalf("lastTaskFailure: %v", crash.App.LastTaskFailure)
	}
}

// masterProc is one `agora master` process of a test cluster.
type masterProc struct {
	p          *process
	http, goss string
}

// startThreeMasters starts three master processes on loopback that form one cluster.
func startThreeMasters(t *testing.T) []masterProc {
	t.Helper()
	masterArgs := func(join ...string) []string {
		args := []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--bootstrap-expect", "3", "--allocation-interval", "200ms"}
		for _, j := range join {
			args = append(args, "--join", j)
		}
		return args
	}
	var masters []masterProc
	p, got := startProcess(t, masterArgs(), `API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
	masters = append(masters, masterProc{p, got[0], got[1]})
	for range 2 {
		p, got := startProcess(t, masterArgs(masters[0].goss), `API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
		masters = append(masters, masterProc{p, got[0], got[1]})
	}
	return masters
}

// waitLeaderVia asks the master at via for the leader's API until one other than not answers.
func waitLeaderVia(t *testing.T, via, not string) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var v api.ClusterView
		if httpJSON(t, "GET", via+"/v1/cluster", nil, &v) == 200 && v.Leader != nil && v.Leader.HTTP != "" && "http://"+v.Leader.HTTP != not {
			return "http://" + v.Leader.HTTP
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader within 30s")
		}
	}
}

// TestMarathonDeploymentSurvivesLeaderFailover: three masters as processes; an app's deployment
// is in flight when the leader is killed with SIGKILL; under the new leader the deployment
// finishes with exactly the instances wanted — none lost, none launched twice.
func TestMarathonDeploymentSurvivesLeaderFailover(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	masters := startThreeMasters(t)
	waitLeader := func(via, not string) string { return waitLeaderVia(t, via, not) }
	leader := waitLeader(masters[0].http, "")
	_, got := startCmd(t, []string{"agent", "--join", masters[1].goss, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:1024;disk:100;ports:" + taskPortRange()}, `API:\s+(http://\S+)`)
	agentHTTP := got[0]
	waitAgents(t, leader, func(as []api.Agent) bool { return len(as) == 1 })

	// Created through a follower, which forwards to the leader.
	var follower masterProc
	for _, m := range masters {
		if m.http != leader {
			follower = m
		}
	}
	postApp(t, follower.http, `{"id": "/survivor", "container": {"type": "DOCKER", "docker": {"image": "`+containerdtest.TestAppImage+`"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 4,
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1, "timeoutSeconds": 1}]}`)
	// Kill it once instances are launched but the deployment has not finished.
	var before marathonApp
	for deadline := time.Now().Add(30 * time.Second); len(before.Tasks) < 2; time.Sleep(20 * time.Millisecond) {
		before, _ = getApp(t, leader, "/survivor")
		if time.Now().After(deadline) {
			t.Fatalf("no instance launched: %+v", before)
		}
	}
	for _, m := range masters {
		if m.http == leader {
			if err := m.p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(before.Deployments) == 0 {
		t.Fatalf("the deployment had finished before the leader was killed: %+v", before)
	}
	t.Logf("leader killed with %d instances launched, %d healthy", len(before.Tasks), before.TasksHealthy)
	newLeader := waitLeader(follower.http, leader)
	a := waitApp(t, newLeader, "/survivor", "4 healthy under the new leader", func(a marathonApp) bool { return a.TasksHealthy == 4 && len(a.Tasks) == 4 })
	// Exactly 4 containers run, and stay 4.
	for range 10 {
		live := liveTasks(t, agentHTTP)
		if live != 4 {
			t.Fatalf("%d live tasks on the agent, want 4; the app shows %+v", live, a.Tasks)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMarathonGroupWithDependencies: the two-tier example group goes up in dependency order —
// web starts only once db is deployed — is listed under /v2/groups, and is deleted whole.
func TestMarathonGroupWithDependencies(t *testing.T) {
	t.Parallel()
	base, agentBase, ns := startMarathonDev(t, taskPorts())
	events := streamEvents(t, base)
	group, err := os.ReadFile("../../examples/apps/two-tier.json")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code := httpJSON(t, "POST", base+"/v2/groups", json.RawMessage(group), &res)
		if code == http.StatusCreated {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /v2/groups: %d %v", code, res)
		}
	}
	dbReady := false
	nextEvent(t, events, "the group's deployment_success", func(ev sseEvent) bool {
		switch {
		case ev.Type == "deployment_step_success" && ev.Data["plan"].(map[string]any)["id"] == res["deploymentId"]:
			step := ev.Data["currentStep"].(map[string]any)["actions"].([]any)
			if step[0].(map[string]any)["app"] == "/two-tier/db" {
				dbReady = true
			}
		case ev.Type == "status_update_event" && ev.Data["appId"] == "/two-tier/web" && ev.Data["taskStatus"] == "TASK_STARTING" && !dbReady:
			t.Fatalf("web started before db was deployed")
		}
		return ev.Type == "deployment_success" && ev.Data["id"] == res["deploymentId"]
	})
	var g struct {
		ID   string        `json:"id"`
		Apps []marathonApp `json:"apps"`
	}
	if code := httpJSON(t, "GET", base+"/v2/groups/two-tier", nil, &g); code != http.StatusOK || len(g.Apps) != 2 ||
		g.Apps[0].ID != "/two-tier/db" || g.Apps[0].TasksHealthy != 1 || g.Apps[1].TasksHealthy != 2 {
		t.Fatalf("GET /v2/groups/two-tier: %d %+v", code, g)
	}
	var root struct {
		Groups []struct {
			ID string `json:"id"`
		} `json:"groups"`
	}
	if code := httpJSON(t, "GET", base+"/v2/groups", nil, &root); code != http.StatusOK || len(root.Groups) != 1 || root.Groups[0].ID != "/two-tier" {
		t.Fatalf("GET /v2/groups: %d %+v", code, root)
	}
	if code := httpJSON(t, "POST", base+"/v2/groups", json.RawMessage(group), nil); code != http.StatusConflict {
		t.Fatalf("the same group again: %d, want 409", code)
	}
	// A cycle is refused whole.
	var bad map[string]any
	if code := httpJSON(t, "PUT", base+"/v2/groups/loop", json.RawMessage(`{"apps": [{"id": "a", "cmd": "sleep 1", "dependencies": ["b"]}, {"id": "b", "cmd": "sleep 1", "dependencies": ["a"]}]}`), &bad); code != http.StatusUnprocessableEntity {
		t.Fatalf("a dependency cycle: %d %v", code, bad)
	}
	// A nested group must be inside its parent (found by FuzzGroup: /1 was taken inside /0).
	var outside marathon.ValidationError
	if code := httpJSON(t, "POST", base+"/v2/groups", json.RawMessage(`{"id": "zero", "groups": [{"id": "/one"}]}`), &outside); code != http.StatusUnprocessableEntity ||
		len(outside.Details) != 1 || outside.Details[0].Path != "/groups(0)/id" {
		t.Fatalf("a nested group outside its parent: %d %+v, want 422 at /groups(0)/id", code, outside)
	}
	if code := httpJSON(t, "GET", base+"/v2/groups/one", nil, nil); code != http.StatusNotFound {
		t.Fatalf("the refused group /one was stored: %d", code)
	}
	if code := httpJSON(t, "DELETE", base+"/v2/groups/two-tier", nil, &res); code != http.StatusOK {
		t.Fatalf("DELETE group: %d %v", code, res)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		live := liveTasks(t, agentBase)
		code := httpJSON(t, "GET", base+"/v2/groups/two-tier", nil, nil)
		if live == 0 && code == http.StatusNotFound && containersIn(t, ns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after deleting the group: %d live tasks, GET %d", live, code)
		}
	}
}

// TestMarathonReadinessHoldsTheDeployment: instances that run but are not ready (the test app's
// /health answers 503) keep the deployment open; once each answers 200 it finishes.
func TestMarathonReadinessHoldsTheDeployment(t *testing.T) {
	t.Parallel()
	base, _, _ := startMarathonDev(t, taskPorts())
	created := postApp(t, base, `{"id": "/ready", "container": {"type": "DOCKER", "docker": {"image": "`+containerdtest.TestAppImage+`"}},
		"args": ["-sleep", "24h", "-unhealthy"], "cpus": 0.1, "mem": 32, "instances": 2,
		"portDefinitions": [{"port": 0, "name": "http"}],
		"readinessChecks": [{"name": "ready", "protocol": "HTTP", "path": "/health", "portName": "http", "intervalSeconds": 1, "timeoutSeconds": 1}]}`)
	if len(created["deployments"].([]any)) != 1 {
		t.Fatalf("created %v", created)
	}
	a := waitAppRunning(t, base, "/ready", 2)
	time.Sleep(2 * time.Second) // a few readiness probes fail meanwhile
	if a, _ = getApp(t, base, "/ready"); len(a.Deployments) != 1 {
		t.Fatalf("the deployment ended while no instance was ready: %+v", a)
	}
	for _, tk := range a.Tasks {
		containerdtest.WaitListening(t, uint64(tk.Ports[0]), 30*time.Second)
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/health/ok", tk.Ports[0]), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitApp(t, base, "/ready", "deployed once ready", func(a marathonApp) bool { return a.TasksRunning == 2 })
	// Bad readiness checks name the field.
	var bad struct {
		Details []struct {
			Path string `json:"path"`
		} `json:"details"`
	}
	if code := httpJSON(t, "PUT", base+"/v2/apps/ready", json.RawMessage(`{"readinessChecks": [{"portName": "nope"}]}`), &bad); code != http.StatusUnprocessableEntity ||
		len(bad.Details) != 1 || bad.Details[0].Path != "/readinessChecks(0)/portName" {
		t.Fatalf("bad readiness check: %d %+v", code, bad)
	}
}

// waitAppRunning waits until n instances of the app run, deployment or not.
func waitAppRunning(t *testing.T, base, id string, n int) marathonApp {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		a, code := getApp(t, base, id)
		if code == http.StatusOK && a.TasksRunning == n && len(a.Tasks) == n {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never %d running; last %+v", id, n, a)
		}
	}
}

// TestMarathonSecretsReachOnlyTheContainer: an app's env may name a secret; the task runs only
// once the secret store has it, the container sees its value, and no API shows it, nor any
// file of the dev node's data dir (the masters' raft log and snapshots hold it encrypted, the
// agent's checkpoint masked).
func TestMarathonSecretsReachOnlyTheContainer(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	base, agentBase, _ := startMarathonDevIn(t, dataDir, taskPorts())
	const value = "s3cr3t-value-42"
	postApp(t, base, `{"id": "/vault", "container": {"type": "DOCKER", "docker": {"image": "`+containerdtest.TestAppImage+`"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1,
		"env": {"DB_PASSWORD": {"secret": "pw"}, "PLAIN": "visible"}, "secrets": {"pw": {"source": "/db/password"}}}`)
	// Without the secret nothing runs, and lastTaskFailure says why.
	var app struct {
		App struct {
			TasksRunning    int            `json:"tasksRunning"`
			LastTaskFailure map[string]any `json:"lastTaskFailure"`
		} `json:"app"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		httpJSON(t, "GET", base+"/v2/apps/vault?embed=app.lastTaskFailure", nil, &app)
		if msg, _ := app.App.LastTaskFailure["message"].(string); strings.Contains(msg, "db/password") {
			break
		}
		if time.Now().After(deadline) || app.App.TasksRunning > 0 {
			t.Fatalf("without its secret: %+v", app.App)
		}
	}
	if code := httpJSON(t, "PUT", base+"/v1/secrets/db/password", map[string]string{"value": value}, nil); code != http.StatusNoContent {
		t.Fatalf("PUT secret: %d", code)
	}
	a := waitAppRunning(t, base, "/vault", 1)
	containerdtest.WaitListening(t, uint64(a.Tasks[0].Ports[0]), 30*time.Second)
	var env map[string]string
	httpJSON(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/env", a.Tasks[0].Ports[0]), nil, &env)
	if env["DB_PASSWORD"] != value || env["PLAIN"] != "visible" {
		t.Fatalf("the container's env: DB_PASSWORD=%q PLAIN=%q", env["DB_PASSWORD"], env["PLAIN"])
	}
	noAnswerHolds(t, value, base+"/v2/apps/vault?embed=app.tasks", base+"/v1/secrets", agentBase+"/v1/tasks", agentBase+"/v1/tasks/"+a.Tasks[0].ID, base+"/v2/tasks")
	noFileHolds(t, dataDir, value, "")
	var names map[string][]string
	if httpJSON(t, "GET", base+"/v1/secrets", nil, &names); len(names["secrets"]) != 1 || names["secrets"][0] != "db/password" {
		t.Fatalf("GET /v1/secrets: %v", names)
	}
	if code := httpJSON(t, "PUT", base+"/v1/secrets/../etc", map[string]string{"value": "x"}, nil); code < 400 || code >= 500 {
		t.Fatalf("a bad secret name: %d", code)
	}
}

// TestMarathonHostVolumes: Marathon's host volumes are mounted, read-only when asked, and a
// relative container path lands in the sandbox.
func TestMarathonHostVolumes(t *testing.T) {
	t.Parallel()
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "hello.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(rw, "app1"), 0o755)
	if err := os.Chown(filepath.Join(rw, "app1"), 65534, 65534); err != nil { // the app runs as nobody
		t.Fatal(err)
	}
	base, agentBase, _ := startMarathonDev(t, taskPorts(), "--host-volume", "hello="+ro, "--host-volume", "scratch="+rw+":rw")
	postApp(t, base, fmt.Sprintf(`{"id": "/vols", "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": [],
		"cmd": "cat /mnt/hello.txt; if touch /mnt/x 2>/dev/null; then echo WROTE; else echo READONLY; fi; echo written > data/out.txt; sleep 1000",
		"container": {"type": "MESOS", "volumes": [{"containerPath": "/mnt", "hostPath": "hello", "mode": "RO"}, {"containerPath": "data", "hostPath": %q, "mode": "RW"}]}}`, filepath.Join(rw, "app1")))
	a := waitAppRunning(t, base, "/vols", 1)
	// Nothing the agent does not declare can be mounted: each is refused at POST, naming it.
	for hostPath, mode := range map[string]string{"/": "RO", "/etc": "RO", "/var/lib/containerd": "RO", t.TempDir(): "RO", ro: "RW", "nope": "RO"} {
		var bad struct {
			Details []struct {
				Path   string   `json:"path"`
				Errors []string `json:"errors"`
			} `json:"details"`
		}
		app := fmt.Sprintf(`{"id": "/bad-vol", "cmd": "true", "container": {"type": "MESOS", "volumes": [{"containerPath": "/x", "hostPath": %q, "mode": %q}]}}`, hostPath, mode)
		if code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(app), &bad); code != http.StatusUnprocessableEntity || len(bad.Details) != 1 || bad.Details[0].Path != "/container/volumes(0)/hostPath" {
			t.Fatalf("an app mounting %s %s: %d %+v, want 422 at /container/volumes(0)/hostPath", hostPath, mode, code, bad)
		}
	}
	var out string
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out, "READONLY") && !strings.Contains(out, "WROTE"); time.Sleep(200 * time.Millisecond) {
		out = readLogs(t, agentBase, a.Tasks[0].ID)
		if time.Now().After(deadline) {
			t.Fatalf("the task's output: %q", out)
		}
	}
	if out != "hello from the host\nREADONLY\n" {
		t.Fatalf("the task's output: %q, want the host file and a read-only mount", out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(rw, "app1", "out.txt")); err == nil && string(b) == "written\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read-write volume did not get the task's file")
		}
	}
	// A persistent volume needs a framework role that can reserve (this node has "*"), and an
	// app that had none cannot get one (Marathon's rule): both named.
	var bad struct {
		Details []struct {
			Path   string   `json:"path"`
			Errors []string `json:"errors"`
		} `json:"details"`
	}
	if code := httpJSON(t, "PUT", base+"/v2/apps/vols", json.RawMessage(`{"container": {"type": "MESOS", "volumes": [{"containerPath": "d", "persistent": {"size": 10}}]}}`), &bad); code != http.StatusUnprocessableEntity ||
		len(bad.Details) != 2 || bad.Details[0].Path != "/container/volumes(0)/persistent" || !strings.Contains(bad.Details[0].Errors[0], "--marathon-role") ||
		bad.Details[1].Path != "/container/volumes" {
		t.Fatalf("a persistent volume: %d %+v", code, bad)
	}
}

// liveTasks counts the tasks an agent holds that have not ended.
func liveTasks(t *testing.T, agentURL string) int {
	t.Helper()
	var tasks []api.Task
	httpJSON(t, "GET", agentURL+"/v1/tasks", nil, &tasks)
	live := 0
	for _, tk := range tasks {
		if !tk.Status.State.IsTerminal() {
			live++
		}
	}
	return live
}
