package agent

import (
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
