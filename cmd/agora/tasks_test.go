package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/volumes"
	"github.com/agora-sched/agora/chaos/netem"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// envAsAgora makes this test binary behave as the agora binary, so that tests can run agents as
// processes of their own and kill -9 them.
const envAsAgora = "AGORA_TEST_AS_AGORA"

func TestMain(m *testing.M) {
	if os.Getenv(envAsAgora) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// testNamespace is a containerd namespace private to one test, removed when it ends, so that
// an agent's orphan removal never touches another test's containers.
func testNamespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("agora-test-cmd-%d", time.Now().UnixNano())
	client := containerdtest.Client(t)
	containerdtest.ImportTestApp(t, client, ns)
	t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
	return ns
}

// taskPorts hands each call a range of 50 host ports of its own, for an agent to offer (the
// tests' agents run tasks on the host's network, and the long tests run in parallel: two agents
// offering one port would let two tasks bind it). The ranges lie below Linux's ephemeral ports
// (32768 and up), where no loopback connection takes one, and apart from the chaos harness's
// (30000 and up) and the agent package's (31000 and up).
func taskPorts() int {
	return 24000 + 50*int(lastTaskPorts.Add(1))
}

var lastTaskPorts atomic.Int32

// taskPortRange is a range of taskPorts as --resources writes it: "[24050-24090]".
func taskPortRange() string {
	first := taskPorts()
	return fmt.Sprintf("[%d-%d]", first, first+40)
}

// process is an agora command run as a process of its own.
type process struct {
	cmd *exec.Cmd
	out *containerdtest.Buffer
}

// startProcess runs agora with args (logging warnings, unless args start with --log-level) and
// waits until its output matches every pattern; it answers each pattern's first group.
func startProcess(t *testing.T, args []string, patterns ...string) (*process, []string) {
	t.Helper()
	return startProcessWith(t, (*exec.Cmd).Start, args, patterns...)
}

// startProcessIn is startProcess in the network namespace ns (as `ip netns add` names it).
func startProcessIn(t *testing.T, ns string, args []string, patterns ...string) (*process, []string) {
	t.Helper()
	return startProcessWith(t, func(cmd *exec.Cmd) error { return netem.InNamespace(ns, cmd.Start) }, args, patterns...)
}

// startProcessWith is startProcess with start starting the process.
func startProcessWith(t *testing.T, start func(*exec.Cmd) error, args []string, patterns ...string) (*process, []string) {
	t.Helper()
	if len(args) == 0 || args[0] != "--log-level" {
		args = append([]string{"--log-level", "warn"}, args...)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envAsAgora+"=1")
	out := &containerdtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := start(cmd); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, out: out}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []string
		for _, pat := range patterns {
			if m := regexp.MustCompile(pat).FindStringSubmatch(out.String()); m != nil {
				got = append(got, m[1])
			}
		}
		if len(got) == len(patterns) {
			return p, got
		}
		select {
		case <-exited:
			t.Fatalf("agora %v exited:\n%s", args, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agora %v never printed %v:\n%s", args, patterns, out.String())
		}
	}
}

func httpJSON(t *testing.T, method, url string, in, out any) int {
	t.Helper()
	code, body, _ := call(t, method, url, "", in)
	if out != nil {
		// An error's body need not fit out (a 503 while the master is not leading yet, polled
		// for a list): the code tells the caller; only a success that does not decode is fatal.
		if err := json.Unmarshal([]byte(body), out); err != nil && code/100 == 2 {
			t.Fatalf("%s %s: %d %s", method, url, code, body)
		}
	}
	return code
}

// masterTask is the leader's view of a task, through GET /v1/tasks on the master.
func masterTask(t *testing.T, masterHTTP, id string) (api.TaskStatus, bool) {
	t.Helper()
	var all []api.TaskStatus
	resp, err := http.Get(masterHTTP + "/v1/tasks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return api.TaskStatus{}, false // no leader known right now: ask again
	}
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("GET %s/v1/tasks: %d: %v", masterHTTP, resp.StatusCode, err)
	}
	for _, st := range all {
		if st.TaskID == id {
			return st, true
		}
	}
	return api.TaskStatus{}, false
}

func waitMasterState(t *testing.T, masterHTTP, id string, want task.State) api.TaskStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, ok := masterTask(t, masterHTTP, id)
		if ok && st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master never saw %s %s; last %+v", id, want, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentKilledHardKeepsItsTasks is the agents issue's promise end to end: a master and an
// agent process; a task runs; the agent is killed with SIGKILL and started again; the task is
// still RUNNING in the same container (never launched twice), the new agent lists it to the
// master, and the task can still be killed, with every update reaching the master. The
// persistent volume the task writes to is there after the restart, with what it wrote, held by
// the task until it ends.
func TestAgentKilledHardKeepsItsTasks(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0"},
		`API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
	masterHTTP, masterGossip := got[0], got[1]
	agentDir := t.TempDir()
	t.Cleanup(func() { // after the agent's process is gone, before its data dir goes
		if err := volumes.Release(filepath.Join(agentDir, "volumes")); err != nil {
			t.Error(err)
		}
	})
	agentArgs := []string{"agent", "--join", masterGossip, "--data-dir", agentDir, "--containerd", sock, "--containerd-namespace", ns,
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:1024;disk:1000;ports:" + taskPortRange()}
	agent, got := startProcess(t, agentArgs, `API:\s+(http://\S+)`)
	agentHTTP := got[0]
	waitAgents(t, masterHTTP, func(as []api.Agent) bool { return len(as) == 1 })

	// Launched on the agent's own API without a framework, so that no failover timeout or
	// orphan rule of the master plays a part: this test is about the agent.
	info := api.TaskInfo{TaskID: "web-1", Image: containerdtest.TestAppImage, Args: []string{"-write", "/data/note=before the kill", "-sleep", "1h"},
		Resources: resources.Resources{CPUs: 0.1, Mem: 32}, PersistentVolumes: []api.VolumeMount{{VolumeID: "data", ContainerPath: "/data", Size: 8}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The agent takes launches once it has registered.
		code := httpJSON(t, "POST", agentHTTP+"/v1/tasks", info, nil)
		if code == http.StatusAccepted {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("launch: %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitMasterState(t, masterHTTP, "web-1", task.Running)
	pid := containerPID(t, ns, "web-1")

	if err := agent.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	agent.cmd.Process.Wait()
	if containerPID(t, ns, "web-1") != pid {
		t.Fatal("killing the agent killed its task")
	}
	_, got = startProcess(t, agentArgs, `API:\s+(http://\S+)`)
	agentHTTP = got[0]
	var tk api.Task
	deadline = time.Now().Add(20 * time.Second)
	for httpJSON(t, "GET", agentHTTP+"/v1/tasks/web-1", nil, &tk) != 200 || tk.Status.State != task.Running {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %+v", tk)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := containerPID(t, ns, "web-1"); got != pid {
		t.Fatalf("the task runs as pid %d after the restart, want the same %d", got, pid)
	}
	stdout := readLogs(t, agentHTTP, "web-1")
	if n := strings.Count(stdout, "testapp: started"); n != 1 || !strings.Contains(stdout, "write /data/note: ok") {
		t.Fatalf("the app started %d times, or did not write its note:\n%s", n, stdout)
	}
	var vols []api.AgentVolume
	if code := httpJSON(t, "GET", agentHTTP+"/v1/volumes", nil, &vols); code != 200 || len(vols) != 1 || vols[0].ID != "data" || vols[0].Task != "web-1" {
		t.Fatalf("volumes after the restart: %d %+v, want data, held by web-1", code, vols)
	}
	if b, err := os.ReadFile(filepath.Join(vols[0].Path, "note")); err != nil || string(b) != "before the kill" {
		t.Fatalf("the volume's note after the restart: %q %v", b, err)
	}
	if code := httpJSON(t, "DELETE", agentHTTP+"/v1/volumes/data", nil, nil); code != http.StatusConflict {
		t.Fatalf("DELETE of the volume the task holds: %d, want 409", code)
	}
	if code := httpJSON(t, "POST", agentHTTP+"/v1/tasks/web-1/kill", nil, nil); code != http.StatusAccepted {
		t.Fatalf("kill: %d", code)
	}
	st := waitMasterState(t, masterHTTP, "web-1", task.Killed)
	if st.AgentID == "" || st.Source != task.SourceAgent {
		t.Fatalf("KILLED at the master: %+v", st)
	}
	if code := httpJSON(t, "DELETE", agentHTTP+"/v1/volumes/data", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE of the volume once the task ended: %d, want 204", code)
	}
}

func containerPID(t *testing.T, ns, id string) uint32 {
	t.Helper()
	return containerdtest.TaskPID(t, containerdtest.Client(t), ns, id)
}

func readLogs(t *testing.T, agentHTTP, id string) string {
	t.Helper()
	resp, err := http.Get(agentHTTP + "/v1/tasks/" + id + "/logs?stream=stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// TestImageImport imports the test image's archive as an operator of an air-gapped agent would,
// then lists it.
func TestImageImport(t *testing.T) {
	sock := containerdtest.Socket(t)
	ns := fmt.Sprintf("agora-test-import-%d", time.Now().UnixNano())
	t.Cleanup(func() { containerdtest.RemoveNamespace(t, containerdtest.Client(t), ns) })
	archive, err := containerdtest.TestAppArchive()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "testapp.tar")
	if err := os.WriteFile(file, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"agora", "image", "import", "--containerd", sock, "--containerd-namespace", ns, file}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "imported "+containerdtest.TestAppImage+"\n" {
		t.Fatalf("import said %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"agora", "image", "list", "--containerd", sock, "--containerd-namespace", ns}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), containerdtest.TestAppImage+"  sha256:") {
		t.Fatalf("list said %q", out.String())
	}
	err = run(context.Background(), []string{"agora", "image", "import", "--containerd", sock, "--containerd-namespace", ns, filepath.Join(t.TempDir(), "missing.tar")}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "missing.tar") {
		t.Fatalf("a missing file: %v", err)
	}
}

// TestNewLeaderLearnsTheAgentsTasks: three masters, an agent with a running task; the leader
// stops; the agent registers with the new leader, listing its task, so the new leader knows it
// RUNNING without any new status update.
func TestNewLeaderLearnsTheAgentsTasks(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	masterArgs := func(join ...string) []string {
		args := []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--bootstrap-expect", "3"}
		for _, j := range join {
			args = append(args, "--join", j)
		}
		return args
	}
	type node struct {
		b          *background
		http, goss string
	}
	var masters []node
	b, got := startCmd(t, masterArgs(), `API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
	masters = append(masters, node{b, got[0], got[1]})
	for i := 0; i < 2; i++ {
		b, got := startCmd(t, masterArgs(masters[0].goss), `API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
		masters = append(masters, node{b, got[0], got[1]})
	}
	leaderOf := func(via string) string {
		var v api.ClusterView
		if httpJSON(t, "GET", via+"/v1/cluster", nil, &v) != 200 || v.Leader == nil || v.Leader.HTTP == "" {
			return ""
		}
		return "http://" + v.Leader.HTTP
	}
	var leader string
	deadline := time.Now().Add(30 * time.Second)
	for leader = leaderOf(masters[0].http); leader == ""; leader = leaderOf(masters[0].http) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, got = startCmd(t, []string{"agent", "--join", masters[1].goss, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:1;mem:512;disk:100;ports:" + taskPortRange()}, `API:\s+(http://\S+)`)
	agentHTTP := got[0]
	waitAgents(t, leader, func(as []api.Agent) bool { return len(as) == 1 })
	info := api.TaskInfo{TaskID: "survivor", Image: containerdtest.TestAppImage, Args: []string{"-sleep", "1h"}, Resources: resources.Resources{CPUs: 0.1, Mem: 32}}
	deadline = time.Now().Add(20 * time.Second)
	for httpJSON(t, "POST", agentHTTP+"/v1/tasks", info, nil) != http.StatusAccepted {
		if time.Now().After(deadline) {
			t.Fatal("the agent never took the launch")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitMasterState(t, leader, "survivor", task.Running)

	var rest []node
	for _, m := range masters {
		if m.http == leader {
			if err := m.b.stop(); err != nil {
				t.Fatalf("stopping the leader: %v", err)
			}
			continue
		}
		rest = append(rest, m)
	}
	var newLeader string
	deadline = time.Now().Add(30 * time.Second)
	for {
		newLeader = leaderOf(rest[0].http)
		if newLeader != "" && newLeader != leader {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := waitMasterState(t, newLeader, "survivor", task.Running)
	if st.AgentID == "" {
		t.Fatalf("the new leader's view: %+v", st)
	}
	// Through a follower too, once it knows the new leader: it forwards to it.
	for _, m := range rest {
		waitMasterState(t, m.http, "survivor", task.Running)
	}
	httpJSON(t, "POST", agentHTTP+"/v1/tasks/survivor/kill", nil, nil)
	waitMasterState(t, newLeader, "survivor", task.Killed)
}
