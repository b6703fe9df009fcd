package containerd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/resources"
)

func newExecutor(t *testing.T) *Executor {
	t.Helper()
	return newExecutorWith(t, func(*Config) {})
}

var taskSeq int

func taskID(t *testing.T) string {
	taskSeq++
	return fmt.Sprintf("exec-%d-%d", time.Now().UnixNano(), taskSeq)
}

// waitExit waits for the task's end and removes its container, which also copies the last of
// its output into its log files.
func waitExit(t *testing.T, e *Executor, h *Handle, within time.Duration) Exit {
	t.Helper()
	select {
	case ex := <-h.Done():
		if err := e.Remove(context.Background(), h.ID); err != nil {
			t.Fatal(err)
		}
		return ex
	case <-time.After(within):
		t.Fatalf("task %s did not exit within %v", h.ID, within)
		return Exit{}
	}
}

// waitOutput waits until the task's stdout holds want.
func waitOutput(t *testing.T, h *Handle, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(filepath.Join(h.Logs, "stdout")); strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never wrote %q", h.ID, want)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLaunchRunsToTheEndWithOutputAndEnv(t *testing.T) {
	e := newExecutor(t)
	p0, p1 := containerdtest.FreePort(t), containerdtest.FreePort(t)
	h, err := e.Launch(context.Background(), Spec{
		TaskID: taskID(t), AgentID: "agent-1", Image: containerdtest.TestAppImage,
		// With ports, testapp serves on PORT0; -sleep makes it end on its own.
		Args: []string{"-print-env", "-stderr", "to stderr", "-sleep", "100ms"}, Env: map[string]string{"GREETING": "hi"},
		Ports: []uint64{p0, p1}, PortNames: []string{"http", "admin-api"}, Host: "node1",
		CPUs: 0.5, MemMiB: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, h, 30*time.Second)
	if ex.Code != 0 || ex.OOMKilled {
		t.Fatalf("exit = %+v, want 0", ex)
	}
	out := readFile(t, filepath.Join(h.Logs, "stdout"))
	for _, want := range []string{"GREETING=hi", fmt.Sprintf("PORT0=%d", p0), fmt.Sprintf("PORT1=%d", p1), fmt.Sprintf("PORTS=%d,%d", p0, p1),
		fmt.Sprintf("PORT_HTTP=%d", p0), fmt.Sprintf("PORT_ADMIN_API=%d", p1),
		"HOST=node1", "AGORA_AGENT_ID=agent-1", "AGORA_TASK_ID=" + h.ID, "HOME=" + h.Sandbox, "MESOS_SANDBOX=" + h.Sandbox, "PATH=" + DefaultPath} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if got := readFile(t, filepath.Join(h.Logs, "stderr")); got != "to stderr\n" {
		t.Errorf("stderr = %q", got)
	}
}

func TestExitStatusIsReported(t *testing.T) {
	e := newExecutor(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Cmd: "exit 3"})
	if err == nil {
		// The test image has no shell: sh -c fails to start, which Launch reports.
		ex := waitExit(t, e, h, 30*time.Second)
		t.Fatalf("sh -c in an image without a shell ran: %+v", ex)
	}
	h, err = e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-exit", "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, e, h, 30*time.Second); ex.Code != 3 {
		t.Fatalf("exit = %+v, want 3", ex)
	}
}

func TestKillHonoursTheGracePeriod(t *testing.T) {
	e := newExecutor(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-sleep", "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, h, "testapp: started", 30*time.Second) // it catches SIGTERM from then on
	start := time.Now()
	if err := e.Kill(context.Background(), h.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, h, 30*time.Second)
	if ex.Code != 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("a task that stops on SIGTERM: exit %+v after %v, want 0 well within the grace", ex, time.Since(start))
	}
	if !strings.Contains(readFile(t, filepath.Join(h.Logs, "stdout")), "got terminated") {
		t.Error("the task never saw SIGTERM")
	}
}

func TestKillEscalatesAfterTheGracePeriod(t *testing.T) {
	e := newExecutor(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-sleep", "1h", "-ignore-term", "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, h, "testapp: started", 30*time.Second) // it catches SIGTERM from then on
	start := time.Now()
	if err := e.Kill(context.Background(), h.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, h, 30*time.Second)
	if ex.Code != 137 || ex.OOMKilled {
		t.Fatalf("exit = %+v, want 137 from SIGKILL", ex)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("SIGKILL came after %v, before the 1s grace", d)
	}
}

// TestTheLeastMemoryTasksMayAskForStarts: a container limited to resources.MinTaskMem, the
// floor the frameworks refuse below, starts and runs to its end, with and without an image: the
// floor holds runc's own start-up (which needs about 3 MiB inside the limit) on this runc.
func TestTheLeastMemoryTasksMayAskForStarts(t *testing.T) {
	e := newExecutor(t)
	for _, spec := range []Spec{
		{Image: containerdtest.TestAppImage, Args: []string{"-sleep", "100ms"}},
		{Cmd: "sleep 0.1"},
	} {
		spec.TaskID, spec.MemMiB = taskID(t), resources.MinTaskMem
		h, err := e.Launch(context.Background(), spec)
		if err != nil {
			t.Fatalf("a task of %v MiB (image %q): %v", resources.MinTaskMem, spec.Image, err)
		}
		if ex := waitExit(t, e, h, 60*time.Second); ex.Code != 0 || ex.OOMKilled {
			t.Fatalf("a task of %v MiB (image %q): exit %+v, want 0", resources.MinTaskMem, spec.Image, ex)
		}
	}
}

// TestTheLeastCPUTasksMayAskForStart: tasks of 0.001 and 0.005 cpus (Marathon takes any cpus
// above 0) start and run: their CFS quota is held to the kernel's least, 1 ms a period.
func TestTheLeastCPUTasksMayAskForStart(t *testing.T) {
	e := newExecutor(t)
	for _, cpus := range []float64{0.001, 0.005} {
		spec := Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-sleep", "100ms"}, CPUs: cpus, MemMiB: 64}
		h, err := e.Launch(context.Background(), spec)
		if err != nil {
			t.Fatalf("a task of %v cpus: %v", cpus, err)
		}
		if ex := waitExit(t, e, h, 60*time.Second); ex.Code != 0 {
			t.Fatalf("a task of %v cpus: exit %+v, want 0", cpus, ex)
		}
	}
}

func TestMemoryLimitOOMIsReported(t *testing.T) {
	e := newExecutor(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-alloc-mib", "256", "-sleep", "1h"}, MemMiB: 32})
	if err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, h, 60*time.Second)
	if !ex.OOMKilled || ex.Code != 137 {
		t.Fatalf("exit = %+v, want an OOM kill (137)", ex)
	}
}

func TestAppAnswersOnItsPort(t *testing.T) {
	e := newExecutor(t)
	port := containerdtest.FreePort(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-sleep", "1h"}, Ports: []uint64{port}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.Kill(context.Background(), h.ID, time.Second); waitExit(t, e, h, 30*time.Second) }()
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Fatalf("GET %s = %d %q", url, resp.StatusCode, body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app never answered on PORT0 %d: %v", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLaunchRefusesWhatCannotRun(t *testing.T) {
	e := newExecutor(t)
	for name, s := range map[string]Spec{
		"missing image":        {TaskID: taskID(t), Image: fmt.Sprintf("127.0.0.1:%d/nope:latest", containerdtest.FreePort(t))},
		"bad id":               {TaskID: "a/b", Image: containerdtest.TestAppImage},
		"no image, no command": {TaskID: taskID(t)},
		"bad image name":       {TaskID: taskID(t), Image: "Not An Image!"},
	} {
		if _, err := e.Launch(context.Background(), s); err == nil {
			t.Errorf("%s: launched", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestOutputIsRotatedAtTheLimit: the pump rotates a chatty task's stdout.
func TestOutputIsRotatedAtTheLimit(t *testing.T) {
	e := newExecutorWith(t, func(c *Config) { c.LogMaxBytes, c.LogKeep = 1000, 2 })
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Cmd: "i=0; while [ $i -lt 100 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"})
	if err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, e, h, 30*time.Second); ex.Code != 0 {
		t.Fatalf("exit %+v", ex)
	}
	files, _ := filepath.Glob(filepath.Join(h.Logs, "stdout*"))
	if len(files) != 3 {
		t.Fatalf("files %v, want stdout and 2 rotated", files)
	}
	for _, f := range files {
		if info, _ := os.Stat(f); info.Size() > 1000 {
			t.Errorf("%s is %d bytes, over the 1000 limit", f, info.Size())
		}
	}
	c, end, err := logs.Read(h.Logs, "stdout", -60, 60)
	if err != nil || !strings.HasSuffix(string(c.Data), "line-99-"+strings.Repeat("x", 48)+"\n") || end < 5000 {
		t.Fatalf("tail %q end %d: %v", c.Data, end, err)
	}
}
