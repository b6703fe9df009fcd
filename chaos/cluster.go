package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
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

// ClockOffset is the master's clock minus the host's, from GET /v1/cluster/self, to within the
// round trip.
func (c *Cluster) ClockOffset(n *Node) (time.Duration, error) {
	var self api.SelfInfo
	sent := time.Now()
	if err := c.get(n.HTTP+"/v1/cluster/self", &self); err != nil {
		return 0, err
	}
	mid := sent.Add(time.Since(sent) / 2)
	return time.Unix(0, self.TimeUnixNano).Sub(mid), nil
}

// Cluster is 3 masters and some agents, each agent with its own containerd namespace and host
// port range, all of them processes of the agora binary, each in a network namespace of its own
// (network mode, see netns.go) or all on loopback.
type Cluster struct {
	Masters []*Node
	Agents  []*Node
	Secret  string // the cluster secret the agents' APIs ask for
	// Containerd is the cluster's own containerd (Config.PrivateContainerd), which a scenario
	// may kill and start again; nil when the agents use the shared one.
	Containerd *containerdtest.Daemon
	ctrd       *containerd.Client // the agents' containerd, for the harness's own looks
	// Ready is how long the cluster took to start: from the first namespace made (network
	// mode) or the first process started, until WaitReady saw it ready.
	Ready  time.Duration
	t      testing.TB
	events *Timeline
	hc     *http.Client
	net    *network // nil on loopback

	mu         sync.Mutex
	expects    []expectation // a scenario's own invariants, for Workload.Check
	violations []string      // a scenario's own invariants seen broken while sampling
}

type expectation struct {
	what string
	ok   func() (bool, string)
}

// Expect adds a scenario's own invariant to those Workload.Check verifies on the healed
// cluster: ok is asked until it holds, or the settle time is over (it then says why not).
func (c *Cluster) Expect(what string, ok func() (bool, string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expects = append(c.expects, expectation{what, ok})
}

// Violate records an invariant a scenario saw broken while it sampled: Workload.Check fails
// with it.
func (c *Cluster) Violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.Event("VIOLATION %s", msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, msg)
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
	// Loopback runs the cluster on loopback even where network mode is possible (NetworkMode).
	Loopback bool
	// PrivateContainerd gives the cluster a containerd of its own (Cluster.Containerd, needs
	// root): the agents and the harness use its socket, and the test image is imported into
	// each agent's namespace there. A scenario may kill it; the shared one it must never.
	PrivateContainerd bool
	// MarathonRole starts the masters with --marathon-role: the service framework's role,
	// which resident apps (persistent volumes) need.
	MarathonRole string
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
	began := time.Now()
	mode := "loopback"
	if ok, _ := NetworkMode(); ok && !cfg.Loopback {
		c.net = newNetwork(t, 3, cfg.Agents)
		c.hc.Transport = &http.Transport{DialContext: c.net.DialContext, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
		mode = fmt.Sprintf("network namespaces %s-*, built in %.2fs", c.net.prefix, time.Since(began).Seconds())
		c.Event("network mode: %s", mode)
	} else if ForcedNetns() {
		_, why := NetworkMode()
		t.Fatalf("%s=netns, but network mode is not possible here: %s", NetEnv, why)
	}
	// port is a free port on loopback; in network mode, every node has its own address and the
	// same ports.
	port := func(name string, p int) string {
		if c.net == nil {
			return fmt.Sprintf("127.0.0.1:%d", containerdtest.FreePort(t))
		}
		return netip.AddrPortFrom(c.net.hosts[name], uint16(p)).String()
	}
	gossips := c.addMasters(cfg, dir, secretFile, port)
	c.addAgents(cfg, dir, sock, client, secretFile, gossips, port)
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
		if d := os.Getenv(LogDirEnv); d != "" {
			keepLogs(t, c, filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")))
		}
		var wg sync.WaitGroup
		for _, n := range c.Nodes() {
			wg.Add(1)
			go func() { defer wg.Done(); n.Stop() }()
		}
		wg.Wait()
	})
	c.WaitReady(90 * time.Second)
	c.Ready = time.Since(began)
	fmt.Printf("chaos: cluster of %d masters and %d agents ready in %.1fs (%s)\n", len(c.Masters), len(c.Agents), c.Ready.Seconds(), mode)
	return c
}

// addMasters makes the cluster's three masters (not started): each joins the others' gossip
// and expects three to bootstrap. It answers their gossip addresses.
func (c *Cluster) addMasters(cfg Config, dir, secretFile string, port func(name string, p int) string) []string {
	t := c.t
	var gossips []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("m%d", i)
		n := &Node{Name: name, Master: true, HTTP: "http://" + port(name, 8080), Gossip: port(name, 5051), bin: cfg.Bin, log: &containerdtest.Buffer{}, net: c.net}
		if c.net != nil {
			n.Addr = c.net.hosts[name]
		}
		gossips = append(gossips, n.Gossip)
		c.Masters = append(c.Masters, n)
	}
	for _, n := range c.Masters {
		if n.Name == cfg.SmallDisk {
			n.DataDir = filepath.Join(dir, n.Name)
			mountTmpfs(t, n.DataDir, "64m")
		}
		n.clockFile = filepath.Join(dir, n.Name+".clock-offset")
		n.args = []string{"--log-level", logLevel(), "master", "--data-dir", filepath.Join(dir, n.Name), "--bind", port(n.Name, 5050), "--gossip", n.Gossip,
			"--http", strings.TrimPrefix(n.HTTP, "http://"), "--bootstrap-expect", "3", "--allocation-interval", "200ms",
			"--agent-reregister-timeout", "20s", "--cluster-secret-file", secretFile, "--chaos-faults", "--chaos-clock-file", n.clockFile}
		if c.net != nil {
			// The API listens on an address that exists only in the cluster's namespaces.
			n.args = append(n.args, "--insecure-open-api")
		}
		if cfg.MarathonRole != "" {
			n.args = append(n.args, "--marathon-role", cfg.MarathonRole)
		}
		for _, g := range gossips {
			if g != n.Gossip {
				n.args = append(n.args, "--join", g)
			}
		}
	}
	return gossips
}

// addAgents makes the cluster's agents (not started), each in a containerd namespace of its
// own holding the test image, with a port range apart from the other agents' and tests'.
func (c *Cluster) addAgents(cfg Config, dir, sock string, client *containerd.Client, secretFile string, gossips []string, port func(name string, p int) string) {
	t := c.t
	run := time.Now().UnixNano()
	for i := 1; i <= cfg.Agents; i++ {
		ns := fmt.Sprintf("agora-chaos-%d-a%d", run, i)
		containerdtest.ImportTestApp(t, client, ns)
		t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
		// After the agents stopped (a cleanup registered later runs first): the persistent
		// volumes a scenario left are unmounted, their loop devices freed, so the dir can go.
		agentVols := filepath.Join(dir, fmt.Sprintf("a%d", i), "volumes")
		t.Cleanup(func() { releaseVolumes(t, agentVols) })
		first := 30000 + 40*i // below the ephemeral ports, apart from the other tests' ranges
		name := fmt.Sprintf("a%d", i)
		n := &Node{Name: name, HTTP: "http://" + port(name, 5151), Gossip: port(name, 5152), NS: ns, bin: cfg.Bin, log: &containerdtest.Buffer{}, net: c.net}
		if n.Name == cfg.SmallDisk || cfg.SmallDisk == "agents" {
			n.DataDir = filepath.Join(dir, n.Name)
			mountTmpfs(t, n.DataDir, "64m")
		}
		n.args = []string{"--log-level", logLevel(), "agent", "--data-dir", filepath.Join(dir, n.Name), "--containerd", sock, "--containerd-namespace", ns,
			"--http", strings.TrimPrefix(n.HTTP, "http://"), "--gossip", n.Gossip, "--hostname", "chaos-" + n.Name,
			"--resources", fmt.Sprintf("cpus:2;mem:1024;disk:1000;ports:[%d-%d]", first, first+30), "--cluster-secret-file", secretFile, "--chaos-faults"}
		if c.net != nil {
			// Its tasks listen in its namespace, at its address, where its health checks look.
			n.Addr = c.net.hosts[name]
			n.args = append(n.args, "--task-netns", c.net.path(name))
		}
		for _, g := range gossips {
			n.args = append(n.args, "--join", g)
		}
		c.Agents = append(c.Agents, n)
	}
}

// Network says whether the cluster runs in network namespaces (network mode), where Cut, Loss
// and Shape work, rather than on loopback.
func (c *Cluster) Network() bool { return c.net != nil }

// Cut drops every packet from each node of from to each node of to, on the way between them
// (a one-way partition: the other way still passes, unless cut too), until heal is called.
// Network mode only.
func (c *Cluster) Cut(from, to []*Node) (heal func() error, err error) {
	return c.Loss(from, to, 100)
}

// Loss drops percent % of the packets from each node of from to each node of to, at random,
// until heal is called. Network mode only.
func (c *Cluster) Loss(from, to []*Node, percent int) (heal func() error, err error) {
	if c.net == nil {
		return nil, errors.New("chaos: packet drops need network mode (loopback has no network to drop packets on)")
	}
	return c.net.drop(names(from), names(to), percent)
}

// Shape makes the links from each node of from to each node of to behave as s: Loss drops
// packets (as Loss does), Delay, Jitter and Reorder delay and reorder them (chaos/netem, see
// shapeLatency), until heal is called. Network mode only.
func (c *Cluster) Shape(from, to []*Node, s LinkShape) (heal func() error, err error) {
	if c.net == nil {
		return nil, errors.New("chaos: link shapes need network mode")
	}
	var heals []func() error
	undo := func() error {
		var errs []error
		for _, h := range heals {
			errs = append(errs, h())
		}
		return errors.Join(errs...)
	}
	if s.Loss > 0 {
		h, err := c.Loss(from, to, int(s.Loss*100+0.5))
		if err != nil {
			return nil, err
		}
		heals = append(heals, h)
	}
	if s.Delay > 0 || s.Jitter > 0 || s.Reorder > 0 {
		var dsts []netip.Prefix
		for _, n := range to {
			dsts = append(dsts, netip.PrefixFrom(n.Addr, 32))
		}
		latency := s
		latency.Loss = 0 // dropped on the bridge already
		for _, f := range from {
			h, err := shapeLatency(c.net.ns(f.Name), dsts, latency)
			if err != nil {
				undo()
				return nil, err
			}
			heals = append(heals, h)
		}
	}
	return undo, nil
}

func names(nodes []*Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Name)
	}
	return out
}

// Nodes are the masters and the agents.
func (c *Cluster) Nodes() []*Node { return append(append([]*Node{}, c.Masters...), c.Agents...) }

// Event notes something that happened, for the timeline a failed scenario prints.
func (c *Cluster) Event(format string, args ...any) { c.events.Add(format, args...) }

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

// MoveLeader makes master to lead: it asks the leader to hand leadership to it by name (DELETE
// /v2/leader?to=ID) until it leads, for up to 30 s. It answers the master that led before it
// asked (to itself when it led already).
func (c *Cluster) MoveLeader(to *Node) (*Node, error) {
	var self api.ClusterView
	if err := c.get(to.HTTP+"/v1/cluster", &self); err != nil {
		return nil, fmt.Errorf("%s's id: %w", to.Name, err)
	}
	var first *Node
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		l := c.Leader()
		if first == nil {
			first = l
		}
		if l == to {
			c.Event("%s leads", to.Name)
			return first, nil
		}
		if l == nil {
			continue
		}
		c.Event("ask leader %s to hand leadership to %s", l.Name, to.Name)
		_, lastErr = c.call("DELETE", l.HTTP+"/v2/leader?to="+self.Self.ID, "", nil, nil)
	}
	return first, fmt.Errorf("%s did not come to lead within 30s (last answer: %v)", to.Name, lastErr)
}

// LogLevelEnv names the environment variable that sets the nodes' --log-level (warn when
// unset): AGORA_CHAOS_LOG_LEVEL=debug keeps what a failing scenario's timeline needs.
const LogLevelEnv = "AGORA_CHAOS_LOG_LEVEL"

// LogDirEnv names the environment variable of a directory where every node's whole log is
// kept, passing or failing (a folder per test, a file per node): for a scenario that fails
// once in many runs, the runs that pass show how close they came.
const LogDirEnv = "AGORA_CHAOS_LOG_DIR"

func keepLogs(t testing.TB, c *Cluster, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("chaos: keep logs: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "timeline.txt"), []byte(c.events.String()), 0o644); err != nil {
		t.Logf("chaos: keep logs: %v", err)
	}
	for _, n := range c.Nodes() {
		if err := os.WriteFile(filepath.Join(dir, n.Name+".log"), []byte(n.Log()), 0o644); err != nil {
			t.Logf("chaos: keep logs: %v", err)
		}
	}
}

func logLevel() string {
	if v := os.Getenv(LogLevelEnv); v != "" {
		return v
	}
	return "warn"
}

// releaseVolumes unmounts the persistent volumes an agent left under dir (its data dir's
// volumes/<id>/root, each a loop-mounted image whose loop device goes with the mount), so that
// the test's temporary dir can be removed. The agent's own package does the same for its tests;
// the harness does not import the agent (pkg/layout).
func releaseVolumes(t testing.TB, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // none made
	}
	for _, e := range entries {
		root := filepath.Join(dir, e.Name(), "root")
		if err := syscall.Unmount(root, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("unmount the volume at %s: %v", root, err)
		}
	}
}
