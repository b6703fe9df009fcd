package allocator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func res(cpus, mem float64) resources.Resources { return resources.Resources{CPUs: cpus, Mem: mem} }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOffersAllOfAnAgentOnceUntilRecovered(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddAgent("a2", res(2, 2048)))
	must(t, a.AddFramework("f1", "web"))
	offers := a.Cycle(t0)
	if len(offers) != 2 {
		t.Fatalf("offers %+v, want both agents", offers)
	}
	for _, o := range offers {
		if o.FrameworkID != "f1" || !o.Resources.Equal(a.agents[o.AgentID].total) {
			t.Fatalf("offer %+v, want all of %s", o, o.AgentID)
		}
	}
	if again := a.Cycle(t0); len(again) != 0 {
		t.Fatalf("offered twice: %+v", again)
	}
	// Accept 1 cpu of a1, decline the rest for 10 s.
	must(t, a.Recover("f1", "a1", res(3, 3072), 10*time.Second, t0))
	if got := a.Cycle(t0.Add(9 * time.Second)); len(got) != 0 {
		t.Fatalf("offered within the refuse time: %+v", got)
	}
	got := a.Cycle(t0.Add(10 * time.Second))
	if len(got) != 1 || got[0].AgentID != "a1" || !got[0].Resources.Equal(res(3, 3072)) {
		t.Fatalf("after the refuse time: %+v", got)
	}
}

func TestSuppressAndRevive(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("f1", "web"))
	must(t, a.Suppress("f1"))
	if got := a.Cycle(t0); len(got) != 0 {
		t.Fatalf("a suppressed framework got %+v", got)
	}
	must(t, a.Revive("f1"))
	got := a.Cycle(t0)
	if len(got) != 1 {
		t.Fatalf("revived: %+v", got)
	}
	must(t, a.Recover("f1", "a1", got[0].Resources, time.Hour, t0))
	must(t, a.Revive("f1")) // clears the filter
	if got := a.Cycle(t0); len(got) != 1 {
		t.Fatalf("revive did not clear the filter: %+v", got)
	}
}

func TestInactiveFrameworksAreNotOffered(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("f1", "web"))
	must(t, a.DeactivateFramework("f1"))
	must(t, a.Revive("f1")) // a revive while disconnected does not bring offers
	if got := a.Cycle(t0); len(got) != 0 {
		t.Fatalf("a disconnected framework was offered: %+v", got)
	}
	must(t, a.ActivateFramework("f1"))
	if got := a.Cycle(t0); len(got) != 1 || !a.Allocated("f1").Equal(res(4, 4096)) {
		t.Fatalf("reconnected: %+v, allocated %s", got, a.Allocated("f1"))
	}
}

func TestInactiveAgentsAreNotOffered(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("f1", "web"))
	must(t, a.DeactivateAgent("a1"))
	if got := a.Cycle(t0); len(got) != 0 {
		t.Fatalf("an inactive agent was offered: %+v", got)
	}
	must(t, a.ActivateAgent("a1"))
	if got := a.Cycle(t0); len(got) != 1 {
		t.Fatalf("reactivated: %+v", got)
	}
}

func TestBadEventsAreRefused(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("f1", "web"))
	for name, err := range map[string]error{
		"agent twice":         a.AddAgent("a1", res(1, 1)),
		"framework twice":     a.AddFramework("f1", "web"),
		"unknown agent":       a.Recover("f1", "nope", res(1, 1), 0, t0),
		"unknown framework":   a.Suppress("nope"),
		"recover what is not": a.Recover("f1", "a1", res(1, 1), 0, t0),
		"allocate too much":   a.Allocate("f1", "a1", res(5, 1)),
		"weight zero":         a.SetWeight("web", 0),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// simulate runs frameworks that launch tasks of a fixed shape into every offer until the cluster
// is full, and returns each framework's dominant share.
func simulate(t *testing.T, a *Allocator, shapes map[string]resources.Resources) map[string]float64 {
	t.Helper()
	now := t0
	for round := 0; round < 10000; round++ {
		offers := a.Cycle(now)
		if len(offers) == 0 {
			break
		}
		for _, o := range offers {
			shape := shapes[o.FrameworkID]
			used := resources.Resources{}
			for {
				next := used.Add(shape)
				if !o.Resources.Contains(next) {
					break
				}
				used = next
			}
			rest, err := o.Resources.Subtract(used)
			must(t, err)
			// What it cannot use it declines for a long time: the agent is full for it.
			must(t, a.Recover(o.FrameworkID, o.AgentID, rest, time.Hour, now))
		}
		now = now.Add(time.Second)
	}
	out := map[string]float64{}
	for id := range shapes {
		out[id] = a.Share(id)
	}
	return out
}

func addAgents(t *testing.T, a *Allocator, n int, r resources.Resources) {
	for i := range n {
		must(t, a.AddAgent(fmt.Sprintf("agent-%04d", i), r))
	}
}

// TestEqualWeightsGiveEqualDominantShares: a cpu-heavy and a mem-heavy framework of two roles of
// equal weight end with dominant shares within 5% of each other.
func TestEqualWeightsGiveEqualDominantShares(t *testing.T) {
	a := New(Config{Seed: 7})
	addAgents(t, a, 200, res(8, 16384))
	must(t, a.AddFramework("cpu-heavy", "analytics"))
	must(t, a.AddFramework("mem-heavy", "cache"))
	s := simulate(t, a, map[string]resources.Resources{"cpu-heavy": res(1, 512), "mem-heavy": res(0.25, 2048)})
	if d := math.Abs(s["cpu-heavy"]-s["mem-heavy"]) / math.Max(s["cpu-heavy"], s["mem-heavy"]); d > 0.05 {
		t.Fatalf("shares %v differ by %.1f%%", s, d*100)
	}
	if s["cpu-heavy"] < 0.4 {
		t.Fatalf("shares %v: the cluster was not used", s)
	}
}

// TestWeightsTwoToOne: a role of weight 2 ends with twice the dominant share of one of weight 1.
func TestWeightsTwoToOne(t *testing.T) {
	a := New(Config{Seed: 7})
	addAgents(t, a, 300, res(8, 16384))
	must(t, a.SetWeight("gold", 2))
	must(t, a.AddFramework("heavy", "gold"))
	must(t, a.AddFramework("light", "bronze"))
	s := simulate(t, a, map[string]resources.Resources{"heavy": res(1, 1024), "light": res(1, 1024)})
	if ratio := s["heavy"] / s["light"]; math.Abs(ratio-2) > 0.1 {
		t.Fatalf("shares %v: ratio %.3f, want 2 within 5%%", s, ratio)
	}
}

// TestFrameworksOfARoleShareIt: within a role, frameworks are ordered by their own shares.
func TestFrameworksOfARoleShareIt(t *testing.T) {
	a := New(Config{Seed: 3})
	addAgents(t, a, 100, res(4, 8192))
	must(t, a.AddFramework("f1", "web"))
	must(t, a.AddFramework("f2", "web"))
	must(t, a.AddFramework("f3", "batch"))
	shape := res(1, 1024)
	s := simulate(t, a, map[string]resources.Resources{"f1": shape, "f2": shape, "f3": shape})
	// Role web and role batch split the cluster; f1 and f2 split web's half.
	if math.Abs(s["f1"]-s["f2"]) > 0.02 || math.Abs(s["f1"]+s["f2"]-s["f3"]) > 0.03 {
		t.Fatalf("shares %v", s)
	}
}

// model is what the property test expects, kept the simple way.
type model struct {
	agents     map[string]resources.Resources // total
	active     map[string]bool
	frameworks map[string]string // role
	suppressed map[string]bool
	inactive   map[string]bool
	filters    map[[2]string][]filter // fw, agent → what it refused there, until when
	offers     map[int]Offer
	tasks      map[int]Offer // what accepted offers launched
	nextID     int
}

// holdings adds up the model's offers and tasks by framework and agent.
func (m *model) holdings() map[[2]string]resources.Resources {
	out := map[[2]string]resources.Resources{}
	for _, set := range []map[int]Offer{m.offers, m.tasks} {
		for _, o := range set {
			k := [2]string{o.FrameworkID, o.AgentID}
			out[k] = out[k].Add(o.Resources)
		}
	}
	return out
}

func (m *model) drop(cond func(Offer) bool) {
	for _, set := range []map[int]Offer{m.offers, m.tasks} {
		for k, o := range set {
			if cond(o) {
				delete(set, k)
			}
		}
	}
}

func randomKey[V any](rng *rand.Rand, m map[string]V) (string, bool) {
	if len(m) == 0 {
		return "", false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[rng.IntN(len(keys))], true
}

func randomItem(rng *rand.Rand, m map[int]Offer) (int, bool) {
	if len(m) == 0 {
		return 0, false
	}
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys[rng.IntN(len(keys))], true
}

// naivePick is DRF the obvious way: every framework that wants offers and did not refuse all
// of free on the agent (m's filters), ordered by its role's weighted share and name, then its
// own share and id. The caps: the next role after the chosen one among those that want offers,
// its weighted share times the chosen role's weight, and the next framework of the chosen role,
// each a step past (stepPast).
func naivePick(a *Allocator, m *model, agentID string, free resources.Resources, now time.Time) choice {
	type key struct {
		roleShare float64
		role      string
		share     float64
		id        string
	}
	less := func(x, y key) bool {
		switch {
		case x.roleShare != y.roleShare:
			return x.roleShare < y.roleShare
		case x.role != y.role:
			return x.role < y.role
		case x.share != y.share:
			return x.share < y.share
		}
		return x.id < y.id
	}
	keyOf := func(fw *frameworkState) key {
		return key{a.share(fw.role.allocated) / fw.role.weight, fw.role.name, a.share(fw.allocated), fw.id}
	}
	var best *frameworkState
	for id, fw := range a.frameworks {
		if fw.suppressed || fw.inactive || m.refused(id, agentID, free, now) {
			continue
		}
		if best == nil || less(keyOf(fw), keyOf(best)) {
			best = fw
		}
	}
	c := choice{fw: best, roleCap: math.Inf(1), fwCap: math.Inf(1)}
	if best == nil {
		return c
	}
	bk := keyOf(best)
	for _, fw := range a.frameworks {
		if fw.suppressed || fw.inactive {
			continue
		}
		k := keyOf(fw)
		switch {
		case fw.role != best.role && less(bk, k):
			c.roleCap = min(c.roleCap, stepPast(k.roleShare*best.role.weight, a.share(a.agents[agentID].total)))
		case fw.role == best.role && less(bk, k):
			c.fwCap = min(c.fwCap, stepPast(k.share, a.share(a.agents[agentID].total)))
		}
	}
	return c
}

// refused says whether m's filters keep res of the agent from the framework.
func (m *model) refused(fwID, agentID string, res resources.Resources, now time.Time) bool {
	for _, f := range m.filters[[2]string{fwID, agentID}] {
		if now.Before(f.until) && f.res.Contains(res) {
			return true
		}
	}
	return false
}

// TestRandomEventsKeepTheInvariants drives the allocator with thousands of random events from
// a fixed seed and checks after each: nothing offered twice or over-committed, the books agree
// with a simple model, filters, suppression and inactive agents honoured, and the heap-based
// choice equal to the naive one.
func TestRandomEventsKeepTheInvariants(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { randomEvents(t, seed, 3000) })
	}
}

func randomEvents(t *testing.T, seed uint64, events int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	a := New(Config{Seed: seed})
	m := &model{agents: map[string]resources.Resources{}, active: map[string]bool{}, frameworks: map[string]string{},
		suppressed: map[string]bool{}, inactive: map[string]bool{}, filters: map[[2]string][]filter{}, offers: map[int]Offer{}, tasks: map[int]Offer{}}
	now := t0
	roles := []string{"web", "batch", "ml"}
	for i := 0; i < events; i++ {
		switch op := rng.IntN(15); op {
		case 0: // agent joins
			id := fmt.Sprintf("a%d", i)
			total := resources.Resources{CPUs: float64(1 + rng.IntN(16)), Mem: float64(512 * (1 + rng.IntN(32))), Disk: float64(1000 * rng.IntN(5)),
				Ports: resources.Ranges{{Begin: 31000, End: uint64(31000 + rng.IntN(100))}}}
			must(t, a.AddAgent(id, total))
			m.agents[id], m.active[id] = total, true
		case 1: // agent removed
			if id, ok := randomKey(rng, m.agents); ok && rng.IntN(3) == 0 {
				must(t, a.RemoveAgent(id))
				delete(m.agents, id)
				delete(m.active, id)
				m.drop(func(o Offer) bool { return o.AgentID == id })
				for k := range m.filters {
					if k[1] == id {
						delete(m.filters, k)
					}
				}
			}
		case 2: // agent unreachable or back
			if id, ok := randomKey(rng, m.agents); ok {
				if m.active[id] {
					must(t, a.DeactivateAgent(id))
				} else {
					must(t, a.ActivateAgent(id))
				}
				m.active[id] = !m.active[id]
			}
		case 3: // framework subscribes
			id := fmt.Sprintf("f%d", i)
			role := roles[rng.IntN(len(roles))]
			must(t, a.AddFramework(id, role))
			m.frameworks[id] = role
		case 4: // framework torn down
			if id, ok := randomKey(rng, m.frameworks); ok && rng.IntN(3) == 0 {
				must(t, a.RemoveFramework(id))
				delete(m.frameworks, id)
				delete(m.suppressed, id)
				delete(m.inactive, id)
				m.drop(func(o Offer) bool { return o.FrameworkID == id })
				for k := range m.filters {
					if k[0] == id {
						delete(m.filters, k)
					}
				}
			}
		case 5:
			if id, ok := randomKey(rng, m.frameworks); ok {
				must(t, a.Suppress(id))
				m.suppressed[id] = true
			}
		case 6:
			if id, ok := randomKey(rng, m.frameworks); ok {
				must(t, a.Revive(id))
				delete(m.suppressed, id)
				for k := range m.filters {
					if k[0] == id {
						delete(m.filters, k)
					}
				}
			}
		case 7:
			must(t, a.SetWeight(roles[rng.IntN(len(roles))], float64(1+rng.IntN(4))))
		case 8, 9: // an allocation cycle
			offers := a.Cycle(now)
			checkOffers(t, m, offers, now)
			for _, o := range offers {
				m.nextID++
				m.offers[m.nextID] = o
			}
		case 10: // an offer accepted: half of it launched, the rest declined
			if k, ok := randomItem(rng, m.offers); ok {
				o := m.offers[k]
				delete(m.offers, k)
				task := resources.Resources{CPUs: math.Round(o.Resources.CPUs*500) / 1000, Mem: math.Round(o.Resources.Mem / 2)}
				rest, err := o.Resources.Subtract(task)
				must(t, err)
				refuse := time.Duration(rng.IntN(10)) * time.Second
				must(t, a.Recover(o.FrameworkID, o.AgentID, rest, refuse, now))
				if refuse > 0 && !rest.IsEmpty() {
					k := [2]string{o.FrameworkID, o.AgentID}
					m.filters[k] = append(m.filters[k], filter{res: rest, until: now.Add(refuse)})
				}
				m.nextID++
				m.tasks[m.nextID] = Offer{FrameworkID: o.FrameworkID, AgentID: o.AgentID, Resources: task}
			}
		case 11: // an offer declined or rescinded
			if k, ok := randomItem(rng, m.offers); ok {
				o := m.offers[k]
				delete(m.offers, k)
				refuse := time.Duration(rng.IntN(2)) * DefaultRefuse
				must(t, a.Recover(o.FrameworkID, o.AgentID, o.Resources, refuse, now))
				if refuse > 0 {
					k := [2]string{o.FrameworkID, o.AgentID}
					m.filters[k] = append(m.filters[k], filter{res: o.Resources, until: now.Add(refuse)})
				}
			}
		case 12: // a task ends
			if k, ok := randomItem(rng, m.tasks); ok {
				o := m.tasks[k]
				delete(m.tasks, k)
				must(t, a.Recover(o.FrameworkID, o.AgentID, o.Resources, 0, now))
			}
		case 14: // framework disconnects or is back
			if id, ok := randomKey(rng, m.frameworks); ok {
				if m.inactive[id] {
					must(t, a.ActivateFramework(id))
				} else {
					must(t, a.DeactivateFramework(id))
				}
				m.inactive[id] = !m.inactive[id]
			}
		case 13:
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		}
		checkBooks(t, a, m, i)
		if id, ok := randomKey(rng, m.agents); ok {
			free := a.Free(id)
			got, _ := a.pick(a.agents[id], free, nil, now)
			want := naivePick(a, m, id, free, now)
			if got.fw != want.fw || got.fw != nil && (!near(got.roleCap, want.roleCap) || !near(got.fwCap, want.fwCap)) {
				t.Fatalf("event %d: pick for %s = %s, naive = %s", i, id, got, want)
			}
		}
	}
}

func near(x, y float64) bool { return x == y || math.Abs(x-y) < 1e-9 }

func (c choice) String() string {
	if c.fw == nil {
		return "nobody"
	}
	return fmt.Sprintf("%s (role cap %.4f, cap %.4f)", c.fw.id, c.roleCap, c.fwCap)
}

// checkOffers: each offer of a cycle is of an active agent, to a framework that wants offers,
// worth offering, not within what its framework refused there, and the only one of its agent
// to its framework; an agent's offers add up to no more than it had free.
func checkOffers(t *testing.T, m *model, offers []Offer, now time.Time) {
	t.Helper()
	held := map[string]resources.Resources{}
	for k, h := range m.holdings() {
		held[k[1]] = held[k[1]].Add(h)
	}
	seen := map[[2]string]bool{}
	for _, o := range offers {
		k := [2]string{o.FrameworkID, o.AgentID}
		switch {
		case !m.active[o.AgentID]:
			t.Fatalf("offer of inactive agent %s", o.AgentID)
		case m.suppressed[o.FrameworkID] || m.inactive[o.FrameworkID]:
			t.Fatalf("offer to suppressed or inactive %s", o.FrameworkID)
		case !worthOffering(o.Resources):
			t.Fatalf("offer %+v below the minimum", o)
		case m.refused(o.FrameworkID, o.AgentID, o.Resources, now):
			t.Fatalf("offer %+v within what %s refused there: %v (now %v)", o, o.FrameworkID, m.filters[k], now)
		case seen[k]:
			t.Fatalf("two offers of %s to %s in one cycle", o.AgentID, o.FrameworkID)
		}
		seen[k] = true
		held[o.AgentID] = held[o.AgentID].Add(o.Resources)
		if !m.agents[o.AgentID].Contains(held[o.AgentID]) {
			t.Fatalf("offer %+v: %s's offers and tasks hold %s of %s", o, o.AgentID, held[o.AgentID], m.agents[o.AgentID])
		}
	}
}

// checkBooks: every agent's and framework's allocation is what the model's offers and tasks
// add up to, and never more than the agent has.
func checkBooks(t *testing.T, a *Allocator, m *model, event int) {
	t.Helper()
	held := m.holdings()
	perAgent := map[string]resources.Resources{}
	fwTotals := map[string]resources.Resources{}
	for k, h := range held {
		if got := a.Held(k[0], k[1]); !got.Equal(h) {
			t.Fatalf("event %d: %s holds %s on %s, model says %s", event, k[0], got, k[1], h)
		}
		perAgent[k[1]] = perAgent[k[1]].Add(h)
		fwTotals[k[0]] = fwTotals[k[0]].Add(scalars(h))
	}
	for agentID, ag := range a.agents {
		for fw, got := range ag.byFw {
			if _, ok := held[[2]string{fw, agentID}]; !ok {
				t.Fatalf("event %d: %s holds %s on %s, model says nothing", event, fw, got, agentID)
			}
		}
	}
	for agentID, total := range m.agents {
		sum := perAgent[agentID]
		if !total.Contains(sum) {
			t.Fatalf("event %d: %s over-committed: %s of %s", event, agentID, sum, total)
		}
		if free, _ := total.Subtract(sum); !a.Free(agentID).Equal(free) {
			t.Fatalf("event %d: %s free %s, model says %s", event, agentID, a.Free(agentID), free)
		}
	}
	for fw := range m.frameworks {
		if got := a.frameworks[fw].allocated; !got.Equal(fwTotals[fw]) {
			t.Fatalf("event %d: %s allocated %s, model says %s", event, fw, got, fwTotals[fw])
		}
	}
}

func benchAllocator(b *testing.B, agents, frameworks int) (*Allocator, []string) {
	a := New(Config{Seed: 1})
	for i := range agents {
		must(b, a.AddAgent(fmt.Sprintf("agent-%05d", i), resources.Resources{CPUs: 16, Mem: 65536, Disk: 100000, Ports: resources.Ranges{{Begin: 31000, End: 32000}}}))
	}
	var fws []string
	for i := range frameworks {
		id := fmt.Sprintf("fw-%04d", i)
		must(b, a.AddFramework(id, fmt.Sprintf("role-%d", i%10)))
		fws = append(fws, id)
	}
	return a, fws
}

// BenchmarkCycle is one allocation cycle over every agent with all frameworks wanting offers.
// Target (issue 5): <= 100 ms for 10,000 agents x 1,000 frameworks on 2 cores, and no worse than
// linear in agents.
func BenchmarkCycle(b *testing.B) {
	for _, agents := range []int{1000, 10000} {
		for _, frameworks := range []int{10, 1000} {
			b.Run(fmt.Sprintf("agents=%d/frameworks=%d", agents, frameworks), func(b *testing.B) {
				a, _ := benchAllocator(b, agents, frameworks)
				for b.Loop() {
					offers := a.Cycle(t0)
					b.StopTimer()
					if len(offers) != agents {
						b.Fatalf("%d offers, want %d", len(offers), agents)
					}
					for _, o := range offers {
						must(b, a.Recover(o.FrameworkID, o.AgentID, o.Resources, 0, t0))
					}
					b.StartTimer()
				}
			})
		}
	}
}
