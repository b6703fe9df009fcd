package agent

import (
	"context"
	"time"

	"github.com/agora-sched/agora/pkg/task"
)

// The container runtime's availability: while it cannot run tasks the agent takes no launch,
// pauses health checks and keeps its tasks' states (doc.go, step 5).

// runtimeUnavailable says why the container runtime cannot run tasks now, or "".
func (ts *taskSet) runtimeUnavailable() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.unavailable
}

// launchesRefused is how many launches were refused while the runtime was unavailable.
func (ts *taskSet) launchesRefused() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refused
}

// runtimeChanged takes in whether the container runtime can run tasks: why it cannot, or ""
// once it can again. While it cannot, launches are refused and health checks pause (a check
// that runs a command in the task would fail, and count against a task that runs on); the
// tasks keep their states: the executor delivers no end it has not seen. When it can again,
// the paused health checks run again, and kills asked for meanwhile are sent again.
func (ts *taskSet) runtimeChanged(why string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	was := ts.unavailable
	ts.unavailable = why
	switch {
	case was == "" && why != "":
		for id := range ts.health {
			ts.stopHealthLocked(id)
		}
	case was != "" && why == "":
		for id, r := range ts.tasks {
			if _, held := ts.handles[id]; !held || r.Status.State.IsTerminal() {
				continue
			}
			if r.Killing {
				ts.killLocked(r)
			} else if r.Status.State == task.Running && ts.health[id] == nil {
				ts.startHealthLocked(r)
			}
		}
	}
}

// runtimeChecker is an executor that can say whether it can run tasks now (agent/containerd's:
// containerd answers, and every task is attached): nil, or an error saying why not.
type runtimeChecker interface {
	Available(ctx context.Context) error
}

// watchRuntime asks the executor, every RuntimeCheckEvery, whether it can run tasks, until
// ctx ends. When it cannot (containerd does not answer, or has not been re-attached to every
// task since it came back), the agent refuses launches, answers /health with 503 and the
// reason, pauses health checks and tells the masters, through gossip, to offer none of it;
// its tasks keep their states. When it can again, all of that is undone.
func (a *Agent) watchRuntime(ctx context.Context) {
	rc, ok := a.exec.(runtimeChecker)
	if !ok {
		return
	}
	var since time.Time
	for {
		err := rc.Available(ctx)
		if ctx.Err() != nil {
			return
		}
		why := ""
		if err != nil {
			why = err.Error()
		}
		if was := a.tasks.runtimeUnavailable(); why != was {
			a.tasks.runtimeChanged(why)
			switch {
			case was == "":
				since = a.cfg.Clock.Now()
				a.logger.Warn("container runtime unavailable: refusing launches, tasks kept as they are", "why", why)
			case why == "":
				a.logger.Info("container runtime available again: tasks re-attached, taking launches", "after", a.cfg.Clock.Now().Sub(since).Round(time.Millisecond))
			}
			if err := a.updateMeta(); err != nil {
				a.logger.Warn("tell the masters whether this agent takes tasks", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Clock.After(a.cfg.RuntimeCheckEvery):
		}
	}
}
