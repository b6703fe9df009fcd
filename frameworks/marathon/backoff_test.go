package marathon

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/task"
)

// beside is the planner of a service without I/O (as step runs it, on a fake clock) with an
// app "/web" of 2 (of the extra fields given) and its first instance running for an hour.
func beside(tb testing.TB, fields string) (*Service, *leaderState, *appState, *clock.Fake) {
	tb.Helper()
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	svc := &Service{cfg: Config{Clock: clk, Logger: slog.New(slog.DiscardHandler)}, logger: slog.New(slog.DiscardHandler), bus: newEventBus(), wake: make(chan struct{}, 1)}
	as, err := appStateOf([]byte(`{"id": "/web", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 2, ` + fields + `,
		"version": "v1", "versionInfo": {"lastConfigChangeAt": "v1", "lastScalingAt": "v1"}}`))
	if err != nil {
		tb.Fatal(err)
	}
	st := newLeaderState(nil)
	st.apps["/web"] = as
	started := clk.Now().Add(-time.Hour)
	st.add(&instance{rec: InstanceRecord{ID: "web.old", AppID: "/web", Version: "v1", AgentID: "a1", StagedAt: started},
		state: task.Running, reconciled: true, startedAt: &started})
	svc.st = st
	return svc, st, as, clk
}

// TestFailedLaunchesBackOffBesideARunningInstance is the spin of issue 18: an app of 2 whose
// first instance has run for an hour, and whose second is refused by its agent at every
// launch (TASK_ERROR, TASK_FAILED before TASK_RUNNING, TASK_DROPPED alike). The instance that
// runs must not start the backoff over — it was not launched after the failures, so it proves
// nothing about them: the launches grow apart by backoffSeconds × backoffFactor^n and stop
// growing at maxLaunchDelaySeconds, over a minute of the planner's time in 100 ms steps.
func TestFailedLaunchesBackOffBesideARunningInstance(t *testing.T) {
	for _, failure := range []task.State{task.Error, task.Failed, task.Dropped} {
		t.Run(string(failure), func(t *testing.T) {
			_, st, as, clk := beside(t, `"backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 16`)

			var launches []time.Time
			for step := 0; step < 600; step++ {
				clk.Advance(100 * time.Millisecond)
				now := clk.Now()
				st.decide(now, true, "*")
				// useOffer: an offer comes at every step; it launches what waits and may launch now.
				if !st.waiting["/web"] || as.want == 0 || now.Before(as.delayUntil) {
					continue
				}
				id := fmt.Sprintf("web.new-%d", len(launches))
				st.add(&instance{rec: InstanceRecord{ID: id, AppID: "/web", Version: "v1", AgentID: "a2", StagedAt: now}, state: task.Staging, reconciled: true})
				launches = append(launches, now)
				as.want--
				// The agent refuses it at once.
				st.observe(api.TaskStatus{TaskID: id, State: failure, Message: "refused", Timestamp: now}, now)
			}
			// 1, 2, 4, 8, 16, 16, 16: launches at 0, 1, 3, 7, 15, 31, 47 s of the minute.
			if len(launches) != 7 {
				t.Fatalf("%d launches in a minute, want 7 (backoff 1 s doubling up to 16 s): %v", len(launches), gaps(launches))
			}
			for i := 1; i < len(launches); i++ {
				want := LaunchDelay(as.app, i)
				if got := launches[i].Sub(launches[i-1]); got < want || got > want+100*time.Millisecond {
					t.Fatalf("launch %d came %s after the one before, want %s (the backoff after %d failures): %v", i, got, want, i, gaps(launches))
				}
			}
			if as.failures != 7 || as.lastFail == nil || as.lastFail.State != string(failure) {
				t.Fatalf("failures %d, lastTaskFailure %+v", as.failures, as.lastFail)
			}
			if n := len(st.appInstances("/web")); n != 1 {
				t.Fatalf("%d instances kept, want the running one (failed ones are forgotten)", n)
			}

			// An instance launched after the failures that runs for backoffResetAfter starts it over.
			now := clk.Now()
			st.add(&instance{rec: InstanceRecord{ID: "web.good", AppID: "/web", Version: "v1", AgentID: "a3", StagedAt: now}, state: task.Running, reconciled: true, startedAt: &now})
			clk.Advance(backoffResetAfter)
			st.decide(clk.Now(), true, "*")
			if as.failures != 0 {
				t.Fatalf("after an instance launched since ran %s: %d failures, want the backoff started over", backoffResetAfter, as.failures)
			}
		})
	}
}

// gaps are the first dozen times between launches.
func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts) && i <= 12; i++ {
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}
