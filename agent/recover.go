package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// Recovery at start: the checkpoint's tasks matched with their containers (doc.go, step 2).

// recover loads the checkpoint and re-attaches to what still runs. It runs once, before the
// agent takes requests.
func (ts *taskSet) recover(ctx context.Context) error {
	began := time.Now()
	saved, err := ts.store.Tasks()
	if err != nil {
		return fmt.Errorf("agent: read checkpoint: %w", err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var live []string
	for id, b := range saved {
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("agent: checkpointed task %s: %w", id, err)
		}
		ts.tasks[id] = &r
		if !r.Status.State.IsTerminal() {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	found, orphans, err := ts.exec.Recover(ctx, live)
	if err != nil {
		return fmt.Errorf("agent: recover containers: %w", err)
	}
	switch {
	case len(orphans) > 0 && len(saved) == 0:
		// A data dir without a checkpoint beside containers of this namespace: the data dir
		// was lost (or replaced) under a running agent. Its containers belong to no task this
		// agent can report; the masters end the old agent's tasks when this one registers from
		// the same hostname and API address, so there is nothing to tell them here.
		ts.logger.Warn("empty checkpoint (a new data dir, or a lost one): removed every container of this agent's containerd namespace, none of them a task of this agent; they were an earlier agent's on this host, whose tasks the masters end when this agent registers from the same hostname and API address",
			"removed", len(orphans), "containers", orphans)
	default:
		for _, id := range orphans {
			ts.logger.Warn("removed a container no task of this agent knows", "container", id)
		}
	}
	for _, f := range found {
		r := ts.tasks[f.TaskID]
		switch {
		case f.Handle != nil:
			ts.handles[f.TaskID] = f.Handle
			if r.Status.State == task.Starting && !r.Killing {
				now := ts.clock.Now().UTC()
				r.StartedAt = &now
				ts.transitionLocked(r, api.TaskStatus{State: task.Running})
			}
			if r.Killing {
				ts.killLocked(r)
			} else {
				ts.startHealthLocked(r)
			}
			ts.logger.Info("re-attached", "task", f.TaskID, "state", r.Status.State)
			ts.wg.Add(1)
			go func(id string, h *containerd.Handle) {
				defer ts.wg.Done()
				ts.watch(id, h)
			}(f.TaskID, f.Handle)
		case f.Exit != nil:
			ts.wg.Add(1)
			go func(id string, ex containerd.Exit) {
				defer ts.wg.Done()
				ts.finish(id, ex)
			}(f.TaskID, *f.Exit)
		case r.Exit != nil:
			// It ended and its container was removed, but the agent stopped before reporting.
			ts.transitionLocked(r, ts.exitStatusLocked(r, *r.Exit))
		default: // missing
			st := api.TaskStatus{State: task.Failed, Reason: task.ReasonExecutorTerminated,
				Message: "the task's container is gone: it ended while the agent was down, or was removed by hand"}
			if r.Status.State == task.Starting {
				st.Reason, st.Message = task.ReasonContainerLaunchFailed, "the agent stopped while launching the task; it never ran"
			}
			if r.Killing {
				st.State = task.Killed
			}
			ts.transitionLocked(r, st)
		}
	}
	ts.logger.Info("recovered the checkpoint's tasks", "tasks", len(saved), "re-attached", len(ts.handles), "took", time.Since(began).Round(time.Millisecond))
	return nil
}
