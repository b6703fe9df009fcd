package chaos

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

var (
	all  = flag.Bool("chaos.all", false, "run every scenario (make chaos); without it, the short set make test runs")
	seed = flag.Uint64("chaos.seed", 1, "seed of the scenarios' random choices")
	long = flag.Duration("chaos.long", 0, "run randomized faults for this long (make chaos-long)")
)

// bin is the agora binary the clusters run, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "agora-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "agora")
	build := exec.Command("go", "build", "-o", bin, "github.com/agora-sched/agora/cmd/agora")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: build agora:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// scenario is one way of breaking the cluster. fault breaks it (and heals it) while the
// workload runs; it answers the figures it measured.
type scenario struct {
	name  string
	short bool // in make test's short set
	fault func(t *testing.T, c *Cluster, rng *rand.Rand) []string
	// smallDisk puts this master's data dir on a small disk of its own (Config.SmallDisk).
	smallDisk string
	// network: the scenario drops packets between hosts, which needs network mode (netns_test.go).
	network bool
	// privateContainerd gives the cluster a containerd of its own (Config.PrivateContainerd).
	privateContainerd bool
	// marathonRole starts the masters with --marathon-role (Config.MarathonRole).
	marathonRole string
}

var scenarios = []scenario{
	{name: "kill-leader", short: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		rec := killLeader(t, c)
		return []string{fmt.Sprintf("recovery %.1fs", rec.Seconds())}
	}},
	{name: "kill-agent", short: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		a := c.Agents[rng.IntN(len(c.Agents))]
		c.Event("kill -9 agent %s", a.Name)
		if err := a.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		restart(t, c, a)
		return []string{"agent " + a.Name + " down 3s"}
	}},
	{name: "partition-agent", short: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		a, victim := busiestAgent(t, c, rng)
		c.Event("cut agent %s off the masters for 45s (past memberlist's 30 s of gossip to the dead)", a.Name)
		if err := a.CutOff(true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		// An update born during the partition: the agent must keep it until a master takes it.
		c.Event("kill task %s on %s behind its back", victim, a.Name)
		if err := c.KillTask(a, victim); err != nil {
			t.Fatal(err)
		}
		time.Sleep(42 * time.Second)
		c.Event("heal %s", a.Name)
		a.CutOff(false)
		healed := time.Now()
		for {
			var st api.TaskStatus
			code, err := c.call("GET", c.Masters[rng.IntN(len(c.Masters))].HTTP+"/v1/tasks/"+victim, "", nil, &st)
			if code == http.StatusNotFound || err == nil && st.State.IsTerminal() {
				c.Event("the masters know %s ended (%s)", victim, st.State)
				break
			}
			if time.Since(healed) > 60*time.Second {
				t.Errorf("60 s after the healing the masters still say %s is %s, not ended", victim, st.State)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		return []string{fmt.Sprintf("agent %s cut off 45s, a task killed meanwhile reached the masters %.1fs after healing", a.Name, time.Since(healed).Seconds())}
	}},
	{name: "kill-follower", short: false, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		l := mustLeader(t, c)
		var f *Node
		for _, m := range c.Masters {
			if m != l {
				f = m
			}
		}
		c.Event("kill -9 follower %s", f.Name)
		if err := f.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		restart(t, c, f)
		return []string{"follower " + f.Name + " down 5s"}
	}},
	{name: "pause-leader", short: false, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		l := mustLeader(t, c)
		c.Event("SIGSTOP leader %s for 12s", l.Name)
		if err := l.Pause(); err != nil {
			t.Fatal(err)
		}
		rec := recovery(t, c, l)
		time.Sleep(time.Until(time.Now().Add(12*time.Second - rec)))
		c.Event("SIGCONT %s", l.Name)
		l.Resume()
		return []string{fmt.Sprintf("recovery %.1fs", rec.Seconds())}
	}},
	{name: "partition-leader", short: false, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		l := mustLeader(t, c)
		c.Event("cut leader %s off the other nodes for 15s", l.Name)
		if err := l.CutOff(true); err != nil {
			t.Fatal(err)
		}
		rec := recovery(t, c, l)
		time.Sleep(time.Until(time.Now().Add(15*time.Second - rec)))
		c.Event("heal %s", l.Name)
		l.CutOff(false)
		return []string{fmt.Sprintf("recovery %.1fs", rec.Seconds())}
	}},
	{name: "partition-follower", short: false, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		l := mustLeader(t, c)
		var f *Node
		for _, m := range c.Masters {
			if m != l {
				f = m
			}
		}
		c.Event("cut follower %s off the other nodes for 40s (past memberlist's 30 s of gossip to the dead)", f.Name)
		if err := f.CutOff(true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(40 * time.Second)
		c.Event("heal %s", f.Name)
		f.CutOff(false)
		return []string{"follower " + f.Name + " cut off 40s"}
	}},
	{name: "pause-agent", short: false, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		a := c.Agents[rng.IntN(len(c.Agents))]
		c.Event("SIGSTOP agent %s for 15s (past gossip's failure detection)", a.Name)
		if err := a.Pause(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Second)
		c.Event("SIGCONT %s", a.Name)
		a.Resume()
		return []string{"agent " + a.Name + " paused 15s"}
	}},
	{name: "disk-full-follower", smallDisk: "m3", fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		m := c.Masters[2]
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
			l := mustLeader(t, c)
			if l != m {
				break
			}
			c.call("DELETE", l.HTTP+"/v2/leader", "", nil, nil) // a follower's disk is the point
		}
		n, err := FillDisk(m.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		c.Event("filled %s's disk (%d MiB) for 15s", m.Name, n>>20)
		time.Sleep(15 * time.Second)
		EmptyDisk(m.DataDir)
		c.Event("emptied %s's disk", m.Name)
		return []string{fmt.Sprintf("%s's disk full 15s", m.Name)}
	}},
	{name: "disk-full-leader", smallDisk: "m1", fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		m := c.Masters[0]
		was, err := c.MoveLeader(m)
		if err != nil {
			t.Fatal(err)
		}
		led := c.Leader() == m
		n, err := FillDisk(m.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		if !led {
			t.Fatalf("%s did not lead when its disk was filled: the scenario tested a follower", m.Name)
		}
		c.Event("filled leader %s's disk (%d MiB) for 15s", m.Name, n>>20)
		time.Sleep(15 * time.Second)
		EmptyDisk(m.DataDir)
		c.Event("emptied %s's disk", m.Name)
		return []string{fmt.Sprintf("leader %s's disk full 15s (%s led when filled: %t; %s led before)", m.Name, m.Name, led, was.Name)}
	}},
	{name: "disk-full-agent", smallDisk: "agents", fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		a, victim := busiestAgent(t, c, rng)
		n, err := FillDisk(a.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		c.Event("filled agent %s's disk (%d MiB) for 15s", a.Name, n>>20)
		// Its update must be kept on the full disk, or held until it can be.
		c.Event("kill task %s on %s behind its back", victim, a.Name)
		if err := c.KillTask(a, victim); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Second)
		EmptyDisk(a.DataDir)
		c.Event("emptied %s's disk", a.Name)
		return []string{fmt.Sprintf("agent %s's disk full 15s with a task killed meanwhile", a.Name)}
	}},
	{name: "restart-everything", short: false, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
		c.Event("kill -9 every process")
		for _, n := range c.Nodes() {
			n.Kill()
		}
		start := time.Now()
		for _, n := range c.Nodes() {
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
		}
		c.WaitReady(120 * time.Second)
		c.Event("everything back")
		return []string{fmt.Sprintf("cluster back in %.1fs", time.Since(start).Seconds())}
	}},
}

// busiestAgent is the agent that runs the most instances of the workload's apps, and one of
// them, picked at random.
func busiestAgent(t *testing.T, c *Cluster, rng *rand.Rand) (*Node, string) {
	t.Helper()
	var a *Node
	var running []string
	for _, n := range c.Agents {
		var tasks []api.Task
		if c.Agent(n, "/v1/tasks", &tasks) != nil {
			continue
		}
		var here []string
		for _, tk := range tasks {
			if tk.Status.State == task.Running && strings.HasPrefix(tk.Info.TaskID, "chaos_web-") {
				here = append(here, tk.Info.TaskID)
			}
		}
		if len(here) > len(running) {
			a, running = n, here
		}
	}
	if a == nil {
		t.Fatal("no agent runs an instance of the workload")
	}
	return a, running[rng.IntN(len(running))]
}

func mustLeader(t *testing.T, c *Cluster) *Node {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l := c.Leader(); l != nil {
			return l
		}
	}
	t.Fatal("no leader")
	return nil
}

// killLeader kills the leading master with -9, waits for another to lead and commit a write,
// starts the killed one again and answers how long the recovery took.
func killLeader(t *testing.T, c *Cluster) time.Duration {
	t.Helper()
	l := mustLeader(t, c)
	c.Event("kill -9 leader %s", l.Name)
	if err := l.Kill(); err != nil {
		t.Fatal(err)
	}
	rec := recovery(t, c, l)
	restart(t, c, l)
	return rec
}

// recovery is how long until another master than gone leads and commits a write.
func recovery(t *testing.T, c *Cluster, gone *Node) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		l := c.Leader()
		if l == nil || l == gone {
			continue
		}
		if _, err := c.call("PUT", l.HTTP+"/v1/secrets/recovery-probe", "", map[string]string{"value": "x"}, nil); err == nil {
			c.Event("new leader %s committed a write", l.Name)
			return time.Since(start)
		}
	}
	t.Fatal("no new leader committed a write within 60s")
	return 0
}

func restart(t *testing.T, c *Cluster, n *Node) {
	t.Helper()
	c.Event("restart %s", n.Name)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
}

// run is one scenario on a fresh cluster: workload, fault, heal, checks, verdict.
func run(t *testing.T, s scenario, rng *rand.Rand) {
	if s.network {
		requireNetwork(t)
	}
	tl := NewTimeline()
	c := StartCluster(t, Config{Bin: bin, Timeline: tl, SmallDisk: s.smallDisk, PrivateContainerd: s.privateContainerd, MarathonRole: s.marathonRole})
	w := StartWorkload(t, c, 3)
	c.Event("waiting for the workload to settle")
	time.Sleep(8 * time.Second)
	figures := s.fault(t, c, rng)
	time.Sleep(5 * time.Second) // the workload goes on after the healing
	v := &Verdict{Scenario: s.name, Figures: figures}
	if t.Failed() {
		v.fail("the scenario's own checks failed (errors above)")
	}
	w.Check(t, v, 120*time.Second)
	fmt.Println(v.Line()) // make chaos shows these lines
	if len(v.Failures) > 0 {
		t.Errorf("%s\ntimeline:\n%s", v.Line(), tl.String())
	}
}

// TestScenarios runs the short set (make test) or, with -chaos.all, every scenario (make
// chaos), each on its own cluster, in order, with the seed's choices; with -chaos.long (make
// chaos-long), scenarios picked at random, one after another, for that long.
func TestScenarios(t *testing.T) {
	rng := rand.New(rand.NewPCG(*seed, *seed))
	if *long > 0 {
		end := time.Now().Add(*long)
		for round := 1; time.Now().Before(end); round++ {
			s := scenarios[rng.IntN(len(scenarios))]
			t.Run(fmt.Sprintf("%03d-%s", round, s.name), func(t *testing.T) { run(t, s, rng) })
		}
		return
	}
	for _, s := range scenarios {
		if !s.short && !*all {
			continue
		}
		t.Run(s.name, func(t *testing.T) { run(t, s, rng) })
	}
}
