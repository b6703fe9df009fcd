package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/task"
)

// runningWatch tells a benchmark when the master hears a task's TASK_RUNNING (or its end).
type runningWatch struct {
	mu      sync.Mutex // guards waiting
	waiting map[string]chan api.TaskStatus
}

func watchUpdates(fm *fakeMaster) *runningWatch {
	w := &runningWatch{waiting: map[string]chan api.TaskStatus{}}
	fm.mu.Lock()
	fm.onUpdate = func(st api.TaskStatus) {
		w.mu.Lock()
		ch := w.waiting[st.TaskID]
		w.mu.Unlock()
		if ch != nil {
			select {
			case ch <- st:
			default:
			}
		}
	}
	fm.mu.Unlock()
	return w
}

// expect returns a channel that receives the task's updates from now on.
func (w *runningWatch) expect(id string) chan api.TaskStatus {
	ch := make(chan api.TaskStatus, 16)
	w.mu.Lock()
	w.waiting[id] = ch
	w.mu.Unlock()
	return ch
}

func waitUpdate(b *testing.B, ch chan api.TaskStatus, want task.State) {
	b.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case st := <-ch:
			if st.State == want {
				return
			}
			if st.State.IsTerminal() {
				b.Fatalf("task %s ended %s: %s", st.TaskID, st.State, st.Message)
			}
		case <-timeout:
			b.Fatalf("no %s within 60s", want)
		}
	}
}

// directLaunch is the floor: the container life cycle the executor runs (image config, host
// network, env, sandbox mount, cgroup limits, the same spool files for its output), done straight through
// the containerd client, timed from the first call until the process runs.
func directLaunch(b *testing.B, client *ctrd.Client, ns, sandboxRoot, id string) (time.Duration, func()) {
	ctx := namespaces.WithNamespace(context.Background(), ns)
	start := time.Now()
	img, err := client.GetImage(ctx, containerdtest.TestAppImage)
	if err != nil {
		b.Fatal(err)
	}
	sandbox := filepath.Join(sandboxRoot, id)
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		b.Fatal(err)
	}
	c, err := client.NewContainer(ctx, id, ctrd.WithImage(img), ctrd.WithNewSnapshot(id, img), ctrd.WithNewSpec(
		oci.WithImageConfig(img), oci.WithImageConfigArgs(img, []string{"-sleep", "1h"}),
		oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf,
		oci.WithEnv([]string{"HOME=" + sandbox}),
		oci.WithMounts([]specs.Mount{{Destination: sandbox, Source: sandbox, Type: "bind", Options: []string{"rbind", "rw"}}}),
		oci.WithProcessCwd(sandbox), oci.WithCPUShares(102), oci.WithCPUCFS(10000, 100000), oci.WithMemoryLimit(64<<20),
	))
	if err != nil {
		b.Fatal(err)
	}
	if err := logs.MakeSpools(sandbox); err != nil {
		b.Fatal(err)
	}
	tk, err := c.NewTask(ctx, containerd.SpoolIO(sandbox))
	if err != nil {
		b.Fatal(err)
	}
	exit, err := tk.Wait(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := tk.Start(ctx); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	return took, func() {
		tk.Kill(ctx, syscall.SIGKILL)
		<-exit
		tk.Delete(ctx)
		c.Delete(ctx, ctrd.WithSnapshotCleanup)
	}
}

func percentile(ds []time.Duration, p int) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(len(s)-1, len(s)*p/100)].Microseconds()) / 1000
}

// BenchmarkLaunchToRunning times 50 launches of the test image per iteration, from the launch
// request to the master hearing TASK_RUNNING, alternating with the same container life cycle
// done directly through containerd (the floor), so that both see the same machine. Target
// (issue 4): Agora's median <= 1.3x the direct path's.
func BenchmarkLaunchToRunning(b *testing.B) {
	const launches = 50
	e := newEnv(b)
	a := e.start()
	w := watchUpdates(e.fm)
	client := containerdtest.Client(b)
	sandboxRoot := b.TempDir()
	var agora, direct []time.Duration
	n := 0
	for b.Loop() {
		for i := 0; i < launches; i++ {
			n++
			took, cleanup := directLaunch(b, client, e.ns, sandboxRoot, fmt.Sprintf("direct-%d", n))
			direct = append(direct, took)
			cleanup()

			id := fmt.Sprintf("agora-%d", n)
			updates := w.expect(id)
			start := time.Now()
			a.launch(b, testApp(id, "-sleep", "1h"))
			waitUpdate(b, updates, task.Running)
			agora = append(agora, time.Since(start))
			a.call(b, "POST", "/v1/tasks/"+id+"/kill", api.KillRequest{GracePeriodSeconds: 0.001}, nil)
			waitUpdate(b, updates, task.Killed)
		}
	}
	b.ReportMetric(percentile(agora, 50), "agora-p50-ms")
	b.ReportMetric(percentile(agora, 99), "agora-p99-ms")
	b.ReportMetric(percentile(direct, 50), "direct-p50-ms")
	b.ReportMetric(percentile(direct, 99), "direct-p99-ms")
	b.ReportMetric(percentile(agora, 50)/percentile(direct, 50), "p50-ratio")
	b.ReportMetric(float64(runtime.NumCPU()), "cores")
}

// BenchmarkConcurrentLaunches launches 20 tasks at once and times until the master has heard
// TASK_RUNNING from all of them.
func BenchmarkConcurrentLaunches(b *testing.B) {
	const tasks = 20
	e := newEnv(b)
	e.res.CPUs, e.res.Mem = 8, 4096
	a := e.start()
	w := watchUpdates(e.fm)
	var totals []time.Duration
	round := 0
	for b.Loop() {
		round++
		chans := make([]chan api.TaskStatus, tasks)
		ids := make([]string, tasks)
		for i := range tasks {
			ids[i] = fmt.Sprintf("burst-%d-%d", round, i)
			chans[i] = w.expect(ids[i])
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i := range tasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				info := testApp(ids[i], "-sleep", "1h")
				info.Resources.CPUs = 0.1
				a.launch(b, info)
			}()
		}
		wg.Wait()
		for i := range tasks {
			waitUpdate(b, chans[i], task.Running)
		}
		totals = append(totals, time.Since(start))
		for i := range tasks {
			a.call(b, "POST", "/v1/tasks/"+ids[i]+"/kill", api.KillRequest{GracePeriodSeconds: 0.001}, nil)
		}
		for i := range tasks {
			waitUpdate(b, chans[i], task.Killed)
		}
	}
	b.ReportMetric(percentile(totals, 50), "all-running-ms")
	b.ReportMetric(float64(runtime.NumCPU()), "cores")
}
