package marathon

import (
	"math"
	"sort"
	"time"
)

// PlanInstance is what the planner needs of one instance of an app.
type PlanInstance struct {
	ID      string
	New     bool // of the app's current version
	Running bool // its task runs
	Healthy bool // running, and healthy (and ready) if the app checks health
	// HealthUnknown: it runs, but no health check has spoken yet. It does not count as
	// healthy, nor is it killed as an unhealthy one: it may well be healthy.
	HealthUnknown bool
	// Unreconciled: loaded by a new leader (or a restarted framework) and not reconciled since:
	// whether it runs, and how healthy it is, are unknown. Its app gets no move until it is.
	Unreconciled bool
	Killing      bool // asked to stop; it still takes room until it has ended
	StagedAt     time.Time
}

// Plan is what to do now: instances to kill and how many new ones to start.
type Plan struct {
	Kill  []string
	Start int
}

// PlanApp decides, without I/O, the next moves that bring an app's instances to target of its
// current version, as Marathon's rolling upgrade does:
//
//   - never fewer than ceil(minimumHealthCapacity × target) healthy instances, old and new, on
//     purpose (failures can always take more);
//   - never more than floor((1 + maximumOverCapacity) × target) instances in all, counting
//     those still being killed;
//   - a new instance counts only once healthy;
//   - an instance of unknown health counts as not healthy, yet is killed only as a healthy one
//     would be (it may be healthy);
//   - nothing at all while an instance is unreconciled (after a failover): what it is, and
//     so what either bound allows, is unknown;
//   - when the two bounds leave no room at all (minimumHealthCapacity 1 with
//     maximumOverCapacity 0), one old instance is killed to make some, as Marathon does.
//
// Without old instances (live or still dying) it only scales: it starts what is missing and kills the surplus in the
// killSelection order (instances that do not run yet go first).
//
// Called again whenever anything changed, it returns the next moves; a finished app gets an
// empty plan.
func PlanApp(target int, strat UpgradeStrategy, killSelection string, insts []PlanInstance) Plan {
	for _, in := range insts {
		if in.Unreconciled {
			return Plan{}
		}
	}
	var old, nw []PlanInstance
	total := len(insts)
	dying, oldDying := 0, 0 // instances being killed; they take room until they have ended
	for _, in := range insts {
		if in.Killing {
			dying++
			if !in.New {
				oldDying++
			}
			continue
		}
		if in.New {
			nw = append(nw, in)
		} else {
			old = append(old, in)
		}
	}
	var p Plan
	if len(nw) > target {
		ordered := orderForKill(nw, killSelection)
		for _, in := range ordered[:len(nw)-target] {
			p.Kill = append(p.Kill, in.ID)
		}
		nw = ordered[len(nw)-target:]
	}
	if len(old) == 0 && oldDying == 0 {
		if missing := target - len(nw); missing > 0 {
			p.Start = missing
		}
		return p
	}

	minHealthy := int(math.Ceil(float64(target)*strat.MinimumHealthCapacity - 1e-9))
	maxCapacity := int(math.Floor(float64(target)*(1+strat.MaximumOverCapacity) + 1e-9))
	healthy := 0
	for _, in := range append(append([]PlanInstance(nil), old...), nw...) {
		if in.Healthy {
			healthy++
		}
	}
	// Old instances go, unhealthy ones first (they hold nothing up), as long as enough healthy
	// ones stay; all of them once the new ones are enough. One of unknown health is spared as
	// a healthy one is.
	ordered := orderForKill(old, killSelection)
	mayBeHealthy := func(in PlanInstance) bool { return in.Healthy || in.HealthUnknown }
	sort.SliceStable(ordered, func(i, j int) bool { return !mayBeHealthy(ordered[i]) && mayBeHealthy(ordered[j]) })
	canLose := healthy - minHealthy
	killed := 0
	for _, in := range ordered {
		if mayBeHealthy(in) {
			if canLose <= 0 {
				break
			}
			canLose--
		}
		p.Kill = append(p.Kill, in.ID)
		killed++
	}
	room := maxCapacity - total
	missing := target - len(nw)
	p.Start = max(0, min(missing, room))
	if len(p.Kill) == 0 && p.Start == 0 && dying == 0 && killed < len(old) && pendingNone(nw) {
		// No room to start and no healthy instance to spare: make room with one old instance.
		p.Kill = append(p.Kill, ordered[0].ID)
	}
	return p
}

// pendingNone says that every new instance is healthy: nothing is on its way to help.
func pendingNone(nw []PlanInstance) bool {
	for _, in := range nw {
		if !in.Healthy {
			return false
		}
	}
	return true
}

// orderForKill sorts instances in the order they are killed: those not running first, then the
// youngest (YOUNGEST_FIRST, the default) or the oldest.
func orderForKill(insts []PlanInstance, killSelection string) []PlanInstance {
	out := append([]PlanInstance(nil), insts...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Running != out[j].Running {
			return !out[i].Running
		}
		if killSelection == KillOldestFirst {
			return out[i].StagedAt.Before(out[j].StagedAt)
		}
		return out[i].StagedAt.After(out[j].StagedAt)
	})
	return out
}
