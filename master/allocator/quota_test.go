package allocator

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// takeAll runs cycles until none offers anything, every offer accepted whole (greedy
// frameworks that hold what they are given): what each framework holds then.
func takeAll(t *testing.T, a *Allocator, cycles int) map[string]resources.Resources {
	t.Helper()
	for i := range cycles {
		if len(a.Cycle(t0.Add(time.Duration(i)*time.Second))) == 0 {
			break
		}
	}
	out := map[string]resources.Resources{}
	for id := range a.frameworks {
		out[id] = a.Allocated(id)
	}
	return out
}

// TestQuotaLimitIsNeverPassed: a role limited to 2 cpus is offered no more, on an agent of 4,
// and the rest goes to the others; raised, the limit lets it take more.
func TestQuotaLimitIsNeverPassed(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	a.SetQuota("batch", Quota{Limit: map[string]float64{"cpus": 2}})
	must(t, a.AddFramework("b1", "batch"))
	must(t, a.AddFramework("b2", "batch"))
	held := takeAll(t, a, 50)
	if got := held["b1"].CPUs + held["b2"].CPUs; got > 2+1e-9 || got < 1.9 {
		t.Fatalf("the limited role holds %v cpus, want up to its limit of 2: %v", got, held)
	}
	must(t, a.AddFramework("w1", "web"))
	held = takeAll(t, a, 50)
	if got := held["w1"].CPUs; got < 1.9 {
		t.Fatalf("the other role got %v cpus of the 2 the limit left", got)
	}
	a.RemoveQuota("batch")
	must(t, a.Recover("w1", "a1", held["w1"], 0, t0))
	must(t, a.RemoveFramework("w1"))
	if held = takeAll(t, a, 50); held["b1"].CPUs+held["b2"].CPUs < 3.9 {
		t.Fatalf("without its limit the role holds %v", held)
	}
}

// TestQuotaGuaranteeIsKeptBackAndComesFirst: a role guaranteed 4 cpus whose framework wants no
// offers yet: a greedy role is offered all but those 4; when the guaranteed framework asks, it
// gets its 4 before the greedy one gets anything freed.
func TestQuotaGuaranteeIsKeptBackAndComesFirst(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddAgent("a2", res(4, 4096)))
	a.SetQuota("prod", Quota{Guarantee: map[string]float64{"cpus": 4, "mem": 2048}})
	must(t, a.AddFramework("p", "prod"))
	must(t, a.Suppress("p"))
	must(t, a.AddFramework("g", "greedy"))
	held := takeAll(t, a, 50)
	if held["g"].CPUs > 4+1e-9 || held["g"].Mem > 6144+1e-9 || held["g"].CPUs < 3.9 {
		t.Fatalf("the greedy role holds %v, want all but the guarantee's 4 cpus and 2048 MiB", held["g"])
	}
	must(t, a.Revive("p"))
	held = takeAll(t, a, 50)
	if held["p"].CPUs < 4-1e-9 || held["p"].Mem < 2048-1e-9 {
		t.Fatalf("the guaranteed role holds %v, want its 4 cpus and 2048 MiB", held["p"])
	}
}

// TestQuotaGuaranteeBeatsShares: a guaranteed role with a large share already comes before a
// role at 0 until it holds its guarantee.
func TestQuotaGuaranteeBeatsShares(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(8, 8192)))
	must(t, a.AddFramework("p", "prod"))
	must(t, a.Allocate("p", "a1", res(4, 4096)))
	a.SetQuota("prod", Quota{Guarantee: map[string]float64{"cpus": 6}})
	must(t, a.AddFramework("d", "dev"))
	offers := a.Cycle(t0)
	var prod float64
	for _, o := range offers {
		if o.FrameworkID == "p" {
			prod += o.Resources.CPUs
		}
	}
	if prod < 2-1e-9 {
		t.Fatalf("offers %+v: the role below its guarantee got %v cpus, want the 2 it lacks first", offers, prod)
	}
}

// TestQuotaPropertyRandomClusters: random agents, roles with random guarantees (that the
// cluster can hold) and limits (at least the guarantee), greedy frameworks: no offer ever takes
// a role past its limit, no agent is offered past its total, and every role with a framework
// ends holding its guarantee — checked against what a naive allocator (guarantees first, then
// anything up to the limits) can reach: the same roles satisfied.
func TestQuotaPropertyRandomClusters(t *testing.T) {
	for seed := range uint64(100) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			a := New(Config{Seed: seed})
			var capacity resources.Resources
			for i := range 1 + rng.IntN(12) {
				r := res(float64(1+rng.IntN(8)), float64(1024*(1+rng.IntN(8))))
				capacity = capacity.Add(r)
				must(t, a.AddAgent(fmt.Sprint("a", i), r))
			}
			type role struct {
				name string
				q    Quota
			}
			var roles []role
			left := capacity
			for i := range 1 + rng.IntN(5) {
				q := Quota{Guarantee: map[string]float64{}, Limit: map[string]float64{}}
				if rng.IntN(2) == 0 { // guaranteed: a part of what is left
					c, m := floor3(left.CPUs*rng.Float64()*0.5), floor3(left.Mem*rng.Float64()*0.5)
					q.Guarantee["cpus"], q.Guarantee["mem"] = c, m
					left.CPUs, left.Mem = left.CPUs-c, left.Mem-m
				}
				if rng.IntN(2) == 0 { // limited: at least the guarantee
					q.Limit["cpus"] = q.Guarantee["cpus"] + floor3(capacity.CPUs*rng.Float64()*0.5)
					q.Limit["mem"] = q.Guarantee["mem"] + floor3(capacity.Mem*rng.Float64()*0.5)
				}
				r := role{fmt.Sprint("r", i), q}
				roles = append(roles, r)
				a.SetQuota(r.name, q)
				for j := range 1 + rng.IntN(2) {
					must(t, a.AddFramework(fmt.Sprintf("%s-f%d", r.name, j), r.name))
				}
			}
			for i := range 200 {
				for _, o := range a.Cycle(t0.Add(time.Duration(i) * time.Second)) {
					if ag := a.agents[o.AgentID]; !ag.total.Contains(ag.allocated) {
						t.Fatalf("agent %s offered past its total: %v of %v", o.AgentID, ag.allocated, ag.total)
					}
				}
				// Laid away: what roles hold past their guarantees never eats into the sum of
				// the guarantees (but for the minimum offers a role below its guarantee may take).
				var past, guaranteed vec
				for _, r := range roles {
					held := vecOf(a.roles[r.name].allocated)
					g := vec{r.q.Guarantee["cpus"], r.q.Guarantee["mem"], 0}
					for d := range 2 {
						past[d] += max(0, held[d]-g[d])
						guaranteed[d] += g[d]
					}
				}
				slack := vec{MinCPUs * float64(len(roles)), MinMem * float64(len(roles)), 0}
				for d, total := range vecOf(capacity) {
					if past[d] > total-guaranteed[d]+slack[d]+1e-6 {
						t.Fatalf("cycle %d: roles hold %v of %s past their guarantees, more than the %v the guarantees leave", i, past[d], quotaNames[d], total-guaranteed[d])
					}
				}
				for _, r := range roles {
					held := a.roles[r.name].allocated
					if l, ok := r.q.Limit["cpus"]; ok && held.CPUs > l+1e-6 {
						t.Fatalf("cycle %d: role %s holds %v cpus, limit %v", i, r.name, held.CPUs, l)
					}
					if l, ok := r.q.Limit["mem"]; ok && held.Mem > l+1e-6 {
						t.Fatalf("cycle %d: role %s holds %v mem, limit %v", i, r.name, held.Mem, l)
					}
				}
			}
			// What a naive allocator could still give: for every role below its guarantee, no
			// agent has free resources that its quota lets it be offered and that are worth an
			// offer (guarantees are quantities, as Mesos's: one left short because what is free is
			// spread over agents in shapes of no use — cpus without memory — is not wronged).
			if offers := a.Cycle(t0.Add(time.Hour)); len(offers) != 0 {
				t.Fatalf("not settled after 200 cycles: %+v", offers)
			}
			for _, r := range roles {
				ro := a.roles[r.name]
				if !ro.below() {
					continue
				}
				for id, ag := range a.agents {
					free, _ := ag.total.Subtract(ag.allocated)
					if part := a.quotaClip(ro, free, a.cycleFree); worthOffering(free) && worthOffering(part) {
						t.Fatalf("role %s is below its guarantee (%v of %+v) and %s has %v free, %v of it for the role, unoffered", r.name, ro.allocated, r.q, id, free, part)
					}
				}
			}
		})
	}
}

// BenchmarkCycleQuotas is one allocation cycle of 10,000 agents × 1,000 frameworks in 100 roles,
// 50 of them guaranteed 0.5 % of the cluster each and 50 limited to 2 % each (issue 23's target:
// ≤ 100 ms on 2 cores); every offer is declined after it, so each cycle offers the cluster anew.
func BenchmarkCycleQuotas(b *testing.B) { benchCycle(b, quotaCluster(b)) }

// quotaCluster is BenchmarkCycleQuotas's cluster: 10,000 agents, 1,000 frameworks in 100 roles,
// half of the roles guaranteed 0.5 % of the cluster, the other half limited to 2 %.
func quotaCluster(b *testing.B) *Allocator {
	const agents, frameworks, roles = 10000, 1000, 100
	a := New(Config{Seed: 1})
	for i := range agents {
		must(b, a.AddAgent(fmt.Sprintf("agent-%05d", i), resources.Resources{CPUs: 16, Mem: 65536, Disk: 100000}))
	}
	for i := range frameworks {
		must(b, a.AddFramework(fmt.Sprintf("fw-%04d", i), fmt.Sprintf("role-%03d", i%roles)))
	}
	for i := range roles {
		if i%2 == 0 {
			a.SetQuota(fmt.Sprintf("role-%03d", i), Quota{Guarantee: map[string]float64{"cpus": agents * 16 * 0.005, "mem": agents * 65536 * 0.005}})
		} else {
			a.SetQuota(fmt.Sprintf("role-%03d", i), Quota{Limit: map[string]float64{"cpus": agents * 16 * 0.02, "mem": agents * 65536 * 0.02}})
		}
	}
	return a
}

// benchCycle times cycles of a, every offer recovered between them.
func benchCycle(b *testing.B, a *Allocator) {
	for b.Loop() {
		offers := a.Cycle(t0)
		b.StopTimer()
		if len(offers) == 0 {
			b.Fatal("no offers")
		}
		for _, o := range offers {
			must(b, a.Recover(o.FrameworkID, o.AgentID, o.Resources, 0, t0))
		}
		b.StartTimer()
	}
}
