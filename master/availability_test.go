package master

import (
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/task"
)

// TestUnavailableAgentIsNotOffered: an agent that says through gossip that it takes no tasks
// (its containerd does not answer) has its outstanding offers rescinded and gets no more, its
// running task stays RUNNING, and the agent view shows why; once it takes tasks again it is
// offered again.
func TestUnavailableAgentIsNotOffered(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	g := gossipAs(t, agentID, "127.0.0.1:0", e.r.m.GossipAddr())
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	expectOffer(t, ss) // the rest, outstanding when containerd goes

	why := "containerd: unavailable: it does not answer: connection refused"
	meta := gossip.Meta{Role: gossip.RoleAgent, ID: agentID, HTTP: "sim.invalid:1"}
	down := meta
	down.Unavailable = why
	if err := g.UpdateMeta(down); err != nil {
		t.Fatal(err)
	}
	expect(t, ss, "RESCIND", func(ev api.Event) bool { return ev.Type == api.EventRescind })
	view := func() api.AgentView {
		var views []api.AgentView
		getJSON(t, e.r.url("/v1/agents"), &views)
		for _, v := range views {
			if v.ID == agentID {
				return v
			}
		}
		t.Fatalf("agent %s not listed: %+v", agentID, views)
		return api.AgentView{}
	}
	if v := view(); v.State != "unavailable" || v.Unavailable != why || v.Tasks != 1 {
		t.Fatalf("agent view while unavailable: state %q, reason %q, %d tasks", v.State, v.Unavailable, v.Tasks)
	}
	for i := 0; i < 5; i++ { // a second and more of allocation cycles (every 20 ms)
		expectNone(t, ss, "an offer, or t1 not running, while the agent is unavailable", func(ev api.Event) bool {
			return ev.Type == api.EventOffers || ev.Type == api.EventUpdate && (ev.Update.Status.State.IsTerminal() || ev.Update.Status.State == task.Unreachable)
		})
	}
	if st, _, err := e.r.m.sched.TaskAt("t1"); err != nil || st.State != task.Running {
		t.Fatalf("t1 while its agent is unavailable: %+v %v", st, err)
	}

	if err := g.UpdateMeta(meta); err != nil {
		t.Fatal(err)
	}
	expectOffer(t, ss)
	waitUntil(t, "the agent active again", 5*time.Second, func() bool {
		v := view()
		return v.State == "active" && v.Unavailable == ""
	})
}
