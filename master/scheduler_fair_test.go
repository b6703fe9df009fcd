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

// fill runs two greedy frameworks of the given roles and shapes on simulated agents until the
// cluster is full, and returns their dominant shares as the leader reports them.
func fill(t *testing.T, weights map[string]float64, roles [2]string, shapes [2]resources.Resources, agents int, agent resources.Resources) [2]float64 {
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
	sim.AddAgents(agents, agent)
	// Full: nothing launched for a second, and no offer outstanding (each framework declines
	// what it cannot use at once, so a share is of what its tasks hold).
	last, since := int64(-1), time.Now()
	var shares [2]float64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n := launched.Load(); n != last {
			last, since = n, time.Now()
		}
		fws, err := r.m.sched.FrameworksView()
		if err != nil {
			t.Fatal(err)
		}
		offered := false
		for _, fw := range fws {
			for i := range 2 {
				if fw.Info.ID == ids[i] {
					shares[i] = fw.Share
					offered = offered || !fw.Offered.IsEmpty()
				}
			}
		}
		if time.Since(since) >= time.Second && !offered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not fill within 60s")
		}
	}
	t.Logf("%d tasks; dominant shares %.3f and %.3f", last, shares[0], shares[1])

	return shares
}

// TestDRFThroughTheScheduler: DRF as frameworks see it, through offers, launches on simulated
// agents and status updates. On 100 agents, a cpu-heavy and a mem-heavy framework of roles of
// equal weight end with close dominant shares, both well above the 0.5 whole-agent offers
// left them, and roles weighted 2:1 with shares 2:1. On
// one agent of 4 cpus / 4 GiB, the two shapes (issue 23 item 5: they ended at 0 and 1)
// end where exact DRF does: 18 cpu-heavy tasks (0.90) and 13 memory-heavy ones (0.8125), within
// 5 % but for the cpu-heavy framework's last task, which nothing else could use (see the
// allocator's TestOneAgentIsShared).
func TestDRFThroughTheScheduler(t *testing.T) {
	big := resources.Resources{CPUs: 8, Mem: 16384, Disk: 1000}
	t.Run("one agent", func(t *testing.T) {
		s := fill(t, nil, [2]string{"analytics", "cache"}, [2]resources.Resources{{CPUs: 0.2, Mem: 32}, {CPUs: 0.02, Mem: 256}}, 1, resources.Resources{CPUs: 4, Mem: 4096})
		if d := math.Abs(s[0]-0.05-s[1]) / math.Max(s[0]-0.05, s[1]); d > 0.05 || s[1] < 0.8 {
			t.Fatalf("dominant shares %.3f and %.3f: %.1f%% apart without the last cpu-heavy task", s[0], s[1], d*100)
		}
	})
	// Complementary shapes on many agents. Offers of whole agents ended both at 0.5: each
	// framework took whole agents and stranded what it could not use (the cpu-heavy one all
	// the cpus of its agents, the other's memory with them). Shared offers leave each well
	// above that. The allocator alone brings them within 5 % (allocator's
	// TestHundredAgentsAreShared); through the scheduler a framework's offers count in full
	// until it answers them, and which answers first decided who got what the other left
	// (0.2 % to 11.5 % apart on a loaded machine) until an event-started cycle waited for the
	// last cycle's offers to be answered (scheduler.answerWait): now 1.1 % to 4.6 % at load 3.
	// The bound here stays wider, for make test's load of 10 and more.
	t.Run("the same on 100 agents", func(t *testing.T) {
		s := fill(t, nil, [2]string{"analytics", "cache"}, [2]resources.Resources{{CPUs: 0.2, Mem: 32}, {CPUs: 0.02, Mem: 256}}, 100, resources.Resources{CPUs: 4, Mem: 4096})
		if d := math.Abs(s[0]-s[1]) / math.Max(s[0], s[1]); d > 0.15 || min(s[0], s[1]) < 0.7 {
			t.Fatalf("dominant shares %.3f and %.3f differ by %.1f%%", s[0], s[1], d*100)
		}
	})
	t.Run("equal weights", func(t *testing.T) {
		// The same effects as above: whole agents ended both at 0.5; measured 0.3 % to 11 %
		// apart now, the lower at 0.67 or more.
		s := fill(t, nil, [2]string{"analytics", "cache"}, [2]resources.Resources{{CPUs: 1, Mem: 512}, {CPUs: 0.25, Mem: 2048}}, 100, big)
		if d := math.Abs(s[0]-s[1]) / math.Max(s[0], s[1]); d > 0.15 || min(s[0], s[1]) < 0.6 {
			t.Fatalf("dominant shares %.3f and %.3f differ by %.1f%%", s[0], s[1], d*100)
		}
	})
	t.Run("weights 2:1", func(t *testing.T) {
		s := fill(t, map[string]float64{"gold": 2}, [2]string{"gold", "bronze"}, [2]resources.Resources{{CPUs: 1, Mem: 1024}, {CPUs: 1, Mem: 1024}}, 100, big)
		if ratio := s[0] / s[1]; math.Abs(ratio-2) > 0.1 {
			t.Fatalf("dominant shares %.3f and %.3f: ratio %.3f, want 2 within 5%%", s[0], s[1], ratio)
		}
	})
}
