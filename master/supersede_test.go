package master

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/task"
)

// registerAt registers a sim agent from a hostname and API address, listing what the sim
// agent holds for id, and returns its id.
func (s *simAgents) registerAt(t testing.TB, id, hostname, addr string) string {
	t.Helper()
	var ag api.Agent
	reg := api.AgentRegistration{ID: id, Hostname: hostname, HTTP: addr, Resources: agentRes, Tasks: s.list(id)}
	if err := postJSON(s.master()+"/v1/agents/register", reg, &ag); err != nil {
		t.Fatal(err)
	}
	return ag.ID
}

// agentStates is GET /v1/agents as id → state.
func agentStates(t *testing.T, e *schedEnv) map[string]string {
	t.Helper()
	var views []api.AgentView
	getJSON(t, e.r.url("/v1/agents"), &views)
	out := map[string]string{}
	for _, v := range views {
		out[v.ID] = v.State
	}
	return out
}

// TestNewAgentOnSameHostAddressSupersedesTheOld: an agent that lost its data dir registers as
// a new agent from the same hostname and API address. The old id is removed through raft in the
// same command, at once — no timeout, no clock moved: its tasks end as TASK_GONE for a
// partition-aware framework and TASK_LOST for another, frameworks get FAILURE, it is never
// offered again, and a new leader does not bring it back.
func TestNewAgentOnSameHostAddressSupersedesTheOld(t *testing.T) {
	for _, pa := range []bool{false, true} {
		t.Run(fmt.Sprint("partition-aware=", pa), func(t *testing.T) {
			e := newSchedEnv(t, nil)
			const addr = "10.0.0.7:5051"
			old := e.sim.registerAt(t, "", "host-a", addr)
			info, gone := api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600}, task.Lost
			if pa {
				info.Capabilities, gone = []string{api.CapabilityPartitionAware}, task.Gone
			}
			ss := e.subscribe(info)
			o := expectOffer(t, ss)
			if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128), sleepTask("t2", 1, 128)), refuse(0)); err != nil {
				t.Fatal(err)
			}
			expectUpdate(t, ss, "t1", task.Running)
			expectUpdate(t, ss, "t2", task.Running)
			if rest := expectOffer(t, ss); rest.AgentID != old { // outstanding when the new agent comes
				t.Fatalf("offer of %s, want %s", rest.AgentID, old)
			}

			// The same host, its data dir lost: no id, no tasks, the same address (the host's
			// name in another case: DNS names ignore it).
			fresh := e.sim.registerAt(t, "", "HOST-A", addr)
			if fresh == old {
				t.Fatalf("the new agent got the old id %s", old)
			}
			for _, id := range []string{"t1", "t2"} {
				st := expectUpdate(t, ss, id, gone)
				if st.Reason != task.ReasonAgentRemoved || !strings.Contains(st.Message, "superseded by agent "+fresh) || st.AgentID != old {
					t.Fatalf("%s: %+v", id, st)
				}
			}
			ev := expect(t, ss, "FAILURE", func(ev api.Event) bool { return ev.Type == api.EventFailure })
			if ev.Failure.AgentID != old {
				t.Fatalf("failure %+v, want agent %s", ev.Failure, old)
			}
			expect(t, ss, "the old agent's offer rescinded", func(ev api.Event) bool { return ev.Type == api.EventRescind })
			if ag, ok := registeredAgent(t, e.r, old); !ok || ag.RemovedAt == nil {
				t.Fatalf("the old agent in the registry: %+v (found %t), want a tombstone", ag, ok)
			}
			if st := agentStates(t, e); st[old] != "removed" || st[fresh] != "active" {
				t.Fatalf("agents %v: want %s removed, %s active", st, old, fresh)
			}
			// Offers come of the new agent only, whole: the old one's resources are not held.
			for range 3 {
				o := expectOffer(t, ss)
				if o.AgentID != fresh || !o.Resources.Equal(agentRes) {
					t.Fatalf("offer of agent %s, %s; want the new agent %s, all of %s", o.AgentID, o.Resources, fresh, agentRes)
				}
				if err := ss.Decline([]string{o.ID}, refuse(0)); err != nil {
					t.Fatal(err)
				}
			}

			// A new leader loads the registry: the old id stays removed.
			e.restart()
			back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 3600, Capabilities: info.Capabilities})
			e.sim.registerAt(t, fresh, "host-a", addr)
			if o := expectOffer(t, back); o.AgentID != fresh {
				t.Fatalf("after the failover, an offer of %s; want %s", o.AgentID, fresh)
			}
			if st := agentStates(t, e); st[old] != "removed" {
				t.Fatalf("after the failover, agents %v: want %s removed", st, old)
			}
		})
	}
}

// TestAgentsOfOneHostStayApart: only the same hostname and the same API address make the same
// agent. Two agents on one host with other ports, or one address on two hosts, are two agents:
// neither supersedes the other, and both keep their tasks and are offered.
func TestAgentsOfOneHostStayApart(t *testing.T) {
	for _, tc := range []struct {
		name         string
		host1, addr1 string
		host2, addr2 string
		supersede    bool
	}{
		{name: "one host, two ports", host1: "host-a", addr1: "10.0.0.7:5051", host2: "host-a", addr2: "10.0.0.7:5052"},
		{name: "one address, two hosts", host1: "host-a", addr1: "0.0.0.0:5051", host2: "host-b", addr2: "0.0.0.0:5051"},
		{name: "one host, one address", host1: "host-a", addr1: "10.0.0.7:5051", host2: "host-a", addr2: "10.0.0.7:5051", supersede: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSchedEnv(t, nil)
			first := e.sim.registerAt(t, "", tc.host1, tc.addr1)
			ss := e.subscribe(api.FrameworkInfo{Name: "fw", Capabilities: []string{api.CapabilityPartitionAware}})
			o := expectOffer(t, ss)
			if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
				t.Fatal(err)
			}
			expectUpdate(t, ss, "t1", task.Running)
			second := e.sim.registerAt(t, "", tc.host2, tc.addr2)
			if tc.supersede {
				expectUpdate(t, ss, "t1", task.Gone)
				if st := agentStates(t, e); st[first] != "removed" || st[second] != "active" {
					t.Fatalf("agents %v", st)
				}
				return
			}
			// Both are offered; t1 is not touched.
			seen := map[string]bool{}
			for deadline := time.Now().Add(10 * time.Second); len(seen) < 2 && time.Now().Before(deadline); {
				ev := expect(t, ss, "offers", func(ev api.Event) bool { return ev.Type == api.EventOffers })
				for _, o := range ev.Offers.Offers {
					seen[o.AgentID] = true
					if err := ss.Decline([]string{o.ID}, refuse(0)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !seen[first] || !seen[second] {
				t.Fatalf("offers of %v; want %s and %s", seen, first, second)
			}
			expectNone(t, ss, "t1 ended or unreachable", func(ev api.Event) bool {
				st := ev.Update
				return ev.Type == api.EventUpdate && st.Status.TaskID == "t1" && (st.Status.State.IsTerminal() || st.Status.State == task.Unreachable)
			})
			if st := agentStates(t, e); st[first] != "active" || st[second] != "active" {
				t.Fatalf("agents %v: want both active", st)
			}
			// Registering again (a leader change, a restart with its data dir) changes nothing.
			e.sim.registerAt(t, first, tc.host1, tc.addr1)
			e.sim.registerAt(t, second, tc.host2, tc.addr2)
			if st := agentStates(t, e); st[first] != "active" || st[second] != "active" {
				t.Fatalf("agents %v after registering again: want both active", st)
			}
		})
	}
}

// gossipOnlyEnv is a scheduler whose agents are there only as gossip says (AgentGossipGrace
// 10 s): sim agents are no gossip members unless a test runs gossipAs for them.
func gossipOnlyEnv(t *testing.T) *schedEnv {
	t.Helper()
	e := newSchedEnv(t, func(c *SchedulerConfig) { c.AgentGossipGrace = 10 * time.Second })
	e.sim.mu.Lock()
	e.sim.gossipOnly = true
	e.sim.mu.Unlock()
	return e
}

// TestActiveAgentWithoutGossipMemberIsUnreachable: an active agent whose id no gossip member
// carries — its process gone, and another process under its gossip name, as an agent restarted
// without its data dir on another port — is unreachable after AgentGossipGrace, not active
// for ever; within the grace (a new agent's first registration) it stays active.
func TestActiveAgentWithoutGossipMemberIsUnreachable(t *testing.T) {
	e := gossipOnlyEnv(t)
	agentID := e.sim.registerAt(t, "", "host-a", "10.0.0.7:5051")
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", Capabilities: []string{api.CapabilityPartitionAware}})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	e.step() // the agent is found missing from gossip now
	e.clock.Advance(9 * time.Second)
	e.step()
	if st := agentStates(t, e); st[agentID] != "active" {
		t.Fatalf("within the grace: %v", st)
	}
	e.clock.Advance(2 * time.Second)
	e.step()
	st := expectUpdate(t, ss, "t1", task.Unreachable)
	if !strings.Contains(st.Message, "no gossip member has carried its id") {
		t.Fatalf("%+v", st)
	}
	if st := agentStates(t, e); st[agentID] != "unreachable" {
		t.Fatalf("after the grace: %v", st)
	}
}

// TestLaunchOnAnAgentReplacedAtItsAddressIsDropped: the agent at the address answers 421 (it is
// not the agent the master means: it replaced it); the task never reached its agent, so it is
// TASK_DROPPED, not an invalid task.
func TestLaunchOnAnAgentReplacedAtItsAddressIsDropped(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.registerAt(t, "", "host-a", "10.0.0.7:5051")
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", Capabilities: []string{api.CapabilityPartitionAware}})
	o := expectOffer(t, ss)
	e.sim.mu.Lock()
	e.sim.refuse[agentID] = &scheduler.AgentRefusal{Status: http.StatusMisdirectedRequest, Message: "10.0.0.7:5051 is agent other-S0, not agent " + agentID}
	e.sim.mu.Unlock()
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), nil); err != nil {
		t.Fatal(err)
	}
	if st := expectUpdate(t, ss, "t1", task.Dropped); st.Reason != task.ReasonAgentRemoved || !strings.Contains(st.Message, "not agent "+agentID) {
		t.Fatalf("%+v", st)
	}
}

// TestAgentReplacedUnderItsGossipNameIsUnreachable is finding 3's second cause: an agent's
// process is replaced by a new one under the same gossip name and address (a restart without
// the data dir, here on another API address, so nothing supersedes it). Gossip never reports
// the old member dead — the name stays alive, with the new process's id — so the old id must
// become unreachable because no member carries it, not stay active for ever.
func TestAgentReplacedUnderItsGossipNameIsUnreachable(t *testing.T) {
	e := gossipOnlyEnv(t)
	oldID := e.sim.registerAt(t, "", "host-a", "10.0.0.7:5051")
	g := gossipAs(t, oldID, "127.0.0.1:0", e.r.m.GossipAddr())
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", Capabilities: []string{api.CapabilityPartitionAware}})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)

	// The new process: the same gossip name and address, no id until it registers, then its own.
	addr := g.LocalAddr()
	g.Shutdown()
	ng, err := gossip.New(gossip.Config{Name: "sim-" + oldID, BindAddr: addr, Timing: gossip.TimingLocal,
		Meta: gossip.Meta{Role: gossip.RoleAgent, HTTP: "10.0.0.7:6061"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ng.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ng.Join(ctx, []string{e.r.m.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	newID := e.sim.registerAt(t, "", "host-a", "10.0.0.7:6061")
	if err := ng.UpdateMeta(gossip.Meta{Role: gossip.RoleAgent, ID: newID, HTTP: "10.0.0.7:6061"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the master to see the name carry the new id", 10*time.Second, func() bool {
		for _, m := range e.r.m.gossip.Members() {
			if m.Name == "sim-"+oldID {
				return m.Meta.ID == newID && m.Status == gossip.StatusAlive
			}
		}
		return false
	})
	if st := agentStates(t, e); st[oldID] != "active" || st[newID] != "active" {
		t.Fatalf("both agents should be active within the grace: %v", st)
	}
	e.step()
	e.clock.Advance(11 * time.Second)
	e.step()
	st := expectUpdate(t, ss, "t1", task.Unreachable)
	if !strings.Contains(st.Message, "no gossip member has carried its id") {
		t.Fatalf("%+v", st)
	}
	if st := agentStates(t, e); st[oldID] != "unreachable" || st[newID] != "active" {
		t.Fatalf("agents %v: want the old unreachable, the new active", st)
	}
}

// TestHandRegisteredAgentIsOfferedToNobodyOnceUnreachable: an agent registered by hand over
// the API with nothing behind it (no gossip member ever carries its id) is offered while the
// grace lasts, as a new agent must be, and to nobody once it is unreachable — even to a
// framework that revives and declines with no filter.
func TestHandRegisteredAgentIsOfferedToNobodyOnceUnreachable(t *testing.T) {
	e := gossipOnlyEnv(t)
	ghost := e.sim.registerAt(t, "", "ghost", "127.0.0.1:1")
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	if o.AgentID != ghost {
		t.Fatalf("offer %+v, want the new agent's", o)
	}
	e.step() // found missing from gossip now
	e.clock.Advance(10 * time.Second)
	e.step()
	if st := agentStates(t, e); st[ghost] != "unreachable" {
		t.Fatalf("after the grace: %v", st)
	}
	expect(t, ss, "the offer rescinded", func(ev api.Event) bool { return ev.Type == api.EventRescind && ev.Rescind.OfferID == o.ID })
	for range 3 {
		if err := ss.Call(api.Call{Type: api.CallRevive}); err != nil {
			t.Fatal(err)
		}
		e.step()
		expectNone(t, ss, "an offer of the unreachable agent", func(ev api.Event) bool {
			return ev.Type == api.EventOffers && slices.ContainsFunc(ev.Offers.Offers, func(o api.Offer) bool { return o.AgentID == ghost })
		})
	}
}
