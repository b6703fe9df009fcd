package scheduler

import (
	"fmt"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// TestEndedHistoryBooks: the term's books of ended tasks stay bounded. Of 30 failed launches
// of one name and 30 of another, only the latest of each is kept; 25 tasks that ran and ended
// then push them out, and the books hold the latest 20 (keep) and no failed launch.
func TestEndedHistoryBooks(t *testing.T) {
	tm := &schedTerm{tasks: map[string]*taskEntry{}, byAgent: map[string]map[string]*taskEntry{}, failedLaunch: map[launchKey]string{}}
	end := func(id, name string, ran bool, state task.State) {
		e := &taskEntry{info: api.TaskInfo{TaskID: id, FrameworkID: "fw", Name: name}, agentID: "a", ran: ran, status: api.TaskStatus{TaskID: id, State: state}}
		tm.putTask(e)
		tm.keepEndedLocked(e, 20)
	}
	for i := range 30 {
		end(fmt.Sprintf("web.%02d", i), "/web", false, task.Error)
		end(fmt.Sprintf("db.%02d", i), "/db", false, task.Failed)
	}
	if len(tm.tasks) != 2 || tm.tasks["web.29"] == nil || tm.tasks["db.29"] == nil || len(tm.ended) != 2 || len(tm.failedLaunch) != 2 {
		t.Fatalf("after 60 failed launches: %d tasks, %v ended, %d failed launches; want web.29 and db.29 only", len(tm.tasks), tm.ended, len(tm.failedLaunch))
	}
	for i := range 25 {
		end(fmt.Sprintf("job.%02d", i), "/job", true, task.Killed)
	}
	if len(tm.tasks) != 20 || len(tm.ended) != 20 || tm.ended[0] != "job.05" || len(tm.failedLaunch) != 0 || len(tm.byAgent["a"]) != 20 {
		t.Fatalf("after 25 more ended tasks: %d tasks, %d by agent, ended %v, %d failed launches; want the latest 20 jobs and none", len(tm.tasks), len(tm.byAgent["a"]), tm.ended, len(tm.failedLaunch))
	}
}
