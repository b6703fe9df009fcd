package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent"
	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// cluster runs a real one-master cluster and real agents on containerd, in this process; each
// agent has cpusEach cpus and two ports.
func cluster(t *testing.T, nAgents int, cpusEach float64) (masterURL string, agentURLs []string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	m, err := master.New(master.Config{
		DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: logger, GossipTiming: gossip.TimingLocal,
		Scheduler: master.SchedulerConfig{AllocationInterval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(ctx) }()

	var agents []*agent.Agent
	dones := []chan error{}
	client := containerdtest.Client(t)
	for i := range nAgents {
		// Each agent has a containerd namespace and a port range of its own, as agents on
		// different hosts would.
		ns := fmt.Sprintf("agora-test-example-%d-%d", time.Now().UnixNano(), i)
		containerdtest.ImportTestApp(t, client, ns)
		t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
		dataDir := t.TempDir()
		exec, err := containerd.New(containerd.Config{
			Client: client, Namespace: ns, SandboxRoot: filepath.Join(dataDir, "sandboxes"), Logger: logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		p1, p2 := containerdtest.FreePort(t), containerdtest.FreePort(t)
		ports := resources.Ranges{{Begin: p1, End: p1}}.Add(resources.Ranges{{Begin: p2, End: p2}})
		a, err := agent.New(agent.Config{
			DataDir: dataDir, Join: []string{m.GossipAddr()}, GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Hostname: fmt.Sprintf("example-host-%d", i), Logger: logger, GossipTiming: gossip.TimingLocal, RetryEvery: 100 * time.Millisecond,
			Executor: exec, Resources: resources.Resources{CPUs: cpusEach, Mem: 1024, Disk: 1000, Ports: ports},
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		agents, dones = append(agents, a), append(dones, done)
	}
	dones = append(dones, mdone)
	t.Cleanup(func() {
		cancel()
		for _, done := range dones {
			select {
			case err := <-done:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(30 * time.Second):
				t.Error("the cluster did not stop within 30s")
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range agents {
		for a.ID() == "" {
			if time.Now().After(deadline) {
				t.Fatal("the agents did not register within 30s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		agentURLs = append(agentURLs, "http://"+a.HTTPAddr())
	}
	return "http://" + m.HTTPAddr(), agentURLs
}

func masterTasks(t *testing.T, masterURL string) []api.TaskStatus {
	t.Helper()
	resp, err := http.Get(masterURL + "/v1/tasks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ts []api.TaskStatus
	if err := json.NewDecoder(resp.Body).Decode(&ts); err != nil {
		t.Fatal(err)
	}
	return ts
}

// updateLine is one status update as the example prints it.
var updateLine = regexp.MustCompile(`(?m)^task (\S+) on (\S+): (TASK_\w+) \(update (\S*)\)`)

// TestExampleRunsTasksOnARealCluster: the example, as a user runs it, gets 3 tasks of the test
// app running in real containers on 2 agents through offers, health-checked, then kills them
// and tears itself down; every status update reaches it exactly once, in order. Then, with
// -keep, it leaves tasks running and exits, and a second run subscribes again as the same
// framework within its failover timeout, reconciles, and finds them.
func TestExampleRunsTasksOnARealCluster(t *testing.T) {
	// 0.25 cpus each: 2 agents hold 3 tasks of 0.1 cpu only together.
	masterURL, agentURLs := cluster(t, 2, 0.25)
	var out containerdtest.Buffer
	cfg := config{master: masterURL, name: "example", tasks: 3, image: containerdtest.TestAppImage, cpus: 0.1, mem: 32,
		failoverTimeout: time.Minute, timeout: 2 * time.Minute}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"all 3 tasks running", "all 3 tasks killed; framework torn down"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	// Each task's updates: once each (no uuid twice), and in an order its life allows.
	seen := map[string]bool{}
	last := map[string]task.State{}
	onAgent := map[string]bool{}
	for _, m := range updateLine.FindAllStringSubmatch(out.String(), -1) {
		id, agentID, state, uuid := m[1], m[2], task.State(m[3]), m[4]
		if seen[uuid] {
			t.Errorf("update %s of %s came twice", uuid, id)
		}
		seen[uuid] = true
		if prev, ok := last[id]; ok && prev != state && !task.CanTransition(prev, state) {
			t.Errorf("%s went %s -> %s", id, prev, state)
		}
		last[id] = state
		onAgent[agentID] = true
	}
	if len(last) != 3 || len(onAgent) != 2 {
		t.Fatalf("updates of %d tasks on %d agents, want 3 on 2:\n%s", len(last), len(onAgent), out.String())
	}
	ts := masterTasks(t, masterURL)
	if len(ts) != 3 {
		t.Fatalf("the master knows %d tasks, want 3: %+v", len(ts), ts)
	}
	for _, st := range ts {
		if st.State != task.Killed || st.FrameworkID == "" || last[st.TaskID] != task.Killed {
			t.Fatalf("task %+v, want KILLED of the framework, as it was told", st)
		}
	}

	// -keep: the tasks stay; a second run with the framework id finds them running.
	cfg.name, cfg.tasks, cfg.keep = "keeper", 2, true
	out = containerdtest.Buffer{}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	fwID := regexp.MustCompile(`-framework-id (\S+)`).FindStringSubmatch(out.String())
	if fwID == nil {
		t.Fatalf("no framework id in:\n%s", out.String())
	}
	time.Sleep(500 * time.Millisecond) // disconnected for a while, within the failover timeout
	running := 0
	for _, u := range agentURLs {
		resp, err := http.Get(u + "/v1/tasks")
		if err != nil {
			t.Fatal(err)
		}
		var tks []api.Task
		json.NewDecoder(resp.Body).Decode(&tks)
		resp.Body.Close()
		for _, tk := range tks {
			if strings.HasPrefix(tk.Info.TaskID, "keeper-") && tk.Status.State == task.Running {
				running++
			}
		}
	}
	if running != 2 {
		t.Fatalf("after the framework left, %d of its 2 tasks run", running)
	}
	cfg.keep, cfg.frameworkID = false, fwID[1]
	out = containerdtest.Buffer{}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "launching") || !strings.Contains(out.String(), "subscribed as framework "+fwID[1]) ||
		strings.Count(out.String(), "reconciled task") != 2 || !strings.Contains(out.String(), "all 2 tasks killed") {
		t.Fatalf("the second run should reconcile the 2 tasks and kill them, launching none:\n%s", out.String())
	}
}
