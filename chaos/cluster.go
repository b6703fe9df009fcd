package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// Node is one process of the cluster: a master or an agent, started from the agora binary with
// the same arguments (and data dir, and ports) each time.
type Node struct {
	Name   string // m1..m3, a1..
	Master bool
	HTTP   string // http://127.0.0.1:port
	Gossip string // 127.0.0.1:port
	NS     string // an agent's containerd namespace
	// DataDir is set for a node on its own small disk (Config.SmallDisk).
	DataDir string

	bin  string
	args []string
	log  *containerdtest.Buffer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs the node's process (again).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("%s is not running", n.Name)
	}
	return n.cmd.Process.Signal(sig)
}

// Kill is kill -9, and waits until the process is gone.
func (n *Node) Kill() error {
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	<-done
	return nil
}

// Stop is SIGTERM, and waits (up to 30 s, then SIGKILL).
func (n *Node) Stop() {
	if n.signal(syscall.SIGCONT) != nil { // a paused process cannot act on SIGTERM
		return
	}
	n.signal(syscall.SIGTERM)
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		n.Kill()
	}
}

// CutOff cuts a node off the others, or heals it: SIGUSR1 and SIGUSR2 to a node started with
// --chaos-faults (pkg/faultnet). A master loses raft, gossip and its calls to other nodes; an
// agent loses gossip, its calls to masters and theirs to it (its containers keep running).
func (n *Node) CutOff(on bool) error {
	if on {
		return n.signal(syscall.SIGUSR1)
	}
	return n.signal(syscall.SIGUSR2)
}

// KillTask kills a task's container on agent a behind the agent's back (SIGKILL through
// containerd), as the kernel's OOM killer or a crash would.
func (c *Cluster) KillTask(a *Node, taskID string) error {
	ctx := namespaced(c.t, a.NS)
	ctr, err := c.ctrd.LoadContainer(ctx, taskID)
	if err != nil {
		return err
	}
	tk, err := ctr.Task(ctx, nil)
	if err != nil {
		return err
	}
	return tk.Kill(ctx, syscall.SIGKILL)
}

// Pause is SIGSTOP; Resume is SIGCONT.
func (n *Node) Pause() error  { return n.signal(syscall.SIGSTOP) }
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

// Exited says whether the process has ended (after Start, not by Kill or Stop: a crash).
func (n *Node) Exited() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Log is what the process wrote.
func (n *Node) Log() string { return n.log.String() }

// Cluster is 3 masters and some agents on loopback, each agent with its own containerd
// namespace and host port range, all of them processes of the agora binary.
type Cluster struct {
	Masters []*Node
	Agents  []*Node
	Secret  string // the cluster secret the agents' APIs ask for
	// Containerd is the cluster's own containerd (Config.PrivateContainerd), which a scenario
	// may kill and start again; nil when the agents use the shared one.
	Containerd *containerdtest.Daemon
	t          testing.TB
	events     *Timeline
	hc         *http.Client
	ctrd       *containerd.Client // the agents' containerd, for the harness's own looks

	mu         sync.Mutex
	violations []string // of a scenario's own invariants (Violation), failed by Workload.Check
}

// Config shapes a cluster.
type Config struct {
	Bin      string // the agora binary
	Agents   int    // default 3
	Timeline *Timeline
	// SmallDisk, when set, puts that node's data dir (m1, m2, m3, a1, ..., or "agents": every
	// agent's) on a tmpfs of 64 MiB of its own, so that a scenario can fill it (needs root, as
	// make test runs).
	SmallDisk string
	// PrivateContainerd gives the cluster a containerd of its own (Cluster.Containerd, needs
	// root): the agents and the harness use its socket, and the test image is imported into
	// each agent's namespace there. A scenario may kill it; the shared one it must never.
	PrivateContainerd bool
}

// StartCluster starts the cluster and waits until a leader leads and every agent registered.
func StartCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Agents == 0 {
		cfg.Agents = 3
	}
	var daemon *containerdtest.Daemon
	var sock string
	var client *containerd.Client
	if cfg.PrivateContainerd {
		daemon = containerdtest.StartDaemon(t)
		sock, client = daemon.Socket, daemon.Client(t)
	} else {
		sock, client = containerdtest.Socket(t), containerdtest.Client(t)
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "cluster-secret")
	secret := fmt.Sprintf("chaos-secret-%d", time.Now().UnixNano())
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, events: cfg.Timeline, Secret: secret, hc: &http.Client{Timeout: 5 * time.Second}, Containerd: daemon, ctrd: client}
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", containerdtest.FreePort(t)) }
	var gossips []string
	for i := 1; i <= 3; i++ {
		n := &Node{Name: fmt.Sprintf("m%d", i), Master: true, HTTP: "http://" + port(), Gossip: port(), bin: cfg.Bin, log: &containerdtest.Buffer{}}
		gossips = append(gossips, n.Gossip)
		c.Masters = append(c.Masters, n)
	}
	for _, n := range c.Masters {
		if n.Name == cfg.SmallDisk {
			n.DataDir = filepath.Join(dir, n.Name)
			mountTmpfs(t, n.DataDir, "64m")
		}
		n.args = []string{"--log-level", "warn", "master", "--data-dir", filepath.Join(dir, n.Name), "--bind", port(), "--gossip", n.Gossip,
			"--http", strings.TrimPrefix(n.HTTP, "http://"), "--bootstrap-expect", "3", "--allocation-interval", "200ms",
			"--agent-reregister-timeout", "20s", "--cluster-secret-file", secretFile, "--chaos-faults"}
		for _, g := range gossips {
			if g != n.Gossip {
				n.args = append(n.args, "--join", g)
			}
		}
	}
	run := time.Now().UnixNano()
	for i := 1; i <= cfg.Agents; i++ {
		ns := fmt.Sprintf("agora-chaos-%d-a%d", run, i)
		containerdtest.ImportTestApp(t, client, ns)
		t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
		first := 30000 + 40*i // below the ephemeral ports, apart from the other tests' ranges
		n := &Node{Name: fmt.Sprintf("a%d", i), HTTP: "http://" + port(), Gossip: port(), NS: ns, bin: cfg.Bin, log: &containerdtest.Buffer{}}
		if n.Name == cfg.SmallDisk || cfg.SmallDisk == "agents" {
			n.DataDir = filepath.Join(dir, n.Name)
			mountTmpfs(t, n.DataDir, "64m")
		}
		n.args = []string{"--log-level", "warn", "agent", "--data-dir", filepath.Join(dir, n.Name), "--containerd", sock, "--containerd-namespace", ns,
			"--http", strings.TrimPrefix(n.HTTP, "http://"), "--gossip", n.Gossip, "--hostname", "chaos-" + n.Name,
			"--resources", fmt.Sprintf("cpus:2;mem:1024;disk:1000;ports:[%d-%d]", first, first+30), "--cluster-secret-file", secretFile, "--chaos-faults"}
		for _, g := range gossips {
			n.args = append(n.args, "--join", g)
		}
		c.Agents = append(c.Agents, n)
	}
	for _, n := range c.Nodes() {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("--- %s (%s) log:\n%s", n.Name, strings.Join(n.args, " "), tail(n.Log(), 4000))
			}
		}
		var wg sync.WaitGroup
		for _, n := range c.Nodes() {
			wg.Add(1)
			go func() { defer wg.Done(); n.Stop() }()
		}
		wg.Wait()
	})
	c.WaitReady(90 * time.Second)
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Nodes are the masters and the agents.
func (c *Cluster) Nodes() []*Node { return append(append([]*Node{}, c.Masters...), c.Agents...) }

// Event notes something that happened, for the timeline a failed scenario prints.
func (c *Cluster) Event(format string, args ...any) { c.events.Add(format, args...) }

// Violation records a breach of a scenario's own invariant, seen while it samples; the
// scenario's verdict (Workload.Check) fails with it.
func (c *Cluster) Violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.Event("VIOLATION %s", msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, msg)
}

// Leader is the leading master as the masters that answer agree, or nil.
func (c *Cluster) Leader() *Node {
	for _, m := range c.Masters {
		var v api.ClusterView
		// A short timeout: a paused master must not hold up the question.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.do(ctx, "GET", m.HTTP+"/v1/cluster", "", nil, &v)
		cancel()
		if err != nil || v.Leader == nil || v.Leader.HTTP == "" {
			continue
		}
		for _, l := range c.Masters {
			if l.HTTP == "http://"+v.Leader.HTTP {
				return l
			}
		}
	}
	return nil
}

// WaitReady waits until a leader is elected, answers for both frameworks, and sees every agent
// registered and active.
func (c *Cluster) WaitReady(d time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for deadline := start.Add(d); ; time.Sleep(100 * time.Millisecond) {
		if l := c.Leader(); l != nil {
			var agents []api.AgentView
			active := 0
			if c.get(l.HTTP+"/v1/agents", &agents) == nil {
				for _, a := range agents {
					if a.State == "active" {
						active++
					}
				}
			}
			if active == len(c.Agents) && c.get(l.HTTP+"/v2/apps", nil) == nil && c.get(l.HTTP+"/v1/jobs", nil) == nil {
				return time.Since(start)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster was not ready within %s", d)
		}
	}
}

// Do calls any master's API (trying each until one answers other than 5xx) and decodes a 2xx
// answer into out. It answers the status (0 when none answered).
func (c *Cluster) Do(method, path string, in, out any) (int, error) {
	var lastErr error
	for _, m := range c.Masters {
		code, err := c.call(method, m.HTTP+path, "", in, out)
		if err == nil || code >= 400 && code < 500 {
			return code, err
		}
		lastErr = err
	}
	return 0, lastErr
}

// Agent calls an agent's own API with the cluster secret.
func (c *Cluster) Agent(a *Node, path string, out any) error {
	_, err := c.call("GET", a.HTTP+path, c.Secret, nil, out)
	return err
}

func (c *Cluster) get(url string, out any) error {
	_, err := c.call("GET", url, "", nil, out)
	return err
}

func (c *Cluster) call(method, url, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.do(ctx, method, url, token, body, out)
}

func (c *Cluster) do(ctx context.Context, method, url, token string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return resp.StatusCode, nil
}

// Timeline is what happened during a scenario, in order, with times since its start.
type Timeline struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

// NewTimeline starts a timeline now.
func NewTimeline() *Timeline { return &Timeline{start: time.Now()} }

// Add notes an event.
func (tl *Timeline) Add(format string, args ...any) {
	if tl == nil {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.lines = append(tl.lines, fmt.Sprintf("%7.2fs  %s", time.Since(tl.start).Seconds(), fmt.Sprintf(format, args...)))
}

// String is the timeline, one event per line.
func (tl *Timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.lines, "\n")
}

// namespaced is a context for containerd calls in an agent's namespace.
func namespaced(t testing.TB, ns string) context.Context {
	return namespaces.WithNamespace(containerdtest.Context(t), ns)
}

// mountTmpfs mounts a tmpfs of size at dir until the test ends.
func mountTmpfs(t testing.TB, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount a %s tmpfs at %s (the full-disk scenario needs root): %v", size, dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// FillDisk writes a file into dir until its disk is full; EmptyDisk removes it.
func FillDisk(dir string) (int64, error) {
	f, err := os.Create(filepath.Join(dir, "chaos-filler"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n, nil // ENOSPC: full
		}
	}
}

// EmptyDisk removes what FillDisk wrote.
func EmptyDisk(dir string) error { return os.Remove(filepath.Join(dir, "chaos-filler")) }
