package agent

import (
	"context"
	"fmt"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/task"
)

// Health checks of running tasks (pkg/health's), and what their verdicts do to a task: a change
// of health is another RUNNING update; too many failures kill it.

type healthState struct {
	cancel  context.CancelFunc
	healthy []*bool // per check; nil until known
}

// startHealthLocked runs the task's health checks, if it has any.
func (ts *taskSet) startHealthLocked(r *record) {
	checks := r.Info.HealthChecks
	if len(checks) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(ts.ctx)
	hs := &healthState{cancel: cancel, healthy: make([]*bool, len(checks))}
	ts.health[r.Info.TaskID] = hs
	taskID, ports := r.Info.TaskID, taskPorts(r.Info)
	started := ts.clock.Now()
	if r.StartedAt != nil {
		started = *r.StartedAt
	}
	for i, c := range checks {
		i := i
		ts.wg.Add(1)
		go func() {
			defer ts.wg.Done()
			health.Run(ctx, health.RunConfig{
				Check:   c,
				Target:  health.Target{TaskID: taskID, Host: "127.0.0.1", Ports: ports, Exec: ts.exec},
				Started: started,
				Clock:   ts.clock,
				OnVerdict: func(v health.Verdict) {
					ts.healthVerdict(ctx, taskID, hs, i, v)
				},
			})
		}()
	}
}

func (ts *taskSet) stopHealthLocked(id string) {
	if hs, ok := ts.health[id]; ok {
		hs.cancel()
		delete(ts.health, id)
	}
}

// healthVerdict folds one check's verdict into the task's health: healthy when every check is.
func (ts *taskSet) healthVerdict(ctx context.Context, id string, hs *healthState, i int, v health.Verdict) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	r := ts.tasks[id]
	if r == nil || r.Status.State != task.Running {
		return
	}
	healthy := v.Status.Healthy
	hs.healthy[i] = &healthy
	if v.Kill {
		c := r.Info.HealthChecks[i]
		r.HealthKill = fmt.Sprintf("killed after %d consecutive failed %s health checks: %s", v.Status.ConsecutiveFailures, c.Protocol, v.Status.LastFailureCause)
		r.Killing, r.KillGrace = true, r.Info.KillGrace().Seconds()
		unhealthy := false
		ts.transitionLocked(r, api.TaskStatus{State: task.Killing, Healthy: &unhealthy, Reason: task.ReasonHealthCheckUpdated, Message: r.HealthKill})
		ts.killLocked(r)
		return
	}
	all := true
	for _, h := range hs.healthy {
		if h == nil {
			return // not all checks have spoken yet
		}
		all = all && *h
	}
	if r.Status.Healthy != nil && *r.Status.Healthy == all {
		return
	}
	st := api.TaskStatus{State: task.Running, Healthy: &all, Reason: task.ReasonHealthCheckUpdated}
	if !all {
		st.Message = v.Status.LastFailureCause
	}
	ts.transitionLocked(r, st)
}
