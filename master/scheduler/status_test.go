package scheduler

import (
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// TestTaskStatusesAsMesosListsThem: a task's statuses are the states it went through, oldest
// first, each run of updates in one state kept as its latest (a health change of a running task
// replaces the running status), TASK_STAGING left out as Mesos does, and a task that keeps
// coming and going keeps only its latest maxStatuses.
func TestTaskStatusesAsMesosListsThem(t *testing.T) {
	at := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	healthy := true
	var e taskEntry
	for i, st := range []api.TaskStatus{
		{State: task.Staging, Source: task.SourceMaster},
		{State: task.Starting, Source: task.SourceExecutor},
		{State: task.Running, Source: task.SourceExecutor},
		{State: task.Running, Source: task.SourceExecutor, Healthy: &healthy},
		{State: task.Unreachable, Source: task.SourceMaster, Healthy: &healthy},
		{State: task.Running, Source: task.SourceExecutor, Healthy: &healthy},
		{State: task.Killed, Source: task.SourceExecutor},
	} {
		st.Timestamp = at.Add(time.Duration(i) * time.Second)
		e.noteStatus(st)
	}
	healthy = false // what was noted is a copy
	want := []StatusMark{
		{State: task.Starting, Timestamp: at.Add(1 * time.Second), FromAgent: true},
		{State: task.Running, Timestamp: at.Add(3 * time.Second), FromAgent: true},
		{State: task.Unreachable, Timestamp: at.Add(4 * time.Second)},
		{State: task.Running, Timestamp: at.Add(5 * time.Second), FromAgent: true},
		{State: task.Killed, Timestamp: at.Add(6 * time.Second), FromAgent: true},
	}
	if len(e.statuses) != len(want) {
		t.Fatalf("statuses %+v, want %+v", e.statuses, want)
	}
	for i, m := range e.statuses {
		wantHealthy := i >= 1 && i <= 3
		if m.State != want[i].State || !m.Timestamp.Equal(want[i].Timestamp) || m.FromAgent != want[i].FromAgent || (m.Healthy != nil && *m.Healthy) != wantHealthy {
			t.Errorf("statuses[%d] = %+v, want %+v (healthy %v)", i, m, want[i], wantHealthy)
		}
	}

	var flapping taskEntry
	for i := range 3 * maxStatuses {
		state := task.Running
		if i%2 == 1 {
			state = task.Unreachable
		}
		flapping.noteStatus(api.TaskStatus{State: state, Timestamp: at.Add(time.Duration(i) * time.Second)})
	}
	last := flapping.statuses[len(flapping.statuses)-1]
	if len(flapping.statuses) != maxStatuses || !last.Timestamp.Equal(at.Add(time.Duration(3*maxStatuses-1)*time.Second)) {
		t.Fatalf("%d statuses, the last %+v: want the latest %d", len(flapping.statuses), last, maxStatuses)
	}
}
