package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// fakeMaster stands in for the leader: it answers /v1/cluster, registers the agent, records
// every status update in order and acknowledges them (unless told to refuse some). The master
// itself is tested against real agents in cmd/agora; this one lets a test see and steer what
// the agent sends.
type fakeMaster struct {
	t      testing.TB
	srv    *httptest.Server
	gossip *gossip.Gossip

	mu      sync.Mutex // guards the fields below
	updates []api.TaskStatus
	regs    []api.AgentRegistration
	refuse  int // answer this many coming updates with 503
	// onUpdate, when set, sees every update as it arrives.
	onUpdate func(api.TaskStatus)
}

func newFakeMaster(t testing.TB) *fakeMaster {
	fm := &fakeMaster{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, 200, api.ClusterView{Leader: &api.LeaderInfo{ID: "m1", HTTP: fm.srv.Listener.Addr().String()}})
	})
	mux.HandleFunc("POST /v1/agents/register", func(w http.ResponseWriter, r *http.Request) {
		var reg api.AgentRegistration
		if err := httpjson.Decode(r, &reg); err != nil {
			httpjson.Error(w, 400, err.Error())
			return
		}
		fm.mu.Lock()
		fm.regs = append(fm.regs, reg)
		fm.mu.Unlock()
		id := reg.ID
		if id == "" {
			id = "agent-1"
		}
		httpjson.Write(w, 200, api.Agent{ID: id, Hostname: reg.Hostname, HTTP: reg.HTTP, Resources: reg.Resources})
	})
	mux.HandleFunc("POST /v1/agents/{id}/status", func(w http.ResponseWriter, r *http.Request) {
		var st api.TaskStatus
		if err := httpjson.Decode(r, &st); err != nil {
			httpjson.Error(w, 400, err.Error())
			return
		}
		fm.mu.Lock()
		defer fm.mu.Unlock()
		if fm.refuse > 0 {
			fm.refuse--
			httpjson.Error(w, 503, "refused by the test")
			return
		}
		fm.updates = append(fm.updates, st)
		if fm.onUpdate != nil {
			fm.onUpdate(st)
		}
		httpjson.Write(w, 200, api.StatusAck{Acknowledged: true, UUID: st.UUID})
	})
	fm.srv = httptest.NewServer(mux)
	t.Cleanup(fm.srv.Close)
	g, err := gossip.New(gossip.Config{
		Name: "fake-master", BindAddr: "127.0.0.1:0", Timing: gossip.TimingLocal,
		Meta: gossip.Meta{Role: gossip.RoleMaster, ID: "m1", HTTP: fm.srv.Listener.Addr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	fm.gossip = g
	return fm
}

// states are the states the master got for a task, in order, repeats of a resent update
// folded.
func (fm *fakeMaster) states(taskID string) []task.State {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	var out []task.State
	seen := map[string]bool{}
	for _, u := range fm.updates {
		if u.TaskID == taskID && !seen[u.UUID] {
			seen[u.UUID] = true
			out = append(out, u.State)
		}
	}
	return out
}

func (fm *fakeMaster) last(taskID string) (api.TaskStatus, bool) {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	for i := len(fm.updates) - 1; i >= 0; i-- {
		if fm.updates[i].TaskID == taskID {
			return fm.updates[i], true
		}
	}
	return api.TaskStatus{}, false
}

// waitFor waits until the master's latest update of the task satisfies cond.
func (fm *fakeMaster) waitFor(taskID string, within time.Duration, cond func(api.TaskStatus) bool) api.TaskStatus {
	fm.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if st, ok := fm.last(taskID); ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			st, _ := fm.last(taskID)
			fm.t.Fatalf("task %s: never as expected within %v; last update %+v; states %v", taskID, within, st, fm.states(taskID))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (fm *fakeMaster) waitState(taskID string, want task.State, within time.Duration) api.TaskStatus {
	fm.t.Helper()
	return fm.waitFor(taskID, within, func(st api.TaskStatus) bool { return st.State == want })
}

// testEnv is one agent's world: its containerd namespace (private to the test, so that orphan
// removal never touches another test's containers), its data dir and its fake master.
type testEnv struct {
	t       testing.TB
	fm      *fakeMaster
	dataDir string
	ns      string
	res     resources.Resources
	client  *ctrd.Client // the containerd the agents use
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	return newEnvOn(t, containerdtest.Client(t))
}

// newEnvOn is newEnv on the containerd of client (a test's private one).
func newEnvOn(t testing.TB, client *ctrd.Client) *testEnv {
	t.Helper()
	ns := fmt.Sprintf("agora-test-agent-%d", time.Now().UnixNano())
	containerdtest.ImportTestApp(t, client, ns)
	t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
	res, err := resources.Parse("cpus:2;mem:1024;disk:1000;ports:[31000-31100]")
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, fm: newFakeMaster(t), dataDir: t.TempDir(), ns: ns, res: res, client: client}
}

// runningAgent is an agent started by a test.
type runningAgent struct {
	*Agent
	base    string
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

type agentOpt func(*Config)

func withDrain(c *Config) { c.Drain = true }

// start runs an agent on the env's data dir and waits for its registration.
func (e *testEnv) start(opts ...agentOpt) *runningAgent {
	e.t.Helper()
	exec, err := containerd.New(containerd.Config{
		Client: e.client, Namespace: e.ns, SandboxRoot: filepath.Join(e.dataDir, "sandboxes"),
		Logger: testLogger(e.t),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := Config{
		DataDir: e.dataDir, Join: []string{e.fm.gossip.LocalAddr()}, GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Hostname: "node-1", Resources: e.res, Logger: testLogger(e.t), GossipTiming: gossip.TimingLocal,
		RetryEvery: 100 * time.Millisecond, Executor: exec,
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.fm.mu.Lock()
	regsBefore := len(e.fm.regs)
	e.fm.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, base: "http://" + a.HTTPAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	e.t.Cleanup(func() { ra.stop(e.t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.fm.mu.Lock()
		registered := len(e.fm.regs) > regsBefore
		e.fm.mu.Unlock()
		if registered && a.ID() != "" {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatal("the agent never registered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ra
}

// stop stops the agent as SIGTERM would; its tasks keep running unless it drains.
func (ra *runningAgent) stop(t testing.TB) {
	ra.stopped.Do(func() {
		ra.cancel()
		select {
		case err := <-ra.done:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the agent did not stop")
		}
	})
}

func testLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler) // benchmark output stays benchstat input
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call does one request against the agent's API and decodes the JSON answer into out.
func (ra *runningAgent) call(t testing.TB, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ra.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func (ra *runningAgent) launch(t testing.TB, info api.TaskInfo) api.TaskStatus {
	t.Helper()
	var st api.TaskStatus
	if code := ra.call(t, "POST", "/v1/tasks", info, &st); code != http.StatusAccepted {
		t.Fatalf("launch %s: %d %+v", info.TaskID, code, st)
	}
	return st
}

func (ra *runningAgent) logs(t *testing.T, taskID, stream string) string {
	t.Helper()
	resp, err := http.Get(ra.base + "/v1/tasks/" + taskID + "/logs?stream=" + stream)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("logs of %s: %d %s", taskID, resp.StatusCode, b)
	}
	return string(b)
}

func testApp(id string, args ...string) api.TaskInfo {
	return api.TaskInfo{
		TaskID: id, FrameworkID: "fw-1", Image: containerdtest.TestAppImage, Args: args,
		Resources: resources.Resources{CPUs: 0.1, Mem: 64},
	}
}

// agentPort is a free port in the test agents' range, 31000-31100.
func agentPort(t *testing.T) uint64 {
	t.Helper()
	for p := 31000; p <= 31100; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return uint64(p)
		}
	}
	t.Fatal("no free port in 31000-31100")
	return 0
}

func TestTaskRunsToTheEndWithItsOutputInTheLogs(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	st := a.launch(t, testApp("hello", "-print-env", "-stderr", "to stderr", "-sleep", "200ms"))
	if st.State != task.Starting {
		t.Fatalf("launch answered %s, want TASK_STARTING", st.State)
	}
	fin := e.fm.waitState("hello", task.Finished, 60*time.Second)
	if fin.ExitStatus == nil || *fin.ExitStatus != 0 || fin.AgentID != "agent-1" || fin.FrameworkID != "fw-1" {
		t.Fatalf("FINISHED update = %+v", fin)
	}
	if got := e.fm.states("hello"); fmt.Sprint(got) != "[TASK_STARTING TASK_RUNNING TASK_FINISHED]" {
		t.Fatalf("states = %v", got)
	}
	// The last line, written as the process ends, is there once FINISHED is.
	if out := a.logs(t, "hello", "stdout"); !strings.Contains(out, "AGORA_TASK_ID=hello\n") || !strings.HasSuffix(out, "testapp: exiting with 0\n") {
		t.Fatalf("stdout = %q", out)
	}
	if errOut := a.logs(t, "hello", "stderr"); errOut != "to stderr\n" {
		t.Fatalf("stderr = %q", errOut)
	}
	var tk api.Task
	if code := a.call(t, "GET", "/v1/tasks/hello", nil, &tk); code != 200 || tk.Status.State != task.Finished {
		t.Fatalf("GET task: %d %+v", code, tk)
	}
}

func TestFailedExitIsReportedWithItsStatus(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	a.launch(t, testApp("three", "-exit", "3"))
	st := e.fm.waitState("three", task.Failed, 60*time.Second)
	if st.ExitStatus == nil || *st.ExitStatus != 3 || !strings.Contains(st.Message, "exited with status 3") {
		t.Fatalf("FAILED update = %+v", st)
	}
}

func TestKillIsTermThenGraceThenKill(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	a.launch(t, testApp("polite", "-sleep", "1h"))
	stubborn := testApp("stubborn", "-sleep", "1h", "-ignore-term", "1h")
	stubborn.KillGracePeriodSeconds = 1
	a.launch(t, stubborn)
	e.fm.waitState("polite", task.Running, 60*time.Second)
	e.fm.waitState("stubborn", task.Running, 60*time.Second)
	for _, id := range []string{"polite", "stubborn"} { // they catch SIGTERM once they say so
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(a.logs(t, id, "stdout"), "testapp: started"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never started", id)
			}
		}
	}

	var st api.TaskStatus
	if code := a.call(t, "POST", "/v1/tasks/polite/kill", api.KillRequest{GracePeriodSeconds: 30}, &st); code != 202 || st.State != task.Killing {
		t.Fatalf("kill: %d %+v", code, st)
	}
	start := time.Now()
	a.call(t, "POST", "/v1/tasks/stubborn/kill", nil, nil)
	killed := e.fm.waitState("polite", task.Killed, 30*time.Second)
	if killed.ExitStatus == nil || *killed.ExitStatus != 0 {
		t.Fatalf("a task that stops on SIGTERM: %+v", killed)
	}
	if !strings.Contains(a.logs(t, "polite", "stdout"), "got terminated") {
		t.Error("the task never saw SIGTERM")
	}
	hard := e.fm.waitState("stubborn", task.Killed, 30*time.Second)
	if d := time.Since(start); d < time.Second || hard.ExitStatus == nil || *hard.ExitStatus != 137 || !strings.Contains(hard.Message, "SIGKILL") {
		t.Fatalf("after %v: %+v, want SIGKILL (137) after the 1 s grace", d, hard)
	}
	for _, id := range []string{"polite", "stubborn"} {
		if got := fmt.Sprint(e.fm.states(id)); got != "[TASK_STARTING TASK_RUNNING TASK_KILLING TASK_KILLED]" {
			t.Errorf("%s: states %s", id, got)
		}
	}
	if code := a.call(t, "POST", "/v1/tasks/polite/kill", nil, nil); code != http.StatusConflict {
		t.Errorf("killing an ended task: %d, want 409", code)
	}
	if code := a.call(t, "POST", "/v1/tasks/nope/kill", nil, nil); code != http.StatusNotFound {
		t.Errorf("killing an unknown task: %d, want 404", code)
	}
}

func TestOOMKillIsReported(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	info := testApp("hog", "-alloc-mib", "256", "-sleep", "1h")
	info.Resources.Mem = 32
	a.launch(t, info)
	st := e.fm.waitState("hog", task.Failed, 60*time.Second)
	if st.Reason != task.ReasonContainerLimitationMem || !strings.Contains(st.Message, "container OOM-killed") || st.ExitStatus == nil || *st.ExitStatus != 137 {
		t.Fatalf("FAILED update = %+v", st)
	}
}

func mustRanges(t *testing.T, ports ...uint64) resources.Ranges {
	t.Helper()
	var rs []resources.Range
	for _, p := range ports {
		rs = append(rs, resources.Range{Begin: p, End: p})
	}
	r, err := resources.NewRanges(rs...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRes(t *testing.T, cpus, mem float64) resources.Resources {
	t.Helper()
	return resources.Resources{CPUs: cpus, Mem: mem}
}

func mustChecks(t *testing.T, js string) []health.Check {
	t.Helper()
	var cs []health.Check
	if err := json.Unmarshal([]byte(js), &cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func httpPost(url string) (*http.Response, error) { return http.Post(url, "text/plain", nil) }

var nilIO = cio.NullIO

func ociSpecForTest(img ctrd.Image, args ...string) []oci.SpecOpts {
	return []oci.SpecOpts{oci.WithImageConfig(img), oci.WithImageConfigArgs(img, args)}
}
