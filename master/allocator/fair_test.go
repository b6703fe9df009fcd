package allocator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// The two shapes (issue 23 item 5): greedy frameworks of these tasks on one agent of
// 4 cpus / 4 GiB ended at dominant shares 0 and 1 when each offer held a whole agent.
var (
	cpuHeavy = res(0.2, 32)
	memHeavy = res(0.02, 256)
)

// greedyFw is a simulated framework that fills every offer with tasks of its shape and
// declines the rest for an hour, as TestDRFThroughTheScheduler's frameworks do.
type greedyFw struct {
	id, role string
	shape    resources.Resources
}

// greedySim runs greedy frameworks cycle by cycle, keeping its own books of their tasks and
// checking after each cycle that no resource is offered twice or beyond an agent's total.
type greedySim struct {
	t      testing.TB
	a      *Allocator
	now    time.Time
	totals map[string]resources.Resources
	fws    map[string]greedyFw
	tasks  map[[2]string]resources.Resources // framework, agent → what its tasks use there
	cycles int
}

func newGreedySim(t testing.TB, a *Allocator, agents int, total resources.Resources, fws ...greedyFw) *greedySim {
	g := &greedySim{t: t, a: a, now: t0, totals: map[string]resources.Resources{}, fws: map[string]greedyFw{}, tasks: map[[2]string]resources.Resources{}}
	for i := range agents {
		id := fmt.Sprintf("agent-%04d", i)
		must(t, a.AddAgent(id, total))
		g.totals[id] = total
	}
	for _, fw := range fws {
		g.add(fw)
	}
	return g
}

func (g *greedySim) add(fw greedyFw) {
	must(g.t, g.a.AddFramework(fw.id, fw.role))
	g.fws[fw.id] = fw
}

// run goes on until a cycle offers nothing: every framework is full or refused what is left.
func (g *greedySim) run() {
	g.t.Helper()
	for range 5000 {
		offers := g.a.Cycle(g.now)
		if len(offers) == 0 {
			return
		}
		g.cycles++
		g.check(offers)
		for _, o := range offers {
			shape := g.fws[o.FrameworkID].shape
			n := fits(o.Resources, shape)
			used := resources.Resources{CPUs: shape.CPUs * float64(n), Mem: shape.Mem * float64(n)}
			rest, err := o.Resources.Subtract(used)
			must(g.t, err)
			k := [2]string{o.FrameworkID, o.AgentID}
			g.tasks[k] = g.tasks[k].Add(used)
			must(g.t, g.a.Recover(o.FrameworkID, o.AgentID, rest, time.Hour, g.now))
		}
		g.now = g.now.Add(time.Second)
	}
	g.t.Fatalf("still offering after 5000 cycles")
}

// fits is how many tasks of shape r holds.
func fits(r, shape resources.Resources) int {
	n := math.Inf(1)
	for _, p := range [][2]float64{{r.CPUs, shape.CPUs}, {r.Mem, shape.Mem}, {r.Disk, shape.Disk}} {
		if p[1] > 0 {
			n = min(n, math.Floor((p[0]+1e-9)/p[1]))
		}
	}
	used := resources.Resources{CPUs: shape.CPUs * n, Mem: shape.Mem * n, Disk: shape.Disk * n}
	for n > 0 && !r.Contains(used) { // rounding to three decimals
		n--
		used = resources.Resources{CPUs: shape.CPUs * n, Mem: shape.Mem * n, Disk: shape.Disk * n}
	}
	return int(n)
}

// check: a cycle's offers and the tasks on each agent add up to no more than the agent has,
// and agree with the allocator's books.
func (g *greedySim) check(offers []Offer) {
	g.t.Helper()
	sum := map[string]resources.Resources{}
	for k, r := range g.tasks {
		sum[k[1]] = sum[k[1]].Add(r)
	}
	for _, o := range offers {
		sum[o.AgentID] = sum[o.AgentID].Add(o.Resources)
	}
	for id, total := range g.totals {
		if !total.Contains(sum[id]) {
			g.t.Fatalf("cycle %d: %s has %s, its tasks and offers hold %s", g.cycles, id, total, sum[id])
		}
		if free, _ := total.Subtract(sum[id]); !free.Equal(g.a.Free(id)) {
			g.t.Fatalf("cycle %d: %s: the allocator says %s free, the books %s", g.cycles, id, g.a.Free(id), free)
		}
	}
}

// end frees every task of a framework, which then leaves.
func (g *greedySim) end(fwID string) {
	for k, r := range g.tasks {
		if k[0] == fwID {
			must(g.t, g.a.Recover(fwID, k[1], r, 0, g.now))
			delete(g.tasks, k)
		}
	}
	must(g.t, g.a.RemoveFramework(fwID))
	delete(g.fws, fwID)
}

// shares are the frameworks' dominant shares of what their tasks use.
func (g *greedySim) shares() map[string]float64 {
	out := map[string]float64{}
	var total resources.Resources
	for _, r := range g.totals {
		total = total.Add(scalars(r))
	}
	used := map[string]resources.Resources{}
	for k, r := range g.tasks {
		used[k[0]] = used[k[0]].Add(r)
	}
	for id := range g.fws {
		out[id] = dominant(used[id], total)
	}
	return out
}

func dominant(r, total resources.Resources) float64 {
	s := 0.0
	for _, p := range [][2]float64{{r.CPUs, total.CPUs}, {r.Mem, total.Mem}, {r.Disk, total.Disk}} {
		if p[1] > 0 {
			s = max(s, p[0]/p[1])
		}
	}
	return s
}

// drfReference is progressive filling the slow, exact way: one task at a time to the framework
// DRF puts first — its role's weighted dominant share, then its own, names breaking ties —
// among those whose next task fits on some agent, placed on the first agent it fits.
func drfReference(agents []resources.Resources, weights map[string]float64, fws []greedyFw) map[string]float64 {
	var total resources.Resources
	for _, r := range agents {
		total = total.Add(r)
	}
	free := slices.Clone(agents)
	used := map[string]resources.Resources{}
	roleUsed := map[string]resources.Resources{}
	full := map[string]bool{}
	weight := func(role string) float64 {
		if w, ok := weights[role]; ok {
			return w
		}
		return 1
	}
	for {
		var next *greedyFw
		for i := range fws {
			fw := &fws[i]
			if full[fw.id] {
				continue
			}
			if next == nil {
				next = fw
				continue
			}
			rs, rn := dominant(roleUsed[fw.role], total)/weight(fw.role), dominant(roleUsed[next.role], total)/weight(next.role)
			s, n := dominant(used[fw.id], total), dominant(used[next.id], total)
			if rs < rn || rs == rn && (fw.role < next.role || fw.role == next.role && (s < n || s == n && fw.id < next.id)) {
				next = fw
			}
		}
		if next == nil {
			break
		}
		placed := false
		for i := range free {
			if left, err := free[i].Subtract(next.shape); err == nil {
				free[i] = left
				used[next.id] = used[next.id].Add(next.shape)
				roleUsed[next.role] = roleUsed[next.role].Add(next.shape)
				placed = true
				break
			}
		}
		full[next.id] = !placed
	}
	out := map[string]float64{}
	for _, fw := range fws {
		out[fw.id] = dominant(used[fw.id], total)
	}
	return out
}

// apart is how far apart two shares are, as a part of the larger.
func apart(x, y float64) float64 {
	if x == y {
		return 0
	}
	return math.Abs(x-y) / math.Max(x, y)
}

// TestOneAgentIsShared: the two greedy frameworks on one agent of 4 cpus / 4 GiB end
// where exact DRF ends (one task at a time to the lower share) — not at 0 and 1. Their shares
// cannot end closer than 9.7 % there: at 18 cpu-heavy tasks (0.90) and 13 memory-heavy ones
// (0.8125), 192 MiB are left, too little for a 14th memory-heavy task, and 0.14 cpus, too
// little for a 19th cpu-heavy one; at 17 and 13 (4.4 % apart) the cpu-heavy framework would be
// refused resources it can use and nobody else can. So the test holds the allocator to exact
// DRF within 5 %, and the two to within 5 % but for the cpu-heavy framework's last task.
func TestOneAgentIsShared(t *testing.T) {
	fws := []greedyFw{{"cpu-heavy", "analytics", cpuHeavy}, {"mem-heavy", "cache", memHeavy}}
	g := newGreedySim(t, New(Config{Seed: 1}), 1, res(4, 4096), fws...)
	g.run()
	got := g.shares()
	want := drfReference([]resources.Resources{res(4, 4096)}, nil, fws)
	t.Logf("after %d cycles: shares %v; exact DRF %v", g.cycles, got, want)
	for id, w := range want {
		if d := apart(got[id], w); d > 0.05 {
			t.Errorf("%s: share %.4f, exact DRF %.4f: %.1f%% apart", id, got[id], w, d*100)
		}
	}
	// One cpu-heavy task less (0.05), and the two are within 5 %: the last task went to the
	// framework that could still use what was left.
	if d := apart(got["cpu-heavy"]-0.05, got["mem-heavy"]); d > 0.05 {
		t.Errorf("shares %v: without the last cpu-heavy task still %.1f%% apart", got, d*100)
	}
}

// TestHundredAgentsAreShared: the same on 100 agents: equal dominant shares within 5 %, the
// cluster used.
func TestHundredAgentsAreShared(t *testing.T) {
	g := newGreedySim(t, New(Config{Seed: 2}), 100, res(4, 4096),
		greedyFw{"cpu-heavy", "analytics", cpuHeavy}, greedyFw{"mem-heavy", "cache", memHeavy})
	g.run()
	s := g.shares()
	t.Logf("after %d cycles: shares %v", g.cycles, s)
	if d := apart(s["cpu-heavy"], s["mem-heavy"]); d > 0.05 || s["cpu-heavy"] < 0.8 {
		t.Fatalf("shares %v: %.1f%% apart", s, d*100)
	}
}

// TestFreedResourcesAreShared: a third framework fills part of the cluster and then ends its
// tasks; the two greedy ones share what it freed (the second run ended at 0.40 and
// 0.94): within 5 % (0.1 % to 4.0 % over seeds 1 to 4 on 100 agents).
func TestFreedResourcesAreShared(t *testing.T) {
	for _, agents := range []int{1, 100} {
		t.Run(fmt.Sprint("agents=", agents), func(t *testing.T) {
			g := newGreedySim(t, New(Config{Seed: 3}), agents, res(4, 4096),
				greedyFw{"third", "batch", res(0.5, 512)}, greedyFw{"cpu-heavy", "analytics", cpuHeavy})
			g.run()
			g.add(greedyFw{"mem-heavy", "cache", memHeavy})
			g.run()
			before := g.shares()
			g.end("third")
			g.run()
			s := g.shares()
			t.Logf("before the third ended %v; after %v", before, s)
			d := apart(s["cpu-heavy"], s["mem-heavy"])
			if agents == 1 {
				// As in TestOneAgentIsShared: within 5 % but for the last cpu-heavy task.
				d = min(d, apart(s["cpu-heavy"]-0.05, s["mem-heavy"]))
			}
			if d > 0.05 || s["mem-heavy"] < 0.75 {
				t.Fatalf("shares %v: %.1f%% apart", s, 100*apart(s["cpu-heavy"], s["mem-heavy"]))
			}
		})
	}
}

// TestWeightedRolesShareAnAgent: roles weighted 2:1 on one agent end with dominant shares 2:1
// within 5 % (tasks small enough that one task is less than that).
func TestWeightedRolesShareAnAgent(t *testing.T) {
	a := New(Config{Seed: 4})
	must(t, a.SetWeight("gold", 2))
	g := newGreedySim(t, a, 1, res(4, 4096), greedyFw{"heavy", "gold", res(0.04, 40)}, greedyFw{"light", "bronze", res(0.04, 40)})
	g.run()
	s := g.shares()
	t.Logf("after %d cycles: shares %v", g.cycles, s)
	if ratio := s["heavy"] / s["light"]; math.Abs(ratio-2) > 0.1 {
		t.Fatalf("shares %v: ratio %.3f, want 2 within 5%%", s, ratio)
	}
}

// TestRandomClustersMatchExactDRF: random task shapes (each at most half a percent of an agent,
// so that one task is not what sets shares apart), 1 to 20 agents, 2 to 5 greedy frameworks,
// each in a role of random weight: the allocator's final shares agree with exact DRF's within
// 10 % of the larger (or a tenth of a percent of the cluster, for shares near 0), and no
// resource is ever offered twice or beyond an agent's total (greedySim.check). Not 5 %: an
// offer counts in full towards its framework's share until its unused part comes back, and
// slices of an agent leave pieces too small for a task; over these 30 seeds 27 are within
// 5 % and the largest gap is 9.4 %.
func TestRandomClustersMatchExactDRF(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			if !randomCluster(t, seed, t.Logf) {
				t.Fail()
			}
		})
	}
}

// randomCluster is one case of TestRandomClustersMatchExactDRF; it reports whether it passed.
func randomCluster(t testing.TB, seed uint64, logf func(string, ...any)) bool {
	ok := true
	rng := rand.New(rand.NewPCG(seed, 99))
	agent := res(float64(4+4*rng.IntN(4)), float64(4096*(1+rng.IntN(4))))
	agents := 1 + rng.IntN(20)
	weights := map[string]float64{}
	roles := []string{"a", "b", "c", "d", "e"}
	for _, r := range roles {
		weights[r] = float64(1 + rng.IntN(3))
	}
	a := New(Config{Seed: seed})
	for r, w := range weights {
		must(t, a.SetWeight(r, w))
	}
	var fws []greedyFw
	for i := range 2 + rng.IntN(4) {
		shape := resources.Resources{CPUs: math.Round(agent.CPUs*(0.001+0.004*rng.Float64())*1000) / 1000,
			Mem: math.Round(agent.Mem * (0.001 + 0.004*rng.Float64()))}
		fws = append(fws, greedyFw{fmt.Sprint("fw", i), roles[i], shape})
	}
	g := newGreedySim(t, a, agents, agent, fws...)
	g.run()
	got := g.shares()
	totals := make([]resources.Resources, agents)
	for i := range totals {
		totals[i] = agent
	}
	want := drfReference(totals, weights, fws)
	for _, fw := range fws {
		if d := math.Abs(got[fw.id] - want[fw.id]); d > 0.1*math.Max(got[fw.id], want[fw.id]) && d > 0.001 {
			ok = false
			logf("%s (role %s of weight %v, tasks %s): share %.4f, exact DRF %.4f", fw.id, fw.role, weights[fw.role], fw.shape, got[fw.id], want[fw.id])
		}
	}
	if !ok {
		logf("%d agents of %s; after %d cycles: %v; exact DRF %v", agents, agent, g.cycles, got, want)
	}
	return ok
}

// TestTiesSplitAnAgent: two frameworks at share 0 are offered about half of one agent each in
// the first cycle, not one of them all of it.
func TestTiesSplitAnAgent(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("f1", "web"))
	must(t, a.AddFramework("f2", "batch"))
	offers := a.Cycle(t0)
	if len(offers) != 2 {
		t.Fatalf("offers %+v, want one to each", offers)
	}
	for _, o := range offers {
		if math.Abs(o.Resources.CPUs-2) > 0.1 || math.Abs(o.Resources.Mem-2048) > 100 {
			t.Errorf("offer %+v, want about half the agent", o)
		}
	}
	if free := a.Free("a1"); worthOffering(free) {
		t.Errorf("%s left unoffered", free)
	}
}

// TestRefusalsAreOfResources: a filter keeps from a framework only offers within what it
// refused (Mesos's filters): after declining a small slice for an hour, it is still offered a
// larger one of the same agent, and never the same again.
func TestRefusalsAreOfResources(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("f1", "web"))
	must(t, a.AddFramework("f2", "batch"))
	// f1 declines its half for an hour; f2 gives its half back and wants no more offers.
	var small Offer
	for _, o := range a.Cycle(t0) {
		refuse := time.Duration(0)
		if o.FrameworkID == "f1" {
			small, refuse = o, time.Hour
		}
		must(t, a.Recover(o.FrameworkID, o.AgentID, o.Resources, refuse, t0))
	}
	must(t, a.Suppress("f2"))
	got := a.Cycle(t0.Add(time.Minute))
	if len(got) != 1 || !got[0].Resources.Equal(res(4, 4096)) {
		t.Fatalf("after refusing %s: offers %+v, want the whole agent", small.Resources, got)
	}
	// It refuses the whole agent: no offer of it until the hour is over.
	must(t, a.Recover("f1", "a1", got[0].Resources, time.Hour, t0.Add(time.Minute)))
	if again := a.Cycle(t0.Add(30 * time.Minute)); len(again) != 0 {
		t.Fatalf("offered within what it refused: %+v", again)
	}
	if again := a.Cycle(t0.Add(time.Hour + time.Minute)); len(again) != 1 {
		t.Fatalf("after the hour: %+v", again)
	}
}

// BenchmarkGreedyShares runs the two greedy frameworks to the end on 1 and on 100
// agents of 4 cpus / 4 GiB and reports their final dominant shares (cpu-heavy, mem-heavy) and
// the cycles it took, with the time of a whole run.
func BenchmarkGreedyShares(b *testing.B) {
	for _, agents := range []int{1, 100} {
		b.Run(fmt.Sprint("agents=", agents), func(b *testing.B) {
			var s map[string]float64
			var cycles int
			for b.Loop() {
				g := newGreedySim(b, New(Config{Seed: 1}), agents, res(4, 4096),
					greedyFw{"cpu-heavy", "analytics", cpuHeavy}, greedyFw{"mem-heavy", "cache", memHeavy})
				g.run()
				s, cycles = g.shares(), g.cycles
			}
			b.ReportMetric(s["cpu-heavy"], "cpu-heavy-share")
			b.ReportMetric(s["mem-heavy"], "mem-heavy-share")
			b.ReportMetric(float64(cycles), "cycles")
		})
	}
}
