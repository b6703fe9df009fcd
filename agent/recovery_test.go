package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/faultnet"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// containerPID is the pid of a task's process as containerd knows it (0: no such container).
func (e *testEnv) containerPID(id string) uint32 {
	e.t.Helper()
	return containerdtest.TaskPID(e.t, e.client, e.ns, id)
}

func (e *testEnv) containerStatus(id string) ctrd.ProcessStatus {
	e.t.Helper()
	client := e.client
	ctx := namespaces.WithNamespace(context.Background(), e.ns)
	c, err := client.LoadContainer(ctx, id)
	if err != nil {
		return ""
	}
	tk, err := c.Task(ctx, nil)
	if err != nil {
		return ""
	}
	st, err := tk.Status(ctx)
	if err != nil {
		return ""
	}
	return st.Status
}

// TestRestartedAgentReattaches stops an agent while its task runs and starts another on the
// same data dir: the task is still RUNNING in the same container, nothing is launched again,
// its output kept flowing meanwhile, and it can still be killed.
func TestRestartedAgentReattaches(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	port := agentPort(t)
	info := testApp("steady", "-sleep", "1h")
	info.Resources.Ports = mustRanges(t, port)
	a.launch(t, info)
	e.fm.waitState("steady", task.Running, 60*time.Second)
	pid := e.containerPID("steady")
	a.stop(t)

	if e.containerPID("steady") != pid {
		t.Fatal("stopping the agent stopped its task")
	}
	updatesBefore := len(e.fm.states("steady"))
	b := e.start()
	var tk api.Task
	if code := b.call(t, "GET", "/v1/tasks/steady", nil, &tk); code != 200 || tk.Status.State != task.Running {
		t.Fatalf("after restart: %d %+v", code, tk)
	}
	if got := e.containerPID("steady"); got != pid {
		t.Fatalf("pid %d after restart, want the same %d", got, pid)
	}
	if n := len(e.fm.states("steady")); n != updatesBefore {
		t.Fatalf("the restart sent %d more updates: %v", n-updatesBefore, e.fm.states("steady"))
	}
	e.fm.mu.Lock()
	lastReg := e.fm.regs[len(e.fm.regs)-1]
	e.fm.mu.Unlock()
	if len(lastReg.Tasks) != 1 || lastReg.Tasks[0].Info.TaskID != "steady" || lastReg.Tasks[0].Status.State != task.Running || lastReg.Tasks[0].Info.Resources.CPUs == 0 {
		t.Fatalf("re-registration listed %+v, want steady RUNNING with its resources", lastReg.Tasks)
	}
	b.call(t, "POST", "/v1/tasks/steady/kill", nil, nil)
	e.fm.waitState("steady", task.Killed, 30*time.Second)
}

// TestContainerThatDiedWhileTheAgentWasDownIsReportedOnce: the restarted agent reports the real
// exit status, once, and by then the task's logs hold what it wrote while no agent ran.
func TestContainerThatDiedWhileTheAgentWasDownIsReportedOnce(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	a.launch(t, testApp("brief", "-sleep", "2s", "-exit", "7"))
	e.fm.waitState("brief", task.Running, 60*time.Second)
	a.stop(t)
	deadline := time.Now().Add(30 * time.Second)
	for e.containerStatus("brief") != ctrd.Stopped {
		if time.Now().After(deadline) {
			t.Fatalf("the container never stopped: %q", e.containerStatus("brief"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b := e.start()
	st := e.fm.waitState("brief", task.Failed, 30*time.Second)
	if st.ExitStatus == nil || *st.ExitStatus != 7 {
		t.Fatalf("FAILED update = %+v, want exit status 7", st)
	}
	if out := b.logs(t, "brief", "stdout"); !strings.HasPrefix(out, "testapp: started") || !strings.HasSuffix(out, "testapp: exiting with 7\n") {
		t.Fatalf("stdout once FAILED was sent: %q", out)
	}
	b.stop(t)
	e.start()
	time.Sleep(500 * time.Millisecond)
	if got := fmt.Sprint(e.fm.states("brief")); got != "[TASK_STARTING TASK_RUNNING TASK_FAILED]" {
		t.Fatalf("states = %s, want the end reported once", got)
	}
	if e.containerStatus("brief") != "" {
		t.Fatal("the ended container was not removed")
	}
}

// TestOrphanContainersAreRemoved: a container in the agent's namespace that its checkpoint does
// not know is killed and removed when the agent starts. With an empty data dir (a lost one) the
// agent says so in one line naming what it removed, and tells the master nothing about it: its
// registration lists no task and it sends no update (the master ends the old agent's tasks).
func TestOrphanContainersAreRemoved(t *testing.T) {
	e := newEnv(t)
	client := containerdtest.Client(t)
	ctx := namespaces.WithNamespace(context.Background(), e.ns)
	img, err := client.GetImage(ctx, containerdtest.TestAppImage)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewContainer(ctx, "stray", ctrd.WithImage(img), ctrd.WithNewSnapshot("stray", img),
		ctrd.WithNewSpec(ociSpecForTest(img, "-sleep", "1h")...))
	if err != nil {
		t.Fatal(err)
	}
	tk, err := c.NewTask(ctx, nilIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &containerdtest.Buffer{}
	a := e.start(func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if e.containerPID("stray") != 0 {
		t.Fatal("the orphan still runs")
	}
	if _, err := client.LoadContainer(ctx, "stray"); err == nil {
		t.Fatal("the orphan container is still there")
	}
	if l := logs.String(); !strings.Contains(l, "empty checkpoint (a new data dir, or a lost one): removed every container") || !strings.Contains(l, "removed=1 containers=[stray]") {
		t.Fatalf("the agent's log does not say what it removed and why:\n%s", l)
	}
	e.fm.mu.Lock()
	reg, updates := e.fm.regs[len(e.fm.regs)-1], len(e.fm.updates)
	e.fm.mu.Unlock()
	if len(reg.Tasks) != 0 || updates != 0 || len(a.tasks.list()) != 0 {
		t.Fatalf("the master was told of %d tasks and %d updates; the agent has %d tasks; want none", len(reg.Tasks), updates, len(a.tasks.list()))
	}
}

// TestNoImageRunsOnTheHostRootReadOnly: without an image the command runs on the host's files,
// which it cannot change, with a writable sandbox and /tmp.
func TestNoImageRunsOnTheHostRootReadOnly(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	a.launch(t, api.TaskInfo{
		TaskID: "host", Resources: mustRes(t, 0.1, 32),
		Cmd: `echo hello > "$MESOS_SANDBOX/note" && cat "$MESOS_SANDBOX/note"; ` +
			`if touch /usr/agora-was-here 2>/dev/null; then echo root-writable; else echo root-read-only; fi; ` +
			`touch /tmp/x && echo tmp-writable; echo "home=$HOME pwd=$(pwd)"`,
	})
	e.fm.waitState("host", task.Finished, 60*time.Second)
	out := a.logs(t, "host", "stdout")
	sandbox := a.Agent.exec.Sandbox("host")
	for _, want := range []string{"hello\n", "root-read-only\n", "tmp-writable\n", "home=" + sandbox + " pwd=" + sandbox + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

// TestLaunchThatDoesNotFitIsTaskError: the agent never runs more than it has.
func TestLaunchThatDoesNotFitIsTaskError(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	big := testApp("big", "-sleep", "1h")
	big.Resources.CPUs = 1.5
	a.launch(t, big)
	e.fm.waitState("big", task.Running, 60*time.Second)
	more := testApp("more", "-sleep", "1h")
	more.Resources.CPUs = 1
	st := a.launch(t, more)
	if st.State != task.Error || !strings.Contains(st.Message, "free") {
		t.Fatalf("an overcommitting launch: %+v, want TASK_ERROR", st)
	}
	e.fm.waitState("more", task.Error, 10*time.Second)
	if e.containerPID("more") != 0 {
		t.Fatal("the task that does not fit runs")
	}
	portless := testApp("elsewhere", "-sleep", "1h")
	portless.Resources.CPUs = 0.1
	portless.Resources.Ports = mustRanges(t, 40000) // outside the agent's 31000-31100
	if st := a.launch(t, portless); st.State != task.Error {
		t.Fatalf("a port the agent does not have: %+v, want TASK_ERROR", st)
	}
}

// TestBadLaunchesAreRefusedNamingTheField covers what never becomes a task.
func TestBadLaunchesAreRefusedNamingTheField(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	for _, tc := range []struct {
		body  any
		code  int
		field string
	}{
		{map[string]any{"task_id": "a/b", "cmd": "true"}, 422, "task_id"},
		{map[string]any{"task_id": "x", "cmd": "true", "resources": map[string]any{"cpus": -1}}, 422, "resources"},
		{map[string]any{"task_id": "x"}, 422, "cmd"},
		{map[string]any{"task_id": "x", "image": "UPPER CASE!"}, 422, "image"},
		{map[string]any{"task_id": "x", "cmd": "true", "colour": "red"}, 400, "colour"},
		{map[string]any{"task_id": "x", "cmd": "true", "kill_grace_period_seconds": "soon"}, 400, "kill_grace_period_seconds"},
		{map[string]any{"task_id": "x", "cmd": "true", "health_checks": []any{map[string]any{"protocol": "HTTP", "portIndex": 3}}}, 422, "health_checks[0]"},
		// Secret files: inside the sandbox, or absolute with an image; each path once. The
		// answer never holds the value.
		{map[string]any{"task_id": "x", "cmd": "true", "secret_files": []any{map[string]any{"container_path": "/etc/pw", "value": "v-9931"}}}, 422, "secret_files[0].container_path"},
		{map[string]any{"task_id": "x", "cmd": "true", "secret_files": []any{map[string]any{"container_path": "ok", "value": "v-9931"}, map[string]any{"container_path": "../pw", "value": "v-9931"}}}, 422, "secret_files[1].container_path"},
		{map[string]any{"task_id": "x", "image": containerdtest.TestAppImage, "secret_files": []any{map[string]any{"container_path": "/run/pw", "value": "v-9931"}, map[string]any{"container_path": "/run/pw", "value": "v-9931"}}}, 422, "secret_files[1].container_path"},
	} {
		var body struct {
			Message string `json:"message"`
			Field   string `json:"field"`
		}
		code := a.call(t, "POST", "/v1/tasks", tc.body, &body)
		if code != tc.code || tc.field != "" && body.Field != tc.field || body.Message == "" || strings.Contains(body.Message, "v-9931") {
			t.Errorf("%v: %d %+v, want %d naming %q", tc.body, code, body, tc.code, tc.field)
		}
	}
	a.launch(t, testApp("dup", "-sleep", "1h"))
	if code := a.call(t, "POST", "/v1/tasks", testApp("dup"), nil); code != 409 {
		t.Errorf("a duplicate task id: %d, want 409", code)
	}
	var tasks []api.Task
	a.call(t, "GET", "/v1/tasks", nil, &tasks)
	if len(tasks) != 1 {
		t.Errorf("bad launches left tasks behind: %+v", tasks)
	}
}

// TestLaunchFailuresSayWhatToDo: a missing image and a missing binary end as TASK_FAILED with
// a message a person can act on.
func TestLaunchFailuresSayWhatToDo(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	// A registry on a closed loopback port: the pull fails at once, without the internet.
	a.launch(t, api.TaskInfo{TaskID: "noimage", Image: fmt.Sprintf("127.0.0.1:%d/nothing:1", containerdtest.FreePort(t)), Resources: mustRes(t, 0.1, 32)})
	a.launch(t, api.TaskInfo{TaskID: "nobinary", Image: containerdtest.TestAppImage, Cmd: "echo the test image has no shell", Resources: mustRes(t, 0.1, 32)})
	st := e.fm.waitState("noimage", task.Failed, 60*time.Second)
	if st.Reason != task.ReasonContainerLaunchFailed || !strings.Contains(st.Message, "agora image import") || !strings.Contains(st.Message, "pulling") {
		t.Errorf("missing image: %+v", st)
	}
	st = e.fm.waitState("nobinary", task.Failed, 60*time.Second)
	if st.Reason != task.ReasonContainerLaunchFailed || !strings.Contains(st.Message, `"sh"`) {
		t.Errorf("missing binary: %+v", st)
	}
}

// TestUpdatesAreResentUntilAcknowledged: the master refuses the first updates; they come again,
// in order, and none is lost.
func TestUpdatesAreResentUntilAcknowledged(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	e.fm.mu.Lock()
	e.fm.refuse = 2
	e.fm.mu.Unlock()
	a.launch(t, testApp("stubborn-master", "-exit", "0"))
	e.fm.waitState("stubborn-master", task.Finished, 60*time.Second)
	if got := fmt.Sprint(e.fm.states("stubborn-master")); got != "[TASK_STARTING TASK_RUNNING TASK_FINISHED]" {
		t.Fatalf("states = %s", got)
	}
	// The master records an update before it answers, and the agent takes in the answer's ack
	// a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, err := a.store.Pending()
		if err == nil && len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending 10s after the acks: %v %v", pending, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDrainKillsAndReportsBeforeStopping: with --drain, stopping the agent kills its tasks and
// their KILLED updates are acknowledged before it exits.
func TestDrainKillsAndReportsBeforeStopping(t *testing.T) {
	e := newEnv(t)
	a := e.start(withDrain)
	a.launch(t, testApp("drained", "-sleep", "1h"))
	e.fm.waitState("drained", task.Running, 60*time.Second)
	a.stop(t)
	if st, _ := e.fm.last("drained"); st.State != task.Killed {
		t.Fatalf("after a draining stop the master last heard %+v, want TASK_KILLED", st)
	}
	if e.containerPID("drained") != 0 {
		t.Fatal("the drained task's container is still there")
	}
}

// TestHealthCheckFailuresKillTheTask: the app turns unhealthy; after maxConsecutiveFailures
// the agent kills it and says why.
func TestHealthCheckFailuresKillTheTask(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	port := agentPort(t)
	info := testApp("sickly", "-sleep", "1h")
	info.Resources.Ports = mustRanges(t, port)
	info.HealthChecks = mustChecks(t, `[{"protocol":"HTTP","path":"/health","portIndex":0,"gracePeriodSeconds":30,"intervalSeconds":1,"timeoutSeconds":1,"maxConsecutiveFailures":2,"delaySeconds":0}]`)
	a.launch(t, info)
	healthy := e.fm.waitFor("sickly", 60*time.Second, func(st api.TaskStatus) bool { return st.Healthy != nil && *st.Healthy })
	if healthy.State != task.Running {
		t.Fatalf("healthy update: %+v", healthy)
	}
	resp, err := httpPost(fmt.Sprintf("http://127.0.0.1:%d/health/fail", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := e.fm.waitState("sickly", task.Killed, 30*time.Second)
	if st.Healthy == nil || *st.Healthy || !strings.Contains(st.Message, "2 consecutive failed HTTP health checks") {
		t.Fatalf("KILLED update = %+v", st)
	}
	states := e.fm.states("sickly")
	if fmt.Sprint(states[len(states)-2:]) != "[TASK_KILLING TASK_KILLED]" {
		t.Fatalf("states = %v", states)
	}
}

// TestStatsReadTheCgroup: a running task's usage and limits come from its cgroup.
func TestStatsReadTheCgroup(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	info := testApp("measured", "-alloc-mib", "16", "-sleep", "1h")
	info.Resources.Mem = 128
	a.launch(t, info)
	e.fm.waitState("measured", task.Running, 60*time.Second)
	var s struct {
		MemLimitBytes uint64  `json:"mem_limit_bytes"`
		MemTotalBytes uint64  `json:"mem_total_bytes"`
		CPUUser       float64 `json:"cpus_user_time_secs"`
		Timestamp     float64 `json:"timestamp"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code := a.call(t, "GET", "/v1/tasks/measured/stats", nil, &s); code != 200 {
			t.Fatalf("stats: %d", code)
		}
		if s.MemTotalBytes >= 16<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s.MemLimitBytes != 128<<20 || s.MemTotalBytes < 16<<20 || s.Timestamp == 0 {
		t.Fatalf("stats = %+v, want a 128 MiB limit and at least the 16 MiB the app holds", s)
	}
	var all []map[string]any
	a.call(t, "GET", "/monitor/statistics", nil, &all)
	if len(all) != 1 || all[0]["executor_id"] != "measured" {
		t.Fatalf("/monitor/statistics = %v", all)
	}
	var totals struct {
		Allocated resources.Resources `json:"allocated"`
		Running   int                 `json:"tasks_running"`
		Usage     struct {
			MemTotalBytes uint64  `json:"mem_total_bytes"`
			CPUsLimit     float64 `json:"cpus_limit"`
		} `json:"usage"`
	}
	// The cgroup's figure moves a little from one read to the next (a few pages reclaimed or
	// touched): read until it holds the app's 16 MiB again, for a bounded while.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		a.call(t, "GET", "/v1/stats", nil, &totals)
		if totals.Usage.MemTotalBytes >= 16<<20 || time.Now().After(deadline) {
			break
		}
	}
	if totals.Running != 1 || totals.Allocated.Mem != 128 || totals.Usage.MemTotalBytes < 16<<20 || totals.Usage.CPUsLimit != 0.1 {
		t.Fatalf("/v1/stats = %+v", totals)
	}
}

// TestCommandHealthCheckRunsInTheContainer: a COMMAND check runs inside the task's container,
// in its environment; the task turns healthy once the file the check looks for is there.
func TestCommandHealthCheckRunsInTheContainer(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	info := api.TaskInfo{TaskID: "checked", Resources: mustRes(t, 0.1, 32), Cmd: "sleep 3600"}
	info.HealthChecks = mustChecks(t, `[{"protocol":"COMMAND","command":{"value":"test -f \"$MESOS_SANDBOX/ready\""},"gracePeriodSeconds":0,"intervalSeconds":1,"timeoutSeconds":5,"maxConsecutiveFailures":0,"delaySeconds":0}]`)
	a.launch(t, info)
	sick := e.fm.waitFor("checked", 60*time.Second, func(st api.TaskStatus) bool { return st.Healthy != nil && !*st.Healthy })
	if sick.State != task.Running || !strings.Contains(sick.Message, "exited 1") {
		t.Fatalf("unhealthy update: %+v", sick)
	}
	if err := os.WriteFile(filepath.Join(a.Agent.exec.Sandbox("checked"), "ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.fm.waitFor("checked", 30*time.Second, func(st api.TaskStatus) bool { return st.Healthy != nil && *st.Healthy })
	a.call(t, "POST", "/v1/tasks/checked/kill", nil, nil)
	e.fm.waitState("checked", task.Killed, 30*time.Second)
}

// TestHealthCheckDelayIsMarathons: delaySeconds as Marathon 1.10 has it. An HTTP check (one
// Marathon runs itself, keeping delaySeconds without acting on it) probes from the start even
// with "delaySeconds": 600; a COMMAND check (one Marathon leaves to Mesos) speaks no earlier
// than its delaySeconds after the task runs.
func TestHealthCheckDelayIsMarathons(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	port := agentPort(t)
	quick := testApp("quick", "-sleep", "1h")
	quick.Resources.Ports = mustRanges(t, port)
	quick.HealthChecks = mustChecks(t, `[{"protocol":"HTTP","path":"/health","portIndex":0,"gracePeriodSeconds":60,"intervalSeconds":1,"timeoutSeconds":2,"delaySeconds":600}]`)
	held := api.TaskInfo{TaskID: "held", Resources: mustRes(t, 0.1, 32), Cmd: "sleep 3600"}
	held.HealthChecks = mustChecks(t, `[{"protocol":"COMMAND","command":{"value":"true"},"intervalSeconds":1,"timeoutSeconds":5,"delaySeconds":3}]`)
	a.launch(t, quick)
	a.launch(t, held)
	e.fm.waitFor("quick", 60*time.Second, func(st api.TaskStatus) bool { return st.Healthy != nil && *st.Healthy })
	healthy := e.fm.waitFor("held", 60*time.Second, func(st api.TaskStatus) bool { return st.Healthy != nil && *st.Healthy })
	var running api.TaskStatus // its first TASK_RUNNING, before any health was known
	e.fm.mu.Lock()
	for _, u := range e.fm.updates {
		if u.TaskID == "held" && u.State == task.Running && running.TaskID == "" {
			running = u
		}
	}
	e.fm.mu.Unlock()
	if running.Healthy != nil {
		t.Fatalf("the first TASK_RUNNING of held already had its health: %+v", running)
	}
	if waited := healthy.Timestamp.Sub(running.Timestamp); waited < 2900*time.Millisecond {
		t.Fatalf("the COMMAND check with delaySeconds 3 spoke %v after the task ran", waited)
	}
}

// TestLogsFollowUntilTheTaskEnds reads a task's output through the API as it is written, and
// the follow ends when the task does.
func TestLogsFollowUntilTheTaskEnds(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	a.launch(t, api.TaskInfo{TaskID: "chatty", Resources: mustRes(t, 0.1, 32),
		Cmd: "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"})
	e.fm.waitState("chatty", task.Running, 60*time.Second)
	resp, err := http.Get(a.base + "/v1/tasks/chatty/logs?stream=stdout&follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan []byte)
	go func() { b, _ := io.ReadAll(resp.Body); ended <- b }()
	select {
	case b := <-ended:
		if string(b) != "line 1\nline 2\nline 3\nline 4\nline 5\n" {
			t.Fatalf("followed %q", b)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the follow did not end with the task")
	}
	// The agent's own view: the follow ends once the task has ended there (the masters hear of
	// it a moment later, when the update is delivered).
	var tk api.Task
	if a.call(t, "GET", "/v1/tasks/chatty", nil, &tk); tk.Status.State != task.Finished {
		t.Fatalf("the follow ended before the task: %+v", tk.Status)
	}
}

// TestImageIsPulledFromARegistry: an image the agent does not have is pulled (from a registry on
// loopback) and run; a second task of it does not pull again unless asked to.
func TestImageIsPulledFromARegistry(t *testing.T) {
	e := newEnv(t)
	archive, err := containerdtest.TestAppArchive()
	if err != nil {
		t.Fatal(err)
	}
	reg := containerdtest.ServeRegistry(t, archive)
	a := e.start()
	image := reg.Host + "/team/testapp:1.0"
	a.launch(t, api.TaskInfo{TaskID: "pulled", Image: image, Args: []string{"-print-args"}, Resources: mustRes(t, 0.1, 32)})
	e.fm.waitState("pulled", task.Finished, 60*time.Second)
	if out := a.logs(t, "pulled", "stdout"); !strings.Contains(out, "args: -print-args") {
		t.Fatalf("stdout = %q", out)
	}
	pulls := reg.Pulls.Load()
	if pulls == 0 {
		t.Fatal("the registry was never asked")
	}
	a.launch(t, api.TaskInfo{TaskID: "cached", Image: image, Resources: mustRes(t, 0.1, 32)})
	e.fm.waitState("cached", task.Finished, 60*time.Second)
	if reg.Pulls.Load() != pulls {
		t.Fatal("an image already here was pulled again")
	}
	a.launch(t, api.TaskInfo{TaskID: "forced", Image: image, ForcePull: true, Resources: mustRes(t, 0.1, 32)})
	e.fm.waitState("forced", task.Finished, 60*time.Second)
	if reg.Pulls.Load() == pulls {
		t.Fatal("force_pull did not pull")
	}
}

// TestUpdatesGoOutAtOnceWhenTheMastersAnswerAgain: an update born while the agent is cut off the
// masters (gossip, its calls, theirs) fails to go and waits out its backoff; when the masters
// answer again it goes at once, not when the backoff ends — here never, on a clock that does not
// move.
func TestUpdatesGoOutAtOnceWhenTheMastersAnswerAgain(t *testing.T) {
	e := newEnv(t)
	sw := &faultnet.Switch{}
	a := e.start(func(c *Config) { c.Faults = sw; c.Clock = clock.NewFake(time.Now()) })
	a.launch(t, testApp("cut-off", "-sleep", "2s", "-exit", "0"))
	e.fm.waitState("cut-off", task.Running, 30*time.Second)
	sw.Cut(true)
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, err := a.store.Pending()
		if err != nil {
			t.Fatal(err)
		}
		if ups := pending["cut-off"]; len(ups) > 0 && ups[len(ups)-1].State == task.Finished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TASK_FINISHED pending on the cut-off agent: %v", pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // its first send fails; gossip declares the master dead
	if st, ok := e.fm.last("cut-off"); ok && st.State == task.Finished {
		t.Fatal("the master got TASK_FINISHED through the cut")
	}
	sw.Cut(false)
	e.fm.waitState("cut-off", task.Finished, 20*time.Second)
}

// TestFailedLaunchesLeaveOneTaskPerName: an app whose every launch fails here (its image
// missing) leaves one ended task in the agent's list — the latest — not one per attempt, as
// the masters and Marathon's lastTaskFailure keep one; a task that ran stays listed beside it.
func TestFailedLaunchesLeaveOneTaskPerName(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	missing := fmt.Sprintf("127.0.0.1:%d/nothing:1", containerdtest.FreePort(t))
	ran := testApp("web.ran", "-exit", "0")
	ran.Name = "/web"
	a.launch(t, ran)
	e.fm.waitState("web.ran", task.Finished, 60*time.Second)
	for i := range 5 {
		for _, name := range []string{"web", "db"} {
			id := fmt.Sprintf("%s.%d", name, i)
			a.launch(t, api.TaskInfo{TaskID: id, Name: "/" + name, FrameworkID: "fw-1", Image: missing, Resources: mustRes(t, 0.1, 32)})
			e.fm.waitState(id, task.Failed, 60*time.Second)
		}
	}
	want := []string{"db.4", "web.4", "web.ran"}
	var got []string
	deadline := time.Now().Add(10 * time.Second) // the last acknowledgement is taken in a moment after the update
	for {
		var tasks []api.Task
		a.call(t, "GET", "/v1/tasks", nil, &tasks)
		got = got[:0]
		for _, tk := range tasks {
			got = append(got, tk.Info.TaskID)
		}
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent lists %v, want %v: the latest failed launch of each name and the task that ran", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
