package master

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

// greedy runs a framework that fills every offer with tasks of one shape, declines what is
// left for an hour (that agent is full for it) and acknowledges every update, until ctx ends.
func greedy(ctx context.Context, t *testing.T, ss *Session, shape resources.Resources, launched *atomic.Int64) {
	n := 0
	for {
		ev, err := ss.Next(ctx)
		if err != nil {
			return
		}
		switch ev.Type {
		case api.EventOffers:
			for _, o := range ev.Offers.Offers {
				var infos []api.TaskInfo
				left := o.Resources
				for left.Contains(shape) {
					infos = append(infos, api.TaskInfo{TaskID: fmt.Sprintf("%s-%d", ss.FrameworkID(), n), Cmd: "sleep 1000", Resources: shape})
					left, _ = left.Subtract(shape)
					n++
				}
				launched.Add(int64(len(infos)))
				if err := ss.Accept([]string{o.ID}, launch(infos...), refuse(3600)); err != nil {
					t.Error(err)
				}
			}
		case api.EventUpdate:
			if ev.Update.Status.UUID != "" {
				ss.Acknowledge(ev.Update.Status)
			}
		}
	}
}

// fill runs two greedy frameworks of the given roles and shapes on 100 simulated agents until
// the cluster is full, and returns their dominant shares as the leader reports them.
func fill(t *testing.T, weights map[string]float64, roles [2]string, shapes [2]resources.Resources) [2]float64 {
	t.Helper()
	sim := &mastertest.SimulatedAgents{}
	r := startMasterConfig(t, Config{DataDir: t.TempDir(), Scheduler: SchedulerConfig{Agents: sim, AllocationInterval: 20 * time.Millisecond, RoleWeights: weights}})
	waitUntil(t, "the scheduler", 15*time.Second, func() bool {
		return schedulerReady(r.m)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var launched atomic.Int64
	var ids [2]string
	for i := range 2 {
		ss, err := r.m.Subscribe(ctx, api.FrameworkInfo{Name: fmt.Sprint("fw", i), Role: roles[i]})
		if err != nil {
			t.Fatal(err)
		}
		defer ss.Close()
		ids[i] = ss.FrameworkID()
		go greedy(ctx, t, ss, shapes[i], &launched)
	}
	// The agents come once both frameworks are there: DRF shares out what both may want, it
	// does not take back what one was offered before the other subscribed.
	sim.AddAgents(100, resources.Resources{CPUs: 8, Mem: 16384, Disk: 1000})
	// Full: nothing launched for a second.
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(60 * time.Second); time.Since(since) < time.Second; time.Sleep(50 * time.Millisecond) {
		if n := launched.Load(); n != last {
			last, since = n, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not fill within 60s")
		}
	}
	fws, err := r.m.sched.FrameworksView()
	if err != nil {
		t.Fatal(err)
	}
	var shares [2]float64
	for _, fw := range fws {
		for i := range 2 {
			if fw.Info.ID == ids[i] {
				shares[i] = fw.Share
			}
		}
	}
	t.Logf("%d tasks; dominant shares %.3f and %.3f", last, shares[0], shares[1])
	return shares
}

// TestDRFThroughTheScheduler: DRF as frameworks see it, through offers, launches on simulated
// agents and status updates. A cpu-heavy and a mem-heavy framework of roles of equal weight end
// with dominant shares within 5%; roles weighted 2:1 end with shares 2:1.
func TestDRFThroughTheScheduler(t *testing.T) {
	t.Run("equal weights", func(t *testing.T) {
		s := fill(t, nil, [2]string{"analytics", "cache"}, [2]resources.Resources{{CPUs: 1, Mem: 512}, {CPUs: 0.25, Mem: 2048}})
		if d := math.Abs(s[0]-s[1]) / math.Max(s[0], s[1]); d > 0.05 || s[0] < 0.4 {
			t.Fatalf("dominant shares %.3f and %.3f differ by %.1f%%", s[0], s[1], d*100)
		}
	})
	t.Run("weights 2:1", func(t *testing.T) {
		s := fill(t, map[string]float64{"gold": 2}, [2]string{"gold", "bronze"}, [2]resources.Resources{{CPUs: 1, Mem: 1024}, {CPUs: 1, Mem: 1024}})
		if ratio := s[0] / s[1]; math.Abs(ratio-2) > 0.1 {
			t.Fatalf("dominant shares %.3f and %.3f: ratio %.3f, want 2 within 5%%", s[0], s[1], ratio)
		}
	})
}
