package master

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// listed are the ids of the tasks the leader lists, by prefix.
func listed(t *testing.T, e *schedEnv, prefix string) []string {
	t.Helper()
	tasks, err := e.r.m.sched.TasksView()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, st := range tasks {
		if strings.HasPrefix(st.TaskID, prefix) {
			out = append(out, st.TaskID)
		}
	}
	return out
}

// TestFailedLaunchesLeaveOneTaskPerName: an agent refuses every launch (a port still held).
// Of 30 failed launches of an app and 30 of another, the leader lists only the latest of each
// — as Marathon keeps one lastTaskFailure — while tasks that ran stay listed up to KeepEnded,
// the oldest forgotten first.
func TestFailedLaunchesLeaveOneTaskPerName(t *testing.T) {
	e := newSchedEnv(t, func(c *SchedulerConfig) { c.KeepEnded = 20 })
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	e.sim.mu.Lock()
	e.sim.refuse[agentID] = &scheduler.AgentRefusal{Status: http.StatusUnprocessableEntity, Message: "port 31000 is held"}
	e.sim.mu.Unlock()
	for i := range 30 {
		o := expectOffer(t, ss)
		web, db := sleepTask(fmt.Sprintf("web.%d", i), 0.1, 32), sleepTask(fmt.Sprintf("db.%d", i), 0.1, 32)
		web.Name, db.Name = "/web", "/db"
		if err := ss.Accept([]string{o.ID}, launch(web, db), refuse(0)); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{web.TaskID, db.TaskID} {
			if st := expectUpdate(t, ss, id, task.Error); !strings.Contains(st.Message, "port 31000 is held") {
				t.Fatalf("%+v", st)
			}
		}
	}
	if got := listed(t, e, "web."); !slices.Equal(got, []string{"web.29"}) {
		t.Fatalf("failed launches of /web listed: %v, want only the latest", got)
	}
	if got := listed(t, e, "db."); !slices.Equal(got, []string{"db.29"}) {
		t.Fatalf("failed launches of /db listed: %v, want only the latest", got)
	}

	// Failed launches the agent reports itself (its image missing: STARTING, then FAILED),
	// two of one name at once: both stay listed until the framework has acknowledged them,
	// then only the one that ended last.
	e.sim.mu.Lock()
	delete(e.sim.refuse, agentID)
	e.sim.noRunning = true
	e.sim.mu.Unlock()
	o := expectOffer(t, ss)
	api1, api2 := sleepTask("api.1", 0.1, 32), sleepTask("api.2", 0.1, 32)
	api1.Name, api2.Name = "/api", "/api"
	if err := ss.Accept([]string{o.ID}, launch(api1, api2), refuse(0)); err != nil {
		t.Fatal(err)
	}
	var acks []api.TaskStatus
	for _, id := range []string{"api.1", "api.2"} {
		expectUpdate(t, ss, id, task.Starting)
		e.sim.report(agentID, id, task.Failed)
		acks = append(acks, expectUpdate(t, ss, id, task.Failed))
	}
	if got := listed(t, e, "api."); len(got) != 2 {
		t.Fatalf("failed launches waiting for their acknowledgement: %v listed, want both", got)
	}
	for _, st := range acks {
		if err := ss.Acknowledge(st); err != nil {
			t.Fatal(err)
		}
	}
	if got := listed(t, e, "api."); !slices.Equal(got, []string{"api.2"}) {
		t.Fatalf("failed launches of /api acknowledged: %v listed, want the latest", got)
	}
	e.sim.mu.Lock()
	e.sim.noRunning = false
	e.sim.mu.Unlock()

	// Tasks that ran: each is kept, up to KeepEnded ended tasks in all.
	o = expectOffer(t, ss)
	var ran []api.TaskInfo
	for i := range 25 {
		ti := sleepTask(fmt.Sprintf("job.%02d", i), 0.1, 32)
		ti.Name = "/job"
		ran = append(ran, ti)
	}
	if err := ss.Accept([]string{o.ID}, launch(ran...), refuse(0)); err != nil {
		t.Fatal(err)
	}
	for _, ti := range ran {
		expectUpdate(t, ss, ti.TaskID, task.Running)
	}
	for _, ti := range ran {
		if err := ss.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: ti.TaskID, AgentID: agentID}}); err != nil {
			t.Fatal(err)
		}
		expectUpdate(t, ss, ti.TaskID, task.Killed)
	}
	got := listed(t, e, "job.")
	if len(got) != 20 || got[0] != "job.05" || got[19] != "job.24" {
		t.Fatalf("ended tasks that ran listed: %v, want the latest 20 (KeepEnded)", got)
	}
	if n := len(listed(t, e, "web.")) + len(listed(t, e, "db.")) + len(listed(t, e, "api.")); n != 0 {
		t.Fatalf("%d failed launches still listed after 25 newer ended tasks, want them forgotten first", n)
	}
}
