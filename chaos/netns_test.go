package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scenarios of real networks (network mode): packets dropped between the hosts' namespaces,
// one way or both, for some hosts or a share of all. On loopback they cannot run: they say so
// and are skipped, or fail where CI=true (CI runs as root, where network mode is possible).
func init() {
	scenarios = append(scenarios,
		// Invariant: a leader whose packets to the other masters are lost (it still hears them)
		// acknowledges no write sent after the cut, another master leads and commits, and every
		// write any master acknowledged survives.
		scenario{name: "oneway-leader-out", network: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			l := mustLeader(t, c)
			return isolateLeader(t, c, l, "packets from leader %s to the other masters dropped (it still hears them)", []*Node{l}, otherMasters(c, l))
		}},
		// Invariant: a leader that can send but not hear the other masters (the asymmetric split)
		// acknowledges no write sent after the cut, the others elect a leader that commits, and
		// every write any master acknowledged survives.
		scenario{name: "oneway-leader-in", short: true, network: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			l := mustLeader(t, c)
			return isolateLeader(t, c, l, "packets from the other masters to leader %s dropped (it can send, not hear)", otherMasters(c, l), []*Node{l})
		}},
		// Invariant: the leader and one agent cut off from the other two masters and two agents
		// (both ways): the minority acknowledges no write sent after the split, the majority
		// elects and commits, every acknowledged write survives. The split lasts 24 s, past the
		// new leader's --agent-reregister-timeout (20 s from its election): the minority's agent
		// comes back after it was declared unreachable, and its tasks must come back with it
		// (at 20 s it raced the timeout, and lost its tasks once in ~20 runs).
		scenario{name: "split-minority-leader", network: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			const splitFor = 24 * time.Second
			l := mustLeader(t, c)
			a := c.Agents[rng.IntN(len(c.Agents))]
			minority := []*Node{l, a}
			var majority []*Node
			for _, n := range c.Nodes() {
				if n != l && n != a {
					majority = append(majority, n)
				}
			}
			p := startProber(c)
			c.Event("split: leader %s and agent %s | %s, both ways, for %s", l.Name, a.Name, strings.Join(names(majority), " "), splitFor)
			healOut := mustCut(t, c, minority, majority)
			healIn := mustCut(t, c, majority, minority)
			split := time.Now()
			p.forbid(l, split, "the minority's master "+l.Name)
			rec := recovery(t, c, l)
			time.Sleep(time.Until(split.Add(splitFor)))
			c.Event("heal the split")
			p.heal()
			if err := healOut(); err != nil {
				t.Fatal(err)
			}
			if err := healIn(); err != nil {
				t.Fatal(err)
			}
			return append([]string{fmt.Sprintf("%s+%s split off %s, the majority committed after %.1fs", l.Name, a.Name, splitFor, rec.Seconds())}, p.finish(split, time.Now())...)
		}},
		// Invariant: with m1–m2 and m2–m3 up and m1–m3 down (the leader at one end), writes go on
		// (no 10 s without an acknowledged write) and every acknowledged write survives.
		scenario{name: "bridge-partition", network: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			l := mustLeader(t, c)
			others := otherMasters(c, l)
			end, bridge := others[0], others[1]
			p := startProber(c)
			c.Event("cut %s–%s both ways for 20s; %s bridges them", l.Name, end.Name, bridge.Name)
			healA := mustCut(t, c, []*Node{l}, []*Node{end})
			healB := mustCut(t, c, []*Node{end}, []*Node{l})
			from := time.Now()
			time.Sleep(20 * time.Second)
			c.Event("heal the cut")
			if err := healA(); err != nil {
				t.Fatal(err)
			}
			if err := healB(); err != nil {
				t.Fatal(err)
			}
			p.maxGap(10 * time.Second)
			after := mustLeader(t, c)
			return append([]string{fmt.Sprintf("%s–%s cut 20s through %s, leader %s before, %s after", l.Name, end.Name, bridge.Name, l.Name, after.Name)}, p.finish(from, time.Now())...)
		}},
		// Invariant: with 25 % of the packets between all hosts lost for 20 s, writes go on (no
		// 10 s without an acknowledged write), every acknowledged write survives, and no app runs
		// more instances than it wants.
		scenario{name: "lossy-network", network: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			p := startProber(c)
			c.Event("lose 25%% of the packets between all hosts for 20s")
			heal, err := c.Loss(c.Nodes(), c.Nodes(), 25)
			if err != nil {
				t.Fatal(err)
			}
			from := time.Now()
			time.Sleep(20 * time.Second)
			c.Event("heal the loss")
			if err := heal(); err != nil {
				t.Fatal(err)
			}
			p.maxGap(10 * time.Second)
			return append([]string{"25% loss between all hosts 20s"}, p.finish(from, time.Now())...)
		}},
		// Invariant: with every packet between the hosts delayed 60 ms ± 40 ms and 10 % of them
		// reordered (chaos/netem), writes go on (no 10 s without an acknowledged write), every
		// acknowledged write survives, no app runs more instances than it wants.
		scenario{name: "slow-network", network: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			p := startProber(c)
			c.Event("delay every packet between all hosts 60ms ± 40ms, reorder 10%%, for 20s")
			before := shaped.Load()
			heal, err := c.Shape(c.Nodes(), c.Nodes(), LinkShape{Delay: 60 * time.Millisecond, Jitter: 40 * time.Millisecond, Reorder: 0.1})
			if err != nil {
				t.Fatal(err)
			}
			from := time.Now()
			time.Sleep(20 * time.Second)
			c.Event("heal the delay")
			if err := heal(); err != nil {
				t.Fatal(err)
			}
			p.maxGap(10 * time.Second)
			n := shaped.Load() - before
			if n == 0 {
				t.Error("chaos/netem shaped no packet between the hosts")
			}
			return append([]string{fmt.Sprintf("60ms ± 40ms delay, 10%% reordered, between all hosts 20s (%d packets shaped)", n)}, p.finish(from, time.Now())...)
		}},
	)
}

// requireNetwork ends a scenario that needs network mode where the run is on loopback: a skip,
// or a failure where CI=true.
func requireNetwork(t *testing.T) {
	t.Helper()
	ok, why := NetworkMode()
	if ok {
		return
	}
	msg := "needs network mode (packets dropped between network namespaces), and this run is in loopback mode: " + why
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func otherMasters(c *Cluster, n *Node) []*Node {
	var out []*Node
	for _, m := range c.Masters {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

func mustCut(t *testing.T, c *Cluster, from, to []*Node) func() error {
	t.Helper()
	heal, err := c.Cut(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return heal
}

// isolateLeader drops the packets from to to for 15 s and checks that the leader l
// acknowledges nothing sent meanwhile while another master takes over.
func isolateLeader(t *testing.T, c *Cluster, l *Node, what string, from, to []*Node) []string {
	p := startProber(c)
	c.Event(what+" for 15s", l.Name)
	heal := mustCut(t, c, from, to)
	cut := time.Now()
	p.forbid(l, cut, "the cut-off leader "+l.Name)
	rec := recovery(t, c, l)
	time.Sleep(time.Until(cut.Add(15 * time.Second)))
	c.Event("heal %s", l.Name)
	p.heal()
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	return append([]string{fmt.Sprintf("recovery %.1fs", rec.Seconds())}, p.finish(cut, time.Now())...)
}

// prober writes a secret of its own through each master, asked directly, four times a second,
// and keeps what each acknowledged and when it was sent. A master it is told to distrust
// (forbid) must acknowledge nothing sent after a time: each such answer is a violation at once.
// Every acknowledged probe must be present once the cluster healed (Workload.Check).
type prober struct {
	c    *Cluster
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	sent    map[string]int // by master
	acked   map[string]int // by master
	names   []string       // acknowledged
	ackedAt []time.Time
	bad     *Node
	badFrom time.Time
	healed  bool // the fault is over: bad may acknowledge again
	badWhat string
	gap     time.Duration // the longest allowed without an acknowledgement (0: any)
}

func startProber(c *Cluster) *prober {
	p := &prober{c: c, stop: make(chan struct{}), sent: map[string]int{}, acked: map[string]int{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			for _, m := range c.Masters {
				p.wg.Add(1)
				go func() { defer p.wg.Done(); p.write(m, fmt.Sprintf("p-%s-%05d", m.Name, i)) }()
			}
		}
	}()
	return p
}

func (p *prober) write(m *Node, name string) {
	sent := time.Now()
	p.mu.Lock()
	p.sent[m.Name]++
	p.mu.Unlock()
	_, err := p.c.call("PUT", m.HTTP+"/v1/secrets/"+name, "", map[string]string{"value": name}, nil)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.acked[m.Name]++
	p.names = append(p.names, name)
	p.ackedAt = append(p.ackedAt, time.Now())
	if m == p.bad && sent.After(p.badFrom) && !p.healed {
		p.c.Violate("%s acknowledged write %s sent %.1fs after it was cut off", p.badWhat, name, sent.Sub(p.badFrom).Seconds())
	}
}

// forbid: m must acknowledge no write sent after from.
func (p *prober) forbid(m *Node, from time.Time, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bad, p.badFrom, p.badWhat = m, from, what
}

// heal ends what forbid forbade: call it just before healing the fault.
func (p *prober) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.healed = true
}

// maxGap: between the fault's start and its end, acknowledgements may pause for d at most.
func (p *prober) maxGap(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gap = d
}

// finish probes on for 5 s after the healing, stops, checks the longest pause of
// acknowledgements between from and to, has Workload.Check look for every acknowledged probe,
// and answers the figures.
func (p *prober) finish(from, to time.Time) []string {
	time.Sleep(5 * time.Second)
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	at := append([]time.Time{from}, p.ackedAt...)
	at = append(at, to)
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	var longest time.Duration
	prev := from
	for _, t := range at {
		if t.Before(from) || t.After(to) {
			continue
		}
		longest = max(longest, t.Sub(prev))
		prev = t
	}
	if p.gap > 0 && longest > p.gap {
		p.c.Violate("no write acknowledged for %.1fs during the fault (at most %s allowed)", longest.Seconds(), p.gap)
	}
	names := append([]string(nil), p.names...)
	p.c.Expect("every probe write a master acknowledged is present", func() (bool, string) {
		var list struct {
			Secrets []string `json:"secrets"`
		}
		if _, err := p.c.Do("GET", "/v1/secrets", nil, &list); err != nil {
			return false, err.Error()
		}
		have := map[string]bool{}
		for _, s := range list.Secrets {
			have[s] = true
		}
		for _, n := range names {
			if !have[n] {
				return false, "lost " + n
			}
		}
		return true, ""
	})
	var per []string
	for _, m := range p.c.Masters {
		per = append(per, fmt.Sprintf("%s %d/%d", m.Name, p.acked[m.Name], p.sent[m.Name]))
	}
	return []string{"probe writes acknowledged " + strings.Join(per, " "), fmt.Sprintf("longest without an acknowledged write %.1fs", longest.Seconds())}
}
