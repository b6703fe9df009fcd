package agent

import (
	"slices"
	"sort"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// The tasks the agent lists: acknowledged updates let ended tasks leave the checkpoint, the last
// keepEnded of them stay listed (of failed launches the latest per framework and name), and the
// views the API, registrations and metrics read.

// keepEnded is how many ended tasks the agent still lists once their updates are acknowledged
// (the checkpoint keeps none of them). Of the launches that failed (tasks that ended before
// they ran, other than FINISHED or KILLED) it lists only the latest per framework and task
// name: an app whose every launch fails here leaves one task, not one per attempt.
const keepEnded = 100

// launchKey names the launches that take one another's place in the list when they fail: a
// framework's tasks of one name (an app's instances, a job's runs).
type launchKey struct{ fwID, name string }

// failedLaunch says whether an ended task never ran, for a reason other than its own success
// or a kill: its launch failed (the image, the binary, what is free, the runtime).
func (r *record) failedLaunch() bool {
	st := r.Status.State
	return st.IsTerminal() && r.StartedAt == nil && st != task.Finished && st != task.Killed && r.Info.Name != ""
}

// acknowledge records the master's acknowledgement of an update; a task that has ended and has
// nothing left to send leaves the checkpoint.
func (ts *taskSet) acknowledge(taskID, uuid string) error {
	if err := ts.updates.Ack(taskID, uuid); err != nil {
		return err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r, ok := ts.tasks[taskID]
	if !ok || !r.Status.State.IsTerminal() {
		return nil
	}
	pending, err := ts.updates.Pending(taskID)
	if err != nil || pending {
		return err
	}
	if err := ts.store.RemoveTask(taskID); err != nil {
		return err
	}
	ts.keepEndedLocked(r)
	return nil
}

// forgetFailedLaunchLocked forgets the failed launch listed for k (acknowledged already),
// unless it is id.
func (ts *taskSet) forgetFailedLaunchLocked(k launchKey, id string) {
	prev, ok := ts.failedLaunch[k]
	if !ok || prev == id {
		return
	}
	delete(ts.failedLaunch, k)
	delete(ts.tasks, prev)
	for i := len(ts.ended) - 1; i >= 0; i-- { // most likely among the last ended
		if ts.ended[i] == prev {
			ts.ended = slices.Delete(ts.ended, i, i+1)
			break
		}
	}
}

// keepEndedLocked lists an ended task whose updates are all acknowledged among the ended ones,
// and forgets what falls out of the list: the failed launch of the same framework and name it
// follows, and the oldest beyond keepEnded.
func (ts *taskSet) keepEndedLocked(r *record) {
	id := r.Info.TaskID
	if r.failedLaunch() {
		k := launchKey{r.Info.FrameworkID, r.Info.Name}
		ts.forgetFailedLaunchLocked(k, id)
		ts.failedLaunch[k] = id
	}
	ts.ended = append(ts.ended, id)
	for len(ts.ended) > keepEnded {
		gone := ts.ended[0]
		ts.ended = ts.ended[1:]
		if old := ts.tasks[gone]; old != nil {
			if k := (launchKey{old.Info.FrameworkID, old.Info.Name}); ts.failedLaunch[k] == gone {
				delete(ts.failedLaunch, k)
			}
		}
		delete(ts.tasks, gone)
	}
}

// list returns every task the agent knows, ended ones included, by id.
func (ts *taskSet) list() []api.Task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]api.Task, 0, len(ts.tasks))
	for _, r := range ts.tasks {
		out = append(out, ts.viewLocked(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out
}

func (ts *taskSet) get(id string) (api.Task, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r, ok := ts.tasks[id]
	if !ok {
		return api.Task{}, false
	}
	return ts.viewLocked(r), true
}

func (ts *taskSet) viewLocked(r *record) api.Task {
	return api.Task{Info: r.Info, Status: r.Status, Sandbox: ts.exec.Sandbox(r.Info.TaskID), StartedAt: r.StartedAt}
}

// statuses are the latest states of the tasks that have not ended, for a registration.
func (ts *taskSet) statuses() []api.TaskStatus {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []api.TaskStatus
	for _, r := range ts.tasks {
		if !r.Status.State.IsTerminal() {
			out = append(out, r.Status)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out
}

// registration lists the tasks a master must know: those not ended, and ended ones whose last
// update is not acknowledged yet.
func (ts *taskSet) registration() []api.Task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	acked := make(map[string]bool, len(ts.ended))
	for _, id := range ts.ended {
		acked[id] = true
	}
	out := []api.Task{}
	for id, r := range ts.tasks {
		if !acked[id] {
			out = append(out, ts.viewLocked(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out
}

// countByState counts the tasks the agent knows (those list returns) by their latest state.
func (ts *taskSet) countByState() map[task.State]int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := map[task.State]int{}
	for _, r := range ts.tasks {
		out[r.Status.State]++
	}
	return out
}

// running says whether the task's process is held (and not yet ended).
func (ts *taskSet) running(id string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	_, ok := ts.handles[id]
	return ok
}

// allocated and total, for the agent's own report.
func (ts *taskSet) usage() (total, allocated resources.Resources) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.total, ts.allocatedLocked()
}
