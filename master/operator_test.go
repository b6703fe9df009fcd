package master

import (
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// TestDrainSurvivesANewLeader: a drained agent's offer is rescinded, its task killed and it is
// offered nothing more, also by the next leader (the mark is in raft), until it is reactivated.
func TestDrainSurvivesANewLeader(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	pending := expectOffer(t, ss) // what t1 left, held by the framework when the drain comes

	var v api.AgentView
	if err := postJSON(e.r.url("/v1/agents/"+agentID+"/drain"), nil, &v); err != nil || v.State != "draining" || v.DrainingSince == nil {
		t.Fatalf("drain: %v %+v", err, v)
	}
	expect(t, ss, "the pending offer rescinded", func(ev api.Event) bool { return ev.Type == api.EventRescind && ev.Rescind.OfferID == pending.ID })
	expectUpdate(t, ss, "t1", task.Killed)
	e.step()
	expectNone(t, ss, "an offer of the drained agent", func(ev api.Event) bool { return ev.Type == api.EventOffers })

	e.restart()
	back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 3600})
	e.sim.register(t, agentID, "host-a", agentRes)
	e.step()
	expectNone(t, back, "an offer of the drained agent from the new leader", func(ev api.Event) bool { return ev.Type == api.EventOffers })
	var views []api.AgentView
	getJSON(t, e.r.url("/v1/agents"), &views)
	if len(views) != 1 || views[0].State != "draining" {
		t.Fatalf("agents after the restart: %+v, want it draining", views)
	}

	var active api.AgentView
	if err := postJSON(e.r.url("/v1/agents/"+agentID+"/reactivate"), nil, &active); err != nil || active.State != "active" || active.DrainingSince != nil {
		t.Fatalf("reactivate: %v %+v", err, active)
	}
	if o := expectOffer(t, back); o.AgentID != agentID || !o.Resources.Equal(agentRes) {
		t.Fatalf("offer after reactivation %+v, want all of %s", o, agentID)
	}
	if err := postJSON(e.r.url("/v1/agents/nope/drain"), nil, nil); err == nil || !strings.Contains(err.Error(), ": 404 ") {
		t.Fatalf("drain an unknown agent: %v, want 404", err)
	}
}
