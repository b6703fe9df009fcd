package chronos

import (
	"fmt"
	"sort"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// offsetClock is real time moved by a fixed offset: the benchmark puts a minute boundary a few
// seconds ahead instead of waiting for one. Lags measured with it are real durations.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time                         { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// BenchmarkTenThousandMinutelyJobs: 10,000 jobs each due every minute ("* * * * *", all at the
// same instant) on 1,000 simulated agents, through a real master (raft on bbolt). It reports
// the scheduling lag (task launch − scheduled time) p50 and p99 over the 10,000 runs of one
// tick, the process's CPU seconds from the tick until every run has ended (launches, status
// updates, successes), and its CPU use in the quiet between ticks. Target: p99 ≤ 1 s.
func BenchmarkTenThousandMinutelyJobs(b *testing.B) {
	const jobs = 10_000
	simTick = time.Second // the default: what a master runs with
	defer func() { simTick = 20 * time.Millisecond }()
	for range b.N {
		clk := &offsetClock{}
		now := time.Now()
		boundary := now.Truncate(time.Minute).Add(time.Minute)
		clk.off.Store(int64(boundary.Add(-15 * time.Second).Sub(now))) // 15 s before a tick
		c := startSim(b, b.TempDir(), clk, func(api.TaskInfo) (task.State, time.Duration) { return task.Finished, 2 * time.Second })
		c.sim.AddAgents(1000, resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000})
		// The jobs go in 1,000 to a raft batch: the API's one write per job is not what is measured.
		for start := 0; start < jobs; start += 1000 {
			err := c.svc.change(b.Context(), func(st *leaderState, w *work, now time.Time) error {
				for i := start; i < start+1000; i++ {
					j := &Job{ID: fmt.Sprintf("job-%05d", i), Run: RunSpec{Cmd: "x", CPUs: 0.1, Mem: 32},
						Schedules: []Schedule{{ID: "m", Cron: "* * * * *"}}}
					if err := j.Normalize(); err != nil {
						return err
					}
					if err := c.svc.putJobLocked(st, j, true, w, now); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		tick := clk.Now().Truncate(time.Minute).Add(time.Minute)
		b.Logf("%d jobs in; the tick is %s away", jobs, time.Until(tick.Add(-time.Duration(clk.off.Load()))).Round(time.Millisecond))
		time.Sleep(time.Until(tick.Add(-time.Duration(clk.off.Load()))))
		b.ResetTimer()
		tickCPU := cpuTime()
		var lags []time.Duration
		waitLaunched := func() bool {
			c.svc.mu.Lock()
			defer c.svc.mu.Unlock()
			lags = lags[:0]
			for _, js := range c.svc.st.jobs {
				for _, r := range js.runs {
					if r.ScheduledAt != nil && r.ScheduledAt.Equal(tick) && len(r.Tasks) > 0 {
						lags = append(lags, r.Tasks[0].LaunchedAt.Sub(tick))
					}
				}
			}
			return len(lags) == jobs
		}
		for deadline := time.Now().Add(60 * time.Second); !waitLaunched(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d runs launched within 60 s of the tick", len(lags), jobs)
			}
		}
		b.StopTimer()
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		p50, p99 := lags[len(lags)/2], lags[len(lags)*99/100]
		// The quiet between ticks: every run has ended; 10 s of the process's CPU.
		waitFor(b, "every run to end", func() bool {
			c.svc.mu.Lock()
			defer c.svc.mu.Unlock()
			return len(c.svc.st.active) == 0
		})
		busy := cpuTime() - tickCPU // from the tick until every run has ended
		cpu0, t0 := cpuTime(), time.Now()
		time.Sleep(10 * time.Second)
		idle := float64(cpuTime()-cpu0) / float64(time.Since(t0))
		b.ReportMetric(float64(p50.Milliseconds()), "p50-lag-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "p99-lag-ms")
		b.ReportMetric(idle*100, "idle-cpu-%")
		b.ReportMetric(busy.Seconds(), "tick-cpu-s")
		c.stop()
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
