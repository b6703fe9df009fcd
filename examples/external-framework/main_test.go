package main

import (
	"bytes"
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
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent"
	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// The shim runs this test binary as each task's logger, as it runs agora in production.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == containerd.LoggerCommand {
		if err := logs.RunLogger(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cluster runs a real one-master cluster and a real agent on containerd, in this process.
func cluster(t *testing.T) (masterURL, agentURL, ns string) {
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

	ns = fmt.Sprintf("agora-test-example-%d", time.Now().UnixNano())
	client := containerdtest.Client(t)
	containerdtest.ImportTestApp(t, client, ns)
	t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	exec, err := containerd.New(containerd.Config{
		Client: client, Namespace: ns, SandboxRoot: filepath.Join(dataDir, "sandboxes"), LogBinary: self, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		DataDir: dataDir, Join: []string{m.GossipAddr()}, GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Hostname: "example-host", Logger: logger, GossipTiming: gossip.TimingLocal, RetryEvery: 100 * time.Millisecond,
		Executor: exec, Resources: resources.Resources{CPUs: 2, Mem: 1024, Disk: 1000, Ports: resources.Ranges{{Begin: 31000 + uint64(os.Getpid()%500)*10, End: 31009 + uint64(os.Getpid()%500)*10}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	adone := make(chan error, 1)
	go func() { adone <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, done := range []chan error{adone, mdone} {
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
	masterURL = "http://" + m.HTTPAddr()
	deadline := time.Now().Add(30 * time.Second)
	for a.ID() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not register within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return masterURL, "http://" + a.HTTPAddr(), ns
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

// TestExampleRunsTasksOnARealCluster: the example, as a user runs it, gets 3 tasks of the test
// app running in real containers through offers, health-checked, then kills them and tears
// itself down. Then, with -keep, it leaves tasks running, exits, and a second run subscribes
// again as the same framework within its failover timeout and finds them.
func TestExampleRunsTasksOnARealCluster(t *testing.T) {
	masterURL, agentURL, _ := cluster(t)
	var out syncBuffer
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
	ts := masterTasks(t, masterURL)
	if len(ts) != 3 {
		t.Fatalf("the master knows %d tasks, want 3: %+v", len(ts), ts)
	}
	for _, st := range ts {
		if st.State != task.Killed || st.FrameworkID == "" {
			t.Fatalf("task %+v, want KILLED of the framework", st)
		}
	}

	// -keep: the tasks stay; a second run with the framework id finds them running.
	cfg.name, cfg.tasks, cfg.keep = "keeper", 2, true
	out = syncBuffer{}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	fwID := regexp.MustCompile(`-framework-id (\S+)`).FindStringSubmatch(out.String())
	if fwID == nil {
		t.Fatalf("no framework id in:\n%s", out.String())
	}
	time.Sleep(500 * time.Millisecond) // disconnected for a while, within the failover timeout
	resp, err := http.Get(agentURL + "/v1/tasks/keeper-task-0")
	if err != nil {
		t.Fatal(err)
	}
	var tk api.Task
	json.NewDecoder(resp.Body).Decode(&tk)
	resp.Body.Close()
	if tk.Status.State != task.Running {
		t.Fatalf("after the framework left, its task is %+v", tk.Status)
	}
	cfg.keep, cfg.frameworkID = false, fwID[1]
	out = syncBuffer{}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "launching") || !strings.Contains(out.String(), "subscribed as framework "+fwID[1]) ||
		!strings.Contains(out.String(), "all 2 tasks killed") {
		t.Fatalf("the second run should find the 2 tasks and kill them, launching none:\n%s", out.String())
	}
}
