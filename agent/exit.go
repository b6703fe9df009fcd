package agent

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// A task's end: its exit checkpointed, its container removed (waiting for containerd when it is
// away, and ending a shim it lost), then the end reported as what the exit means.

// watch waits for a task's process to end and reports how. The exit is checkpointed first, then
// the container removed (which copies the last of its output into its log files), and only then
// is the end reported: whoever reads the logs after seeing the end gets all of them, and a crash
// in between loses no exit status.
func (ts *taskSet) watch(id string, h *containerd.Handle) {
	var ex containerd.Exit
	select {
	case ex = <-h.Done():
	case <-ts.ctx.Done():
		return // the agent stops; its tasks run on, and the restarted agent re-attaches
	}
	ts.mu.Lock()
	r := ts.tasks[id]
	ts.stopHealthLocked(id)
	delete(ts.handles, id)
	r.Exit = &ex
	data, err := ts.saveLocked(r)
	if err == nil {
		err = ts.store.SaveTask(id, data)
	}
	ts.mu.Unlock()
	if err != nil {
		ts.logger.Error("checkpoint a task's exit", "task", id, "err", err)
	}
	ts.finish(id, ex)
}

// finish removes an ended task's container and reports its end.
func (ts *taskSet) finish(id string, ex containerd.Exit) {
	if removed, _ := ts.removeContainer(id); !removed {
		return // the agent stops: the restarted one finds the exit checkpointed
	}
	if ex.Vanished {
		ts.reapLostShim(id) // containerd lost the task: its shim may run on
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r := ts.tasks[id]
	ts.transitionLocked(r, ts.exitStatusLocked(r, ex))
}

// removeContainer removes a task's container, and tries again while containerd does not answer
// (what is not removed would run or linger owned by nothing); when it had to wait, it also
// ends a shim of the task that the restarted containerd lost. It answers whether it is done
// (not when the agent stops first; other failures are logged, and count as done), and whether
// it had to wait for containerd.
func (ts *taskSet) removeContainer(id string) (done, waited bool) {
	delay := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ts.ctx), 30*time.Second)
		err := ts.exec.Remove(ctx, id)
		cancel()
		if err == nil {
			if waited {
				ts.reapLostShim(id) // containerd was away around the task's end
			}
			return true, waited
		}
		if !containerd.Unavailable(err) {
			ts.logger.Warn("remove container; trying again in the background", "task", id, "err", err)
			ts.removeLater(id)
			return true, waited
		}
		waited = true
		select {
		case <-ts.ctx.Done():
			return false, waited
		case <-ts.clock.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// removeLater tries again, every removeRetry for removeFor, to remove a task's container that
// containerd failed to remove for another reason than being away — a full disk, say: the task
// has ended and is reported so, and what is left of it must not linger owned by nothing.
func (ts *taskSet) removeLater(id string) {
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for end := ts.clock.Now().Add(removeFor); ts.clock.Now().Before(end); {
			select {
			case <-ts.ctx.Done():
				return // a restarted agent removes what no checkpointed task owns
			case <-ts.clock.After(removeRetry):
			}
			ctx, cancel := context.WithTimeout(ts.ctx, 30*time.Second)
			err := ts.exec.Remove(ctx, id)
			cancel()
			if err == nil {
				ts.logger.Info("container removed at last", "task", id)
				return
			}
		}
		ts.logger.Error("container not removed; an agent restart removes it", "task", id)
	}()
}

// How removeLater tries again.
const (
	removeRetry = 2 * time.Second
	removeFor   = 10 * time.Minute
)

// shimReaper is an executor that can end the shim of a task its containerd lost
// (agent/containerd's ReapLostShim).
type shimReaper interface {
	ReapLostShim(ctx context.Context, id string) (int, error)
}

// reapLostShim ends what containerd, killed while it created the task's container, may have
// lost track of and left running: the container is removed, so a shim of it is a leak. It is
// only a look through /proc when there is none.
func (ts *taskSet) reapLostShim(id string) {
	r, ok := ts.exec.(shimReaper)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ts.ctx), 30*time.Second)
	defer cancel()
	if _, err := r.ReapLostShim(ctx, id); err != nil {
		ts.logger.Warn("end a shim containerd lost", "task", id, "err", err)
	}
}

// exitStatusLocked says what an ended process means for its task.
func (ts *taskSet) exitStatusLocked(r *record, ex containerd.Exit) api.TaskStatus {
	code := int(ex.Code)
	st := api.TaskStatus{ExitStatus: &code}
	switch {
	case ex.Vanished:
		st.ExitStatus = nil
		st.State, st.Reason = task.Failed, task.ReasonExecutorTerminated
		st.Message = "the task's container is gone, and its exit status with it (it ended while the agent or containerd was down, and its shim is gone too)"
	case r.HealthKill != "":
		unhealthy := false
		st.State, st.Reason, st.Healthy = task.Killed, task.ReasonHealthCheckUpdated, &unhealthy
		st.Message = r.HealthKill
	case r.Killing:
		st.State, st.Message = task.Killed, "killed on request"
		if code == 128+int(syscall.SIGKILL) {
			st.Message = fmt.Sprintf("killed on request: SIGKILL after the %gs grace period", r.KillGrace)
		}
	case ex.OOMKilled:
		st.State, st.Reason = task.Failed, task.ReasonContainerLimitationMem
		st.Message = fmt.Sprintf("container OOM-killed (memory limit %g MiB)", r.Info.Resources.Mem)
	case code == 0:
		st.State, st.Message = task.Finished, "exited with status 0"
	case code > 128:
		st.State, st.Reason = task.Failed, task.ReasonCommandExecutorFailed
		st.Message = fmt.Sprintf("exited with status %d (killed by signal %d)", code, code-128)
	default:
		st.State, st.Reason = task.Failed, task.ReasonCommandExecutorFailed
		st.Message = fmt.Sprintf("exited with status %d", code)
	}
	return st
}
