package marathon

import (
	"flag"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"
)

var planSeed = flag.Int64("plan.seed", 0, "seed of TestPlanAppProperties (0: from the clock)")

// naivePlan is PlanApp written the slow, obvious way, to check the real one against: every
// choice is a plain loop over the instances, every bound a search for the integer that meets
// it.
func naivePlan(target int, strat UpgradeStrategy, killSelection string, insts []PlanInstance) Plan {
	for _, in := range insts {
		if in.Unreconciled {
			return Plan{} // nothing is known: no move
		}
	}
	// killFirst says whether a is killed before b: not running first, then by age as
	// killSelection says; ties keep the order the instances came in.
	killFirst := func(a, b PlanInstance) bool {
		if a.Running != b.Running {
			return !a.Running
		}
		if killSelection == KillOldestFirst {
			return a.StagedAt.Before(b.StagedAt)
		}
		return a.StagedAt.After(b.StagedAt)
	}
	// pick takes out, one at a time, the instance killed first among those left.
	pick := func(from []PlanInstance, before func(a, b PlanInstance) bool) []PlanInstance {
		left := append([]PlanInstance(nil), from...)
		var out []PlanInstance
		for len(left) > 0 {
			best := 0
			for i := range left {
				if before(left[i], left[best]) {
					best = i
				}
			}
			out = append(out, left[best])
			left = append(left[:best], left[best+1:]...)
		}
		return out
	}
	var old, nw []PlanInstance
	oldDying, dying := 0, 0
	for _, in := range insts {
		switch {
		case in.Killing && !in.New:
			oldDying++
			dying++
		case in.Killing:
			dying++
		case in.New:
			nw = append(nw, in)
		default:
			old = append(old, in)
		}
	}
	var p Plan
	// Too many of the new version: the surplus goes, in kill order.
	nw = pick(nw, killFirst)
	for len(nw) > target {
		p.Kill = append(p.Kill, nw[0].ID)
		nw = nw[1:]
	}
	if len(old) == 0 && oldDying == 0 {
		if len(nw) < target {
			p.Start = target - len(nw)
		}
		return p
	}
	minHealthy, maxCapacity := bounds(target, strat)
	healthy := 0
	for _, in := range append(append([]PlanInstance(nil), old...), nw...) {
		if in.Healthy {
			healthy++
		}
	}
	mayBeHealthy := func(in PlanInstance) bool { return in.Healthy || in.HealthUnknown }
	ordered := pick(old, func(a, b PlanInstance) bool {
		if mayBeHealthy(a) != mayBeHealthy(b) {
			return !mayBeHealthy(a) // the unhealthy hold nothing up: they go first
		}
		return killFirst(a, b)
	})
	lost, killedOld := 0, 0
	for _, in := range ordered {
		if mayBeHealthy(in) && healthy-lost <= minHealthy {
			break
		}
		if mayBeHealthy(in) {
			lost++
		}
		p.Kill = append(p.Kill, in.ID)
		killedOld++
	}
	total := len(insts)
	start := target - len(nw)
	if room := maxCapacity - total; room < start {
		start = room
	}
	if start < 0 {
		start = 0
	}
	p.Start = start
	allNewHealthy := true
	for _, in := range nw {
		allNewHealthy = allNewHealthy && in.Healthy
	}
	if len(p.Kill) == 0 && p.Start == 0 && dying == 0 && killedOld < len(old) && allNewHealthy {
		p.Kill = append(p.Kill, ordered[0].ID) // no room and nothing to spare: one old makes room
	}
	return p
}

// simApp is one app the property test moves through random events.
type simApp struct {
	r      *rand.Rand
	target int
	strat  UpgradeStrategy
	kill   string
	insts  []*PlanInstance
	next   int
	now    time.Time
	log    []string
}

func (a *simApp) view() []PlanInstance {
	out := make([]PlanInstance, len(a.insts))
	for i, in := range a.insts {
		out[i] = *in
	}
	return out
}

func (a *simApp) find(id string) *PlanInstance {
	for _, in := range a.insts {
		if in.ID == id {
			return in
		}
	}
	return nil
}

func (a *simApp) drop(id string) {
	for i, in := range a.insts {
		if in.ID == id {
			a.insts = append(a.insts[:i], a.insts[i+1:]...)
			return
		}
	}
}

// randomStrategy picks an upgradeStrategy, often at Marathon's edges.
func randomStrategy(r *rand.Rand) UpgradeStrategy {
	caps := []float64{0, 0.1, 0.25, 0.5, 0.6, 0.75, 1}
	return UpgradeStrategy{MinimumHealthCapacity: caps[r.Intn(len(caps))], MaximumOverCapacity: caps[r.Intn(len(caps))]}
}

// bounds are Marathon's rounding of an upgrade's bounds.
func bounds(target int, s UpgradeStrategy) (minHealthy, maxCapacity int) {
	for float64(minHealthy) < float64(target)*s.MinimumHealthCapacity-1e-9 {
		minHealthy++
	}
	for float64(maxCapacity+1) <= float64(target)*(1+s.MaximumOverCapacity)+1e-9 {
		maxCapacity++
	}
	return minHealthy, maxCapacity
}

// plan runs both planners, checks they agree and that the plan keeps the upgrade's bounds,
// then carries the plan out: kills are marked, starts are new staging instances.
func (a *simApp) plan(t *testing.T, seed int64) {
	t.Helper()
	v := a.view()
	got := PlanApp(a.target, a.strat, a.kill, v)
	want := naivePlan(a.target, a.strat, a.kill, v)
	if len(got.Kill) == 0 {
		got.Kill = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("seed %d: PlanApp and the naive planner differ after %v\ninstances %+v\ntarget %d %+v %s\nPlanApp %+v\nnaive   %+v",
			seed, a.log, v, a.target, a.strat, a.kill, got, want)
	}
	minHealthy, maxCapacity := bounds(a.target, a.strat)
	old, healthy, total := 0, 0, len(v)
	for _, in := range v {
		if !in.New {
			old++
		}
		if in.Healthy && !in.Killing {
			healthy++
		}
	}
	if old > 0 {
		if got.Start > 0 && total+got.Start > maxCapacity {
			t.Fatalf("seed %d: after %v: %d instances and %d started is more than %d allows (%d × (1+%v))",
				seed, a.log, total, got.Start, maxCapacity, a.target, a.strat.MaximumOverCapacity)
		}
		// New instances past the target go by killSelection, health aside, as a scaling does;
		// what the bound holds is the old instances the upgrade kills.
		killedHealthy := 0
		for _, id := range got.Kill {
			switch in := a.find(id); {
			case in.New && in.Healthy:
				healthy--
			case in.Healthy:
				killedHealthy++
			}
		}
		roomKill := len(got.Kill) == 1 && got.Start == 0 && maxCapacity-total <= 0
		if healthy >= minHealthy && healthy-killedHealthy < minHealthy && !roomKill {
			t.Fatalf("seed %d: after %v: the plan %+v takes healthy instances from %d to %d, under %d (%d × %v)",
				seed, a.log, got, healthy, healthy-killedHealthy, minHealthy, a.target, a.strat.MinimumHealthCapacity)
		}
	}
	for _, id := range got.Kill {
		a.find(id).Killing = true
	}
	for range got.Start {
		a.next++
		a.now = a.now.Add(time.Second)
		a.insts = append(a.insts, &PlanInstance{ID: fmt.Sprintf("i%03d", a.next), New: true, StagedAt: a.now})
	}
}

// event makes one random thing happen to the app or its instances.
func (a *simApp) event() {
	r := a.r
	pick := func() *PlanInstance {
		if len(a.insts) == 0 {
			return nil
		}
		return a.insts[r.Intn(len(a.insts))]
	}
	switch k := r.Intn(12); {
	case k == 0: // scale
		a.target = r.Intn(7)
		a.log = append(a.log, fmt.Sprintf("scale %d", a.target))
	case k == 1: // upgrade: every instance is of the old version now
		a.target = r.Intn(7)
		a.strat = randomStrategy(r)
		for _, in := range a.insts {
			in.New = false
		}
		a.log = append(a.log, fmt.Sprintf("upgrade %d %+v", a.target, a.strat))
	case k <= 4: // one runs, or turns healthy
		if in := pick(); in != nil && !in.Killing {
			switch {
			case !in.Running:
				in.Running, in.HealthUnknown = true, r.Intn(3) == 0
			default:
				in.Healthy, in.HealthUnknown = true, false
			}
			a.log = append(a.log, "up "+in.ID)
		}
	case k == 5: // unhealthy
		if in := pick(); in != nil && in.Running {
			in.Healthy, in.HealthUnknown = false, false
			a.log = append(a.log, "unhealthy "+in.ID)
		}
	case k == 6, k == 7: // fails, or turns unreachable long enough to be replaced: gone from the view
		if in := pick(); in != nil {
			a.drop(in.ID)
			a.log = append(a.log, "gone "+in.ID)
		}
	default: // a kill ends
		for _, in := range a.insts {
			if in.Killing {
				a.drop(in.ID)
				a.log = append(a.log, "killed "+in.ID)
				break
			}
		}
	}
}

// settle lets the world behave — kills end, starts run and turn healthy — and says whether
// the app reaches its target with only new, healthy instances.
func (a *simApp) settle(t *testing.T, seed int64) bool {
	for range 200 {
		a.plan(t, seed)
		kept := a.insts[:0]
		for _, in := range a.insts {
			switch {
			case in.Killing:
				continue
			case !in.Running:
				in.Running = true
			default:
				in.Healthy, in.HealthUnknown = true, false
			}
			kept = append(kept, in)
		}
		a.insts = kept
		done := len(a.insts) == a.target
		for _, in := range a.insts {
			done = done && in.New && in.Healthy
		}
		if done {
			return true
		}
	}
	return false
}

// TestPlanAppProperties runs random sequences of scaling, upgrades with random strategies,
// instances turning healthy, unhealthy, failing, unreachable and kills ending; after every
// event it plans, and checks that PlanApp decides as the naive planner does, that no plan
// starts past floor(instances × (1 + maximumOverCapacity)) during an upgrade, that none kills
// old healthy instances below ceil(instances × minimumHealthCapacity) once reached (but for the
// one kill that makes room when the bounds leave none; new instances past the target go by
// killSelection, as in a scaling), and that every sequence, once the world behaves, ends in a
// finished deployment.
func TestPlanAppProperties(t *testing.T) {
	seed := *planSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun with -plan.seed=%d)", seed, seed)
	r := rand.New(rand.NewSource(seed))
	deadline := time.Now().Add(5 * time.Second)
	runs := 0
	for runs = 0; runs < 2000 && time.Now().Before(deadline); runs++ {
		s := r.Int63()
		a := &simApp{r: rand.New(rand.NewSource(s)), target: r.Intn(6), strat: randomStrategy(r), now: time.Unix(0, 0)}
		a.kill = KillYoungestFirst
		if a.r.Intn(2) == 0 {
			a.kill = KillOldestFirst
		}
		for range a.r.Intn(40) {
			a.event()
			a.plan(t, seed)
		}
		if !a.settle(t, seed) {
			t.Fatalf("seed %d: after %v the app never settles: %+v", seed, a.log, a.view())
		}
	}
	t.Logf("%d sequences", runs)
}
