package marathon

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// upgrade drives PlanApp through a whole rolling upgrade of target instances: a kill takes two
// rounds to end, a start one round to run and one more to be healthy. It returns the fewest
// healthy and the most instances seen between rounds, and the rounds it took.
func upgrade(t *testing.T, target, running int, strat UpgradeStrategy) (minHealthy, maxTotal, rounds int) {
	t.Helper()
	type inst struct {
		PlanInstance
		dying int // rounds a kill has been under way; it ends after two
	}
	var insts []*inst
	for i := range running {
		insts = append(insts, &inst{PlanInstance: PlanInstance{ID: fmt.Sprint("old-", i), Running: true, Healthy: true, StagedAt: time.Unix(int64(i), 0)}})
	}
	next := 0
	minHealthy, maxTotal = math.MaxInt, 0
	for rounds = 1; rounds < 100; rounds++ {
		// The world moves: kills end, new instances run, then turn healthy.
		kept := insts[:0]
		for _, in := range insts {
			switch {
			case in.Killing:
				if in.dying++; in.dying >= 2 {
					continue // a kill takes two rounds: the planner sees instances still dying
				}
			case in.New && !in.Running:
				in.Running = true
			case in.New && !in.Healthy:
				in.Healthy = true
			}
			kept = append(kept, in)
		}
		insts = kept
		healthy := 0
		for _, in := range insts {
			if in.Healthy && !in.Killing {
				healthy++
			}
		}
		minHealthy, maxTotal = min(minHealthy, healthy), max(maxTotal, len(insts))
		var view []PlanInstance
		for _, in := range insts {
			view = append(view, in.PlanInstance)
		}
		done := len(insts) == target
		for _, in := range insts {
			done = done && in.New && in.Healthy
		}
		if done {
			return minHealthy, maxTotal, rounds
		}
		p := PlanApp(target, strat, KillYoungestFirst, view)
		for _, id := range p.Kill {
			for _, in := range insts {
				if in.ID == id {
					if in.Killing {
						t.Fatalf("%s killed twice", id)
					}
					in.Killing, in.Healthy = true, false
				}
			}
		}
		for range p.Start {
			insts = append(insts, &inst{PlanInstance: PlanInstance{ID: fmt.Sprint("new-", next), New: true, StagedAt: time.Unix(int64(1000+next), 0)}})
			next++
		}
		// Counted right after the moves too: starts add to the total at once.
		maxTotal = max(maxTotal, len(insts))
		healthy = 0
		for _, in := range insts {
			if in.Healthy && !in.Killing {
				healthy++
			}
		}
		minHealthy = min(minHealthy, healthy)
	}
	t.Fatalf("%v: no end after 100 rounds: %d instances", strat, len(insts))
	return
}

// TestRollingUpgradeBounds: Marathon's documented cases. Between rounds the healthy count never
// goes under ceil(min × n) (but for 1/0, where Marathon too kills one first) and the total never
// over floor((1 + over) × n).
func TestRollingUpgradeBounds(t *testing.T) {
	for _, c := range []struct {
		target         int
		min, over      float64
		wantMinHealthy int
		wantMaxTotal   int
	}{
		{10, 0, 0, 0, 10},
		{10, 1, 0, 9, 10}, // no room: one old instance goes first, as in Marathon
		{10, 0.5, 0.2, 5, 12},
		{10, 1, 1, 10, 20},
		{10, 0.5, 0, 5, 10},
		{3, 1, 0.5, 3, 4},
		{1, 1, 0, 0, 1},
		{1, 0, 1, 0, 2},
		{5, 0.8, 0.2, 4, 6},
	} {
		t.Run(fmt.Sprintf("n=%d/min=%v/over=%v", c.target, c.min, c.over), func(t *testing.T) {
			minH, maxT, rounds := upgrade(t, c.target, c.target, UpgradeStrategy{MinimumHealthCapacity: c.min, MaximumOverCapacity: c.over})
			if minH < c.wantMinHealthy {
				t.Errorf("healthy dropped to %d, want at least %d", minH, c.wantMinHealthy)
			}
			if maxT > c.wantMaxTotal {
				t.Errorf("total rose to %d, want at most %d", maxT, c.wantMaxTotal)
			}
			t.Logf("%d rounds, min healthy %d, max total %d", rounds, minH, maxT)
		})
	}
}

func TestScaleUpAndDown(t *testing.T) {
	now := time.Unix(100, 0)
	var insts []PlanInstance
	for i := range 5 {
		insts = append(insts, PlanInstance{ID: fmt.Sprint(i), New: true, Running: i != 2, Healthy: i != 2, StagedAt: now.Add(time.Duration(i) * time.Second)})
	}
	if p := PlanApp(8, UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1}, KillYoungestFirst, insts); p.Start != 3 || len(p.Kill) != 0 {
		t.Fatalf("scale up: %+v", p)
	}
	// Down to 2: the one not running goes first, then the youngest.
	if p := PlanApp(2, UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1}, KillYoungestFirst, insts); fmt.Sprint(p.Kill) != "[2 4 3]" || p.Start != 0 {
		t.Fatalf("scale down, youngest first: %+v", p)
	}
	if p := PlanApp(2, UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1}, KillOldestFirst, insts); fmt.Sprint(p.Kill) != "[2 0 1]" {
		t.Fatalf("scale down, oldest first: %+v", p)
	}
	// Instances being killed are not killed again, and do not count as running.
	insts[4].Killing = true
	if p := PlanApp(3, UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1}, KillYoungestFirst, insts); fmt.Sprint(p.Kill) != "[2]" {
		t.Fatalf("with one being killed: %+v", p)
	}
}

// TestUnknownIsNeitherHealthyNorKilledAsUnhealthy: an unreconciled instance stops every move of
// its app; an instance of unknown health is not counted healthy, and not killed as unhealthy.
func TestUnknownIsNeitherHealthyNorKilledAsUnhealthy(t *testing.T) {
	strat := UpgradeStrategy{MinimumHealthCapacity: 0.5, MaximumOverCapacity: 0}
	at := func(i int) time.Time { return time.Unix(int64(i), 0) }
	for _, c := range []struct {
		name  string
		insts []PlanInstance
		want  string
	}{
		{"unreconciled old and new", []PlanInstance{
			{ID: "o1", Unreconciled: true, StagedAt: at(1)}, {ID: "o2", Running: true, Healthy: true, StagedAt: at(2)},
			{ID: "n1", New: true, Unreconciled: true, StagedAt: at(3)},
		}, "{Kill:[] Start:0}"},
		{"one unreconciled, room to start", []PlanInstance{{ID: "n1", New: true, Unreconciled: true}}, "{Kill:[] Start:0}"},
		{"unknown health is spared while too few are healthy", []PlanInstance{
			{ID: "o1", Running: true, Healthy: true, StagedAt: at(1)}, {ID: "o2", Running: true, HealthUnknown: true, StagedAt: at(2)},
			{ID: "n1", New: true, Running: true, HealthUnknown: true, StagedAt: at(3)},
		}, "{Kill:[] Start:0}"},
		{"known unhealthy goes first, unknown after", []PlanInstance{
			{ID: "o1", Running: true, Healthy: true, StagedAt: at(1)}, {ID: "o2", Running: true, HealthUnknown: true, StagedAt: at(2)},
			{ID: "o3", Running: true, StagedAt: at(3)}, {ID: "n1", New: true, Running: true, Healthy: true, StagedAt: at(4)},
			{ID: "n2", New: true, Running: true, Healthy: true, StagedAt: at(5)},
		}, "{Kill:[o3 o2] Start:0}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fmt.Sprintf("%+v", PlanApp(3, strat, KillYoungestFirst, c.insts)); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}
