package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/promtext"
	"github.com/agora-sched/agora/pkg/task"
)

func checkRuntimeEvery(c *Config) { c.RuntimeCheckEvery = 100 * time.Millisecond }

// health is the agent's GET /health: its status code and reason.
func (ra *runningAgent) health(t testing.TB) (int, string) {
	t.Helper()
	var h struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	code := ra.call(t, "GET", "/health", nil, &h)
	return code, h.Reason
}

// waitHealth waits until /health answers want, and answers the reason it gave.
func (ra *runningAgent) waitHealth(t testing.TB, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, why := ra.health(t)
		if code == want {
			return why
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health answered %d (%s) for %s, want %d", code, why, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminalUpdates are the ended states the master got for the task.
func (fm *fakeMaster) terminalUpdates(taskID string) []task.State {
	var out []task.State
	for _, s := range fm.states(taskID) {
		if s.IsTerminal() {
			out = append(out, s)
		}
	}
	return out
}

// TestContainerdKilledAndRestarted kills -9 the agent's containerd (a private one) under
// running tasks, and starts it again on the same root and state 4 s later. Meanwhile the agent
// refuses launches with a 503 naming containerd, answers /health 503 with the reason, and tells
// the master of no task's end: the tasks run on under their shims. After, it re-attaches: the
// same processes run, a task killed behind containerd's back meanwhile is reported with its
// real exit status, a kill asked for meanwhile is carried out, COMMAND health checks (which
// need containerd) did not count the outage against the task, its output kept flowing, and the
// agent takes launches again.
//
// It is over 100 lines as one story told in order — before, during and after the outage — whose
// steps check what the earlier ones saw (the pids, when containerd died).
func TestContainerdKilledAndRestarted(t *testing.T) {
	d := containerdtest.StartDaemon(t)
	e := newEnvOn(t, d.Client(t))
	a := e.start(checkRuntimeEvery)

	a.launch(t, testApp("steady", "-sleep", "1h"))
	a.launch(t, testApp("doomed", "-sleep", "1h"))
	a.launch(t, testApp("unwanted", "-sleep", "1h"))
	checked := api.TaskInfo{TaskID: "checked", FrameworkID: "fw-1", Resources: mustRes(t, 0.1, 32), Cmd: "while :; do echo tick; sleep 0.2; done"}
	checked.HealthChecks = mustChecks(t, `[{"protocol":"COMMAND","command":{"value":"true"},"gracePeriodSeconds":0,"intervalSeconds":1,"timeoutSeconds":10,"maxConsecutiveFailures":2,"delaySeconds":0}]`)
	a.launch(t, checked)
	pids := map[string]uint32{}
	for _, id := range []string{"steady", "doomed", "unwanted", "checked"} {
		e.fm.waitState(id, task.Running, 60*time.Second)
		pids[id] = e.containerPID(id)
	}
	e.fm.waitFor("checked", 30*time.Second, func(st api.TaskStatus) bool { return st.Healthy != nil && *st.Healthy })
	if code, why := a.health(t); code != http.StatusOK {
		t.Fatalf("/health before the fault: %d %s", code, why)
	}

	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	why := a.waitHealth(t, http.StatusServiceUnavailable, 10*time.Second)
	t.Logf("/health 503 %.2fs after containerd died: %s", time.Since(killed).Seconds(), why)
	if !strings.Contains(why, "containerd") {
		t.Fatalf("/health's reason %q does not name containerd", why)
	}
	var refusal api.Error
	if code := a.call(t, "POST", "/v1/tasks", testApp("refused", "-sleep", "1h"), &refusal); code != http.StatusServiceUnavailable || !strings.Contains(refusal.Message, "containerd") {
		t.Fatalf("a launch while containerd is down answered %d %q, want 503 naming containerd", code, refusal.Message)
	}
	if _, ok := a.tasks.get("refused"); ok {
		t.Fatal("the refused launch left a task behind")
	}
	// Behind containerd's back: one process dies; a kill is asked for another.
	if err := syscall.Kill(int(pids["doomed"]), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st api.TaskStatus
	if code := a.call(t, "POST", "/v1/tasks/unwanted/kill", api.KillRequest{GracePeriodSeconds: 1}, &st); code != http.StatusAccepted || st.State != task.Killing {
		t.Fatalf("kill while containerd is down: %d %+v", code, st)
	}
	logsBefore := strings.Count(a.logs(t, "checked", "stdout"), "tick")
	// Down for 4 s: past the COMMAND check's two allowed failures, were it still running.
	for time.Since(killed) < 4*time.Second {
		for _, id := range []string{"steady", "doomed", "checked"} {
			if ended := e.fm.terminalUpdates(id); len(ended) > 0 {
				t.Fatalf("while containerd was down the master was told %s ended: %v", id, ended)
			}
		}
		if st, _ := e.fm.last("checked"); st.Healthy == nil || !*st.Healthy {
			t.Fatalf("while containerd was down the health of checked became %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ticks := strings.Count(a.logs(t, "checked", "stdout"), "tick"); ticks <= logsBefore {
		t.Fatalf("checked's output stopped while containerd was down: %d lines, %d before", ticks, logsBefore)
	}
	m, err := promtext.Get(a.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m["agora_agent_runtime_available"] != 0 || m["agora_agent_launches_refused_unavailable_total"] != 1 {
		t.Fatalf("metrics while down: available %g, refused %g", m["agora_agent_runtime_available"], m["agora_agent_launches_refused_unavailable_total"])
	}

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	a.waitHealth(t, http.StatusOK, 30*time.Second)
	t.Logf("/health 200 again %.2fs after containerd answered", time.Since(restarted).Seconds())

	for _, id := range []string{"steady", "checked"} {
		if got := e.containerPID(id); got != pids[id] {
			t.Fatalf("%s: pid %d after the restart, want the same %d", id, got, pids[id])
		}
		if tk, _ := a.tasks.get(id); tk.Status.State != task.Running {
			t.Fatalf("%s is %s after the restart", id, tk.Status.State)
		}
	}
	doomed := e.fm.waitState("doomed", task.Failed, 30*time.Second)
	if doomed.ExitStatus == nil || *doomed.ExitStatus != 137 || !strings.Contains(doomed.Message, "killed by signal 9") {
		t.Fatalf("the task killed while containerd was down was reported %+v, want exit status 137", doomed)
	}
	e.fm.waitState("unwanted", task.Killed, 30*time.Second)
	for _, id := range []string{"doomed", "unwanted"} {
		if s := e.containerStatus(id); s != "" {
			t.Fatalf("%s's container is left (%s)", id, s)
		}
	}
	// Re-attached: the tasks' ends are seen again, and launches are taken.
	a.launch(t, testApp("after", "-sleep", "1h"))
	e.fm.waitState("after", task.Running, 60*time.Second)
	a.call(t, "POST", "/v1/tasks/steady/kill", nil, nil)
	e.fm.waitState("steady", task.Killed, 30*time.Second)
	// The COMMAND check runs again (in the container, through containerd) and still passes.
	time.Sleep(3 * time.Second)
	if st, _ := e.fm.last("checked"); st.State != task.Running || st.Healthy == nil || !*st.Healthy {
		t.Fatalf("checked after the restart: %+v", st)
	}
	for _, id := range []string{"steady", "checked"} {
		want := map[string]string{"steady": "[TASK_STARTING TASK_RUNNING TASK_KILLING TASK_KILLED]", "checked": "[TASK_STARTING TASK_RUNNING TASK_RUNNING]"}[id]
		if got := fmt.Sprint(e.fm.states(id)); got != want {
			t.Fatalf("%s went through %s, want %s", id, got, want)
		}
	}
}

// TestContainerdQuickRestart: containerd killed and started again at once (well under a
// second): the broken waits re-attach, no task is told ended, and the same processes run on.
func TestContainerdQuickRestart(t *testing.T) {
	d := containerdtest.StartDaemon(t)
	e := newEnvOn(t, d.Client(t))
	a := e.start(checkRuntimeEvery)
	a.launch(t, testApp("steady", "-sleep", "1h"))
	e.fm.waitState("steady", task.Running, 60*time.Second)
	pid := e.containerPID("steady")
	for i := 0; i < 3; i++ {
		if err := d.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
	}
	// Available again: containerd answers and the wait is re-attached (Available says so).
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := a.exec.(*containerd.Executor).Available(context.Background())
		if code, _ := a.health(t); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not available 30 s after the restarts: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.containerPID("steady"); got != pid {
		t.Fatalf("pid %d after the restarts, want %d", got, pid)
	}
	if got := fmt.Sprint(e.fm.states("steady")); got != "[TASK_STARTING TASK_RUNNING]" {
		t.Fatalf("steady went through %s", got)
	}
	a.call(t, "POST", "/v1/tasks/steady/kill", nil, nil)
	e.fm.waitState("steady", task.Killed, 30*time.Second)
}

// lostAnswer is an executor whose launch starts the container, then loses containerd (kill
// -9) before the answer: a launch in flight when containerd died. With forget, containerd
// also loses the task, as containerd 1.6 does when killed while it creates one
// (containerd#6860): its bundle is hidden from the restarted containerd, whose shim runs on.
type lostAnswer struct {
	*containerd.Executor
	d      *containerdtest.Daemon
	ns     string
	forget bool
}

func (l lostAnswer) Launch(ctx context.Context, s containerd.Spec) (*containerd.Handle, error) {
	if _, err := l.Executor.Launch(ctx, s); err != nil {
		return nil, err
	}
	if err := l.d.Kill(); err != nil {
		return nil, err
	}
	if l.forget {
		dir := filepath.Join(l.d.Dir, "state", "io.containerd.runtime.v2.task", l.ns)
		if err := os.Rename(filepath.Join(dir, s.TaskID), filepath.Join(dir, ".lost-"+s.TaskID)); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: the test lost the launch's answer", containerd.ErrUnavailable)
}

// TestLaunchInFlightWhenContainerdDies: a launch whose container started but whose answer was
// lost with containerd ends FAILED with the reason once containerd answers again, and its
// container is removed first: never RUNNING and FAILED both, never a container left, nor a
// shim containerd lost.
func TestLaunchInFlightWhenContainerdDies(t *testing.T) {
	for _, forget := range []bool{false, true} {
		t.Run(fmt.Sprintf("containerd-forgets-the-task=%t", forget), func(t *testing.T) { launchInFlight(t, forget) })
	}
}

func launchInFlight(t *testing.T, forget bool) {
	d := containerdtest.StartDaemon(t)
	e := newEnvOn(t, d.Client(t))
	a := e.start(checkRuntimeEvery, func(c *Config) {
		c.Executor = lostAnswer{Executor: c.Executor.(*containerd.Executor), d: d, ns: e.ns, forget: forget}
	})
	a.launch(t, testApp("inflight", "-sleep", "1h"))
	deadline := time.Now().Add(60 * time.Second)
	for d.Running() {
		if time.Now().After(deadline) {
			t.Fatal("the launch never got to containerd")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.waitHealth(t, http.StatusServiceUnavailable, 10*time.Second)
	time.Sleep(time.Second)
	if got := fmt.Sprint(e.fm.states("inflight")); got != "[TASK_STARTING]" {
		t.Fatalf("while containerd was down the master got %s, want only TASK_STARTING", got)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	st := e.fm.waitState("inflight", task.Failed, 30*time.Second)
	if st.Reason != task.ReasonContainerLaunchFailed || !strings.Contains(st.Message, "containerd became unavailable while launching") {
		t.Fatalf("FAILED update = %+v", st)
	}
	if s := e.containerStatus("inflight"); s != "" {
		t.Fatalf("the launch's container is left (%s)", s)
	}
	if got := fmt.Sprint(e.fm.states("inflight")); got != "[TASK_STARTING TASK_FAILED]" {
		t.Fatalf("inflight went through %s", got)
	}
	if shims := d.Shims(); len(shims) != 0 {
		t.Fatalf("shims left after the failed launch: %+v", shims)
	}
	a.waitHealth(t, http.StatusOK, 30*time.Second)
}
