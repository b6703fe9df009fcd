package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// schedEnv is one real master (raft on bbolt, HTTP on loopback) whose scheduler reaches sim
// agents and reads a fake clock for its timeouts.
type schedEnv struct {
	t      *testing.T
	dir    string
	r      *running
	sim    *simAgents
	clock  *clock.Fake
	cfg    SchedulerConfig
	master Config // the rest of the master's config (tokens, say)
}

func newSchedEnv(t *testing.T, tune func(*SchedulerConfig)) *schedEnv {
	t.Helper()
	return newSchedEnvWith(t, Config{}, tune)
}

// newSchedEnvWith is newSchedEnv of a master with more of cfg set (its tokens, say).
func newSchedEnvWith(t *testing.T, cfg Config, tune func(*SchedulerConfig)) *schedEnv {
	t.Helper()
	e := &schedEnv{t: t, dir: t.TempDir(), sim: newSimAgents(t), clock: clock.NewFake(time.Now()), master: cfg}
	e.cfg = SchedulerConfig{
		Agents: e.sim, Clock: e.clock, AllocationInterval: 20 * time.Millisecond, OfferTimeout: time.Hour,
		AgentReregisterTimeout: time.Hour, AgentRemovalTimeout: time.Hour, HeartbeatInterval: time.Hour,
	}
	if tune != nil {
		tune(&e.cfg)
	}
	e.start()
	return e
}

func (e *schedEnv) start() {
	cfg := e.master
	cfg.DataDir, cfg.Scheduler = e.dir, e.cfg
	e.r = startMasterConfig(e.t, cfg)
	e.sim.master = func() string { return "http://" + e.r.m.HTTPAddr() }
	waitUntil(e.t, "the scheduler to start", 15*time.Second, func() bool {
		return schedulerReady(e.r.m)
	})
}

// schedulerReady says whether m leads with its scheduler's term started.
func schedulerReady(m *Master) bool {
	_, _, err := m.sched.Size()
	return err == nil
}

func (e *schedEnv) restart() {
	e.t.Helper()
	if err := e.r.stop(); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

// step runs a scheduler step now (after the fake clock moved).
func (e *schedEnv) step() { e.r.m.sched.Step() }

func (e *schedEnv) subscribe(info api.FrameworkInfo) *Session {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ss, err := e.r.m.Subscribe(ctx, info)
	if err != nil {
		e.t.Fatal(err)
	}
	ev := expect(e.t, ss, "SUBSCRIBED", func(ev api.Event) bool { return ev.Type == api.EventSubscribed })
	if ev.Subscribed.FrameworkID != ss.FrameworkID() || ev.Subscribed.Reregistered != (info.ID != "") {
		e.t.Fatalf("subscribed %+v for %+v", ev.Subscribed, info)
	}
	e.t.Cleanup(ss.Close)
	return ss
}

// backlog keeps the events expect passed over, per session, so that a later expect finds them:
// events of different tasks and offers interleave in any order.
var (
	backlogMu sync.Mutex
	backlog   = map[*Session][]api.Event{}
)

// expect waits for the session's next event that matches; the others stay for later.
func expect(t *testing.T, ss *Session, what string, match func(api.Event) bool) api.Event {
	t.Helper()
	backlogMu.Lock()
	for i, ev := range backlog[ss] {
		if match(ev) {
			backlog[ss] = slices.Delete(backlog[ss], i, i+1)
			backlogMu.Unlock()
			return ev
		}
	}
	backlogMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		ev, err := ss.Next(ctx)
		if err != nil {
			backlogMu.Lock()
			var skipped []string
			for _, ev := range backlog[ss] {
				skipped = append(skipped, describe(ev))
			}
			backlogMu.Unlock()
			t.Fatalf("waiting for %s: %v (passed over %v)", what, err, skipped)
		}
		if match(ev) {
			return ev
		}
		backlogMu.Lock()
		backlog[ss] = append(backlog[ss], ev)
		backlogMu.Unlock()
	}
}

func describe(ev api.Event) string {
	switch {
	case ev.Update != nil:
		return fmt.Sprintf("UPDATE %s %s %s", ev.Update.Status.TaskID, ev.Update.Status.State, ev.Update.Status.Message)
	case ev.Error != nil:
		return "ERROR " + ev.Error.Message
	}
	return string(ev.Type)
}

func expectOffer(t *testing.T, ss *Session) api.Offer {
	t.Helper()
	ev := expect(t, ss, "an offer", func(ev api.Event) bool { return ev.Type == api.EventOffers })
	return ev.Offers.Offers[0]
}

func expectUpdate(t *testing.T, ss *Session, taskID string, state task.State) api.TaskStatus {
	t.Helper()
	ev := expect(t, ss, fmt.Sprintf("%s %s", taskID, state), func(ev api.Event) bool {
		return ev.Type == api.EventUpdate && ev.Update.Status.TaskID == taskID && ev.Update.Status.State == state
	})
	return ev.Update.Status
}

// expectNone checks that no event matching comes within a short while (nor is waiting).
func expectNone(t *testing.T, ss *Session, what string, match func(api.Event) bool) {
	t.Helper()
	backlogMu.Lock()
	defer backlogMu.Unlock()
	for _, ev := range backlog[ss] {
		if match(ev) {
			t.Fatalf("unexpected %s: %s", what, describe(ev))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for {
		ev, err := ss.Next(ctx)
		if err != nil {
			return
		}
		if match(ev) {
			t.Fatalf("unexpected %s: %s", what, describe(ev))
		}
		backlog[ss] = append(backlog[ss], ev)
	}
}

func launch(tasks ...api.TaskInfo) []api.Operation {
	return []api.Operation{{Type: api.OperationLaunch, Launch: &api.Launch{TaskInfos: tasks}}}
}

func sleepTask(id string, cpus, mem float64) api.TaskInfo {
	return api.TaskInfo{TaskID: id, Cmd: "sleep 1000", Resources: resources.Resources{CPUs: cpus, Mem: mem}}
}

func refuse(s float64) *api.Filters { return &api.Filters{RefuseSeconds: &s} }

var agentRes = resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000, Ports: resources.Ranges{{Begin: 31000, End: 31009}}}

// TestOfferLaunchUpdateAcknowledge: the whole two-level round trip. An agent's resources are
// offered; a launch goes to the agent; its updates reach the framework and the framework's
// acknowledgements reach the agent; the rest of the agent is offered again; a kill ends the
// task and frees what it held.
func TestOfferLaunchUpdateAcknowledge(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", Role: "web"})
	o := expectOffer(t, ss)
	if o.AgentID != agentID || o.Hostname != "host-a" || !o.Resources.Equal(agentRes) {
		t.Fatalf("offer %+v, want all of %s", o, agentID)
	}
	web := sleepTask("web-1", 1, 512)
	web.Resources.Ports = resources.Ranges{{Begin: 31000, End: 31000}}
	if err := ss.Accept([]string{o.ID}, launch(web), refuse(0)); err != nil {
		t.Fatal(err)
	}
	for _, state := range []task.State{task.Starting, task.Running} {
		st := expectUpdate(t, ss, "web-1", state)
		if st.UUID == "" || st.AgentID != agentID || st.FrameworkID != ss.FrameworkID() {
			t.Fatalf("update %+v", st)
		}
		if err := ss.Acknowledge(st); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the ack to reach the agent", 5*time.Second, func() bool { return slices.Contains(e.sim.acked("web-1"), st.UUID) })
	}
	rest := expectOffer(t, ss)
	want, _ := agentRes.Subtract(web.Resources)
	if !rest.Resources.Equal(want) {
		t.Fatalf("second offer %s, want what the task left: %s", rest.Resources, want)
	}
	if err := ss.Decline([]string{rest.ID}, refuse(0)); err != nil {
		t.Fatal(err)
	}
	if err := ss.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: "web-1"}}); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "web-1", task.Killed)
	for i := 0; ; i++ { // what the task held comes back: the whole agent is offered again
		o := expectOffer(t, ss)
		if o.Resources.Equal(agentRes) {
			break
		}
		if i == 5 {
			t.Fatalf("after the kill the offers hold %s, want all of %s", o.Resources, agentRes)
		}
		if err := ss.Decline([]string{o.ID}, refuse(0)); err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := e.r.m.sched.TasksView()
	if err != nil || len(tasks) != 1 || tasks[0].State != task.Killed {
		t.Fatalf("task table %+v %v", tasks, err)
	}
}

// TestInvalidLaunchesEndAsTaskError: each wrong task of an accept ends as TASK_ERROR naming
// what is wrong, the valid ones of the same accept run, and the resources the wrong ones asked
// for are offered again.
func TestInvalidLaunchesEndAsTaskError(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	noCmd := sleepTask("no-cmd", 0.1, 32)
	noCmd.Cmd = ""
	badPort := sleepTask("bad-port", 0.1, 32)
	badPort.Resources.Ports = resources.Ranges{{Begin: 40000, End: 40000}}
	badProtocol := sleepTask("bad-protocol", 0.1, 32)
	badProtocol.Resources.Ports = resources.Ranges{{Begin: 31000, End: 31000}}
	badProtocol.PortProtocols = []string{"sctp"}
	extraProtocol := sleepTask("extra-protocol", 0.1, 32)
	extraProtocol.PortProtocols = []string{"tcp"}
	tasks := []api.TaskInfo{
		sleepTask("good", 1, 1024),
		sleepTask("good", 0.1, 32),     // the same id twice
		sleepTask("too-big", 8, 1024),  // more cpus than offered
		sleepTask("bad/id", 0.1, 32),   // not a container name
		sleepTask("no-mem", 0.1, 0),    // no memory
		noCmd,                          // nothing to run
		badPort,                        // a port not offered
		badProtocol,                    // a port protocol service discovery cannot show
		extraProtocol,                  // the protocol of a port it does not have
		sleepTask("fits-too", 3, 3072), // exactly what is left
	}
	if err := ss.Accept([]string{o.ID}, launch(tasks...), refuse(0)); err != nil {
		t.Fatal(err)
	}
	for id, field := range map[string]string{"too-big": "resources", "bad/id": "task_id", "no-mem": "resources", "no-cmd": "cmd", "bad-port": "resources", "bad-protocol": "port_protocols[0]", "extra-protocol": "port_protocols"} {
		st := expectUpdate(t, ss, id, task.Error)
		if st.Reason != task.ReasonTaskInvalid || !strings.Contains(st.Message, "."+field+":") {
			t.Errorf("%s: %+v, want REASON_TASK_INVALID naming %s", id, st, field)
		}
	}
	expectUpdate(t, ss, "good", task.Error) // the second "good"
	expectUpdate(t, ss, "good", task.Running)
	expectUpdate(t, ss, "fits-too", task.Running)

	// Offers that are not outstanding: every task of the accept is refused.
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("late", 0.1, 32)), nil); err != nil {
		t.Fatal(err)
	}
	if st := expectUpdate(t, ss, "late", task.Error); st.Reason != task.ReasonInvalidOffers {
		t.Fatalf("%+v, want REASON_INVALID_OFFERS", st)
	}
	// Wrong calls are refused whole, naming the field.
	for _, c := range []api.Call{
		{Type: api.CallAccept, Accept: &api.Accept{}},
		{Type: api.CallAccept, Accept: &api.Accept{OfferIDs: []string{"x"}, Operations: []api.Operation{{Type: "RESERVE"}}}},
		{Type: api.CallDecline, Decline: &api.Decline{OfferIDs: []string{"x"}, Filters: refuse(-1)}},
		{Type: api.CallAcknowledge, Acknowledge: &api.AckUpdate{AgentID: "a", TaskID: "t"}},
		{Type: api.CallKill},
		{Type: "LAUNCH"},
	} {
		var fe *api.FieldError
		if err := ss.Call(c); !errors.As(err, &fe) {
			t.Errorf("call %+v: %v, want a field error", c, err)
		}
	}
}

// TestDeclineFiltersSuppressAndRevive: a decline keeps the agent from the framework for its
// refuse time; suppress stops offers; revive clears both.
func TestDeclineFiltersSuppressAndRevive(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	if err := ss.Decline([]string{o.ID}, refuse(60)); err != nil {
		t.Fatal(err)
	}
	isOffer := func(ev api.Event) bool { return ev.Type == api.EventOffers }
	expectNone(t, ss, "offer within the refuse time", isOffer)
	e.clock.Advance(61 * time.Second)
	o = expectOffer(t, ss)

	if err := ss.Decline([]string{o.ID}, refuse(0)); err != nil {
		t.Fatal(err)
	}
	if err := ss.Call(api.Call{Type: api.CallSuppress}); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ss, "offer while suppressed", isOffer)
	if err := ss.Call(api.Call{Type: api.CallRevive}); err != nil {
		t.Fatal(err)
	}
	o = expectOffer(t, ss)
	if err := ss.Decline([]string{o.ID}, refuse(3600)); err != nil {
		t.Fatal(err)
	}
	if err := ss.Call(api.Call{Type: api.CallRevive}); err != nil {
		t.Fatal(err)
	}
	expectOffer(t, ss) // revive cleared the hour-long filter
}

// TestOffersTimeOutAndAreRescinded: an offer left unanswered is rescinded after the offer
// timeout and offered again.
func TestOffersTimeOutAndAreRescinded(t *testing.T) {
	e := newSchedEnv(t, func(c *SchedulerConfig) { c.OfferTimeout = 30 * time.Second })
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	e.clock.Advance(31 * time.Second)
	ev := expect(t, ss, "RESCIND", func(ev api.Event) bool { return ev.Type == api.EventRescind })
	if ev.Rescind.OfferID != o.ID {
		t.Fatalf("rescinded %s, want %s", ev.Rescind.OfferID, o.ID)
	}
	again := expectOffer(t, ss)
	if again.ID == o.ID || !again.Resources.Equal(o.Resources) {
		t.Fatalf("offered again %+v", again)
	}
	// Accepting the rescinded offer fails for its tasks.
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("late", 1, 32)), nil); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "late", task.Error)
}

// TestFrameworkFailover: a framework that disconnects keeps its tasks and gets unacknowledged
// updates again when it subscribes again within its failover timeout; one that stays away
// longer has its tasks killed and is forgotten.
func TestFrameworkFailover(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 60})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	running := expectUpdate(t, ss, "t1", task.Running) // not acknowledged
	ss.Close()
	if err := ss.Call(api.Call{Type: api.CallRevive}); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("a call on a closed session: %v", err)
	}
	fws, _ := e.r.m.sched.FrameworksView()
	if len(fws) != 1 || fws[0].Connected || fws[0].FailoverDeadline == nil {
		t.Fatalf("frameworks %+v", fws)
	}
	e.clock.Advance(59 * time.Second)
	e.step()
	back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 60})
	if st := expectUpdate(t, back, "t1", task.Running); st.UUID != running.UUID {
		t.Fatalf("resent update %+v, want the unacknowledged %s", st, running.UUID)
	}
	if e.sim.killed("t1") {
		t.Fatal("the task was killed although the framework came back in time")
	}

	back.Close()
	e.clock.Advance(61 * time.Second)
	e.step()
	waitUntil(t, "the task to be killed", 5*time.Second, func() bool { return e.sim.killed("t1") })
	// The update nobody acknowledged is acknowledged by the master, so that the agent's next
	// updates (the kill's) are not held behind it.
	waitUntil(t, "the master to acknowledge the orphaned update", 5*time.Second, func() bool {
		return slices.Contains(e.sim.acked("t1"), running.UUID)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.r.m.Subscribe(ctx, api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw"}); !errors.Is(err, ErrUnknownFramework) {
		t.Fatalf("re-subscribe after the failover timeout: %v", err)
	}
	waitUntil(t, "the registry to forget the framework", 5*time.Second, func() bool {
		v, err := e.r.m.store.View(ctx, 0)
		if err != nil {
			return false
		}
		_, ok := v.Get(registry.NamespaceFrameworks, ss.FrameworkID())
		return !ok
	})
}

// TestTeardownKillsTasks: a framework that tears itself down has its tasks killed at once.
func TestTeardownKillsTasks(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), nil); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	if err := ss.Call(api.Call{Type: api.CallTeardown}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the task to be killed", 5*time.Second, func() bool { return e.sim.killed("t1") })
	ev := expect(t, ss, "ERROR", func(ev api.Event) bool { return ev.Type == api.EventError })
	if !strings.Contains(ev.Error.Message, "tore itself down") {
		t.Fatalf("error %q", ev.Error.Message)
	}
}

// TestReconciliation: explicit questions get each task's latest state, unknown tasks are
// answered TASK_LOST (or TASK_UNKNOWN for partition-aware frameworks), never dropped; an empty
// question gets every task of the framework.
func TestReconciliation(t *testing.T) {
	for _, pa := range []bool{false, true} {
		t.Run(fmt.Sprint("partition-aware=", pa), func(t *testing.T) {
			e := newSchedEnv(t, nil)
			agentID := e.sim.register(t, "", "host-a", agentRes)
			info := api.FrameworkInfo{Name: "fw"}
			unknown := task.Lost
			if pa {
				info.Capabilities, unknown = []string{api.CapabilityPartitionAware}, task.Unknown
			}
			ss := e.subscribe(info)
			o := expectOffer(t, ss)
			if err := ss.Accept([]string{o.ID}, launch(sleepTask("a", 1, 128), sleepTask("b", 1, 128)), nil); err != nil {
				t.Fatal(err)
			}
			expectUpdate(t, ss, "a", task.Running)
			expectUpdate(t, ss, "b", task.Running)
			if err := ss.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: []api.ReconcileTask{
				{TaskID: "a", AgentID: agentID}, {TaskID: "ghost"}, {TaskID: "ghost2", AgentID: agentID},
			}}}); err != nil {
				t.Fatal(err)
			}
			st := expectUpdate(t, ss, "a", task.Running)
			if st.Reason != task.ReasonReconciliation || st.UUID != "" {
				t.Fatalf("reconciled %+v", st)
			}
			expectUpdate(t, ss, "ghost", unknown)
			expectUpdate(t, ss, "ghost2", map[bool]task.State{false: task.Lost, true: task.Gone}[pa])
			if err := ss.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{}}); err != nil {
				t.Fatal(err)
			}
			expectUpdate(t, ss, "a", task.Running)
			expectUpdate(t, ss, "b", task.Running)
		})
	}
}

// TestAgentLostThenBack: an agent gone from gossip makes its tasks TASK_UNREACHABLE and its
// offers rescinded; back before the removal timeout, its tasks are RUNNING again.
func TestAgentLostThenBack(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	g := gossipAs(t, agentID, "127.0.0.1:0", e.r.m.GossipAddr())
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", Capabilities: []string{api.CapabilityPartitionAware}})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	expectOffer(t, ss) // the rest, outstanding when the agent goes
	g.Shutdown()
	expect(t, ss, "RESCIND", func(ev api.Event) bool { return ev.Type == api.EventRescind })
	if st := expectUpdate(t, ss, "t1", task.Unreachable); st.Reason != task.ReasonAgentDisconnected {
		t.Fatalf("%+v", st)
	}
	gossipAs(t, agentID, g.LocalAddr(), e.r.m.GossipAddr()) // back
	expectUpdate(t, ss, "t1", task.Running)
	expectOffer(t, ss)
}

// TestAgentRemovedAfterTimeout: past the removal timeout an unreachable agent's tasks end as
// TASK_GONE, frameworks get FAILURE, and when the agent comes back anyway its tasks are killed.
func TestAgentRemovedAfterTimeout(t *testing.T) {
	e := newSchedEnv(t, func(c *SchedulerConfig) { c.AgentRemovalTimeout = 10 * time.Minute })
	agentID := e.sim.register(t, "", "host-a", agentRes)
	g := gossipAs(t, agentID, "127.0.0.1:0", e.r.m.GossipAddr())
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", Capabilities: []string{api.CapabilityPartitionAware}})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), nil); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	g.Shutdown()
	expectUpdate(t, ss, "t1", task.Unreachable)
	e.clock.Advance(10 * time.Minute)
	e.step()
	if st := expectUpdate(t, ss, "t1", task.Gone); st.Reason != task.ReasonAgentRemoved {
		t.Fatalf("%+v", st)
	}
	ev := expect(t, ss, "FAILURE", func(ev api.Event) bool { return ev.Type == api.EventFailure })
	if ev.Failure.AgentID != agentID {
		t.Fatalf("failure %+v", ev.Failure)
	}
	waitUntil(t, "the tombstone", 5*time.Second, func() bool {
		ag, ok := registeredAgent(t, e.r, agentID)
		return ok && ag.RemovedAt != nil
	})
	e.sim.register(t, agentID, "host-a", agentRes)
	waitUntil(t, "the written-off task to be killed", 5*time.Second, func() bool { return e.sim.killed("t1") })
}

// TestNewLeaderRebuildsFromAgents: after the leader restarts, the framework subscribes again
// with its id and loses nothing; the task table comes back as the agent registers; a question
// about a task on an agent that has not registered yet is answered once it has.
func TestNewLeaderRebuildsFromAgents(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), nil); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	e.restart()

	back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 3600})
	if err := back.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: []api.ReconcileTask{{TaskID: "t1", AgentID: agentID}}}}); err != nil {
		t.Fatal(err)
	}
	expectNone(t, back, "an answer before the agent registered", func(ev api.Event) bool { return ev.Type == api.EventUpdate })
	e.sim.register(t, agentID, "host-a", agentRes)
	expectUpdate(t, back, "t1", task.Running)
	o = expectOffer(t, back)
	want, _ := agentRes.Subtract(resources.Resources{CPUs: 1, Mem: 128})
	if !o.Resources.Equal(want) {
		t.Fatalf("offer after failover %s, want %s (the task's resources held)", o.Resources, want)
	}
}

// TestKillWaitsForTheAgentAfterFailover: a kill of a task on an agent that has not registered
// with a new leader yet is not answered "unknown" (the framework would write off a task that
// still runs): it waits for the agent, and kills the task once the agent lists it.
func TestKillWaitsForTheAgentAfterFailover(t *testing.T) {
	pa := []string{api.CapabilityPartitionAware}
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600, Capabilities: pa})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), nil); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	e.restart()

	back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 3600, Capabilities: pa})
	for _, id := range []string{"t1", "ghost"} {
		if err := back.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: id, AgentID: agentID}}); err != nil {
			t.Fatal(err)
		}
	}
	expectNone(t, back, "an answer before the agent registered", func(ev api.Event) bool { return ev.Type == api.EventUpdate })
	if e.sim.killed("t1") {
		t.Fatal("t1 killed before its agent registered")
	}
	e.sim.register(t, agentID, "host-a", agentRes)
	waitUntil(t, "t1 killed once its agent registered", 5*time.Second, func() bool { return e.sim.killed("t1") })
	expectUpdate(t, back, "ghost", task.Unknown)
}

// TestAgentThatDoesNotComeBackAfterFailover: an agent of the registry that does not register
// with a new leader in time is unreachable, and questions about its tasks (and kills of them)
// are answered so.
func TestAgentThatDoesNotComeBackAfterFailover(t *testing.T) {
	e := newSchedEnv(t, func(c *SchedulerConfig) { c.AgentReregisterTimeout = time.Minute })
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600, Capabilities: []string{api.CapabilityPartitionAware}})
	e.restart()
	back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 3600, Capabilities: []string{api.CapabilityPartitionAware}})
	if err := back.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: []api.ReconcileTask{{TaskID: "t9", AgentID: agentID}}}}); err != nil {
		t.Fatal(err)
	}
	if err := back.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: "t8", AgentID: agentID}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.step()
	expectUpdate(t, back, "t9", task.Unreachable)
	expectUpdate(t, back, "t8", task.Unreachable)
}

// TestAgentLateAfterFailoverBringsItsTasksBack: an agent that registers with a new leader
// only after the leader declared it unreachable (a partition healed just past
// --agent-reregister-timeout) brings its tasks back: the framework, told they were
// unreachable, hears they run. (split-minority-leader found an app left at 0 of 2 for good.)
func TestAgentLateAfterFailoverBringsItsTasksBack(t *testing.T) {
	e := newSchedEnv(t, func(c *SchedulerConfig) { c.AgentReregisterTimeout = time.Minute })
	agentID := e.sim.register(t, "", "host-a", agentRes)
	caps := []string{api.CapabilityPartitionAware}
	ss := e.subscribe(api.FrameworkInfo{Name: "fw", FailoverTimeout: 3600, Capabilities: caps})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 256)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	e.restart()
	back := e.subscribe(api.FrameworkInfo{ID: ss.FrameworkID(), Name: "fw", FailoverTimeout: 3600, Capabilities: caps})
	if err := back.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: []api.ReconcileTask{{TaskID: "t1", AgentID: agentID}}}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.step()
	expectUpdate(t, back, "t1", task.Unreachable)
	e.sim.register(t, agentID, "host-a", agentRes)
	expectUpdate(t, back, "t1", task.Running)
}

// TestResourcesOfTasksWithoutAFrameworkAreNotOffered: what an operator's task on an agent's own
// API holds, and what a removed framework's tasks hold until their kill ends them, is never
// offered to anyone.
func TestResourcesOfTasksWithoutAFrameworkAreNotOffered(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.slowKills = true
	op := api.Task{
		Info:   sleepTask("operator-job", 1, 256),
		Status: api.TaskStatus{TaskID: "operator-job", State: task.Running, Source: task.SourceAgent, Timestamp: time.Now(), UUID: "u1"},
	}
	agentID := e.sim.registerWith(t, "", "host-a", agentRes, []api.Task{op})
	fw1 := e.subscribe(api.FrameworkInfo{Name: "fw1"})
	o := expectOffer(t, fw1)
	want, _ := agentRes.Subtract(op.Info.Resources)
	if !o.Resources.Equal(want) {
		t.Fatalf("offer %s, want all but the operator's task: %s", o.Resources, want)
	}
	if err := fw1.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 256)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, fw1, "t1", task.Running)
	if err := fw1.Call(api.Call{Type: api.CallTeardown}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the kill", 5*time.Second, func() bool { return e.sim.killed("t1") })
	fw2 := e.subscribe(api.FrameworkInfo{Name: "fw2"})
	o = expectOffer(t, fw2)
	want, _ = want.Subtract(resources.Resources{CPUs: 1, Mem: 256})
	if !o.Resources.Equal(want) {
		t.Fatalf("while t1 is being killed the offer is %s, want %s", o.Resources, want)
	}
	if err := fw2.Decline([]string{o.ID}, refuse(0)); err != nil {
		t.Fatal(err)
	}
	e.sim.report(agentID, "t1", task.Killed)
	for i := 0; ; i++ {
		o = expectOffer(t, fw2)
		if o.Resources.CPUs == 3 {
			break
		}
		if i == 5 {
			t.Fatalf("after t1 ended the offer is %s, want 3 cpus", o.Resources)
		}
		fw2.Decline([]string{o.ID}, refuse(0))
	}
}

// TestAgentBackWithOtherResources: an agent that registers again with other resources is
// offered by its new total, its running tasks still held.
func TestAgentBackWithOtherResources(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 256)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	bigger := resources.Resources{CPUs: 8, Mem: 8192, Disk: 1000}
	e.sim.register(t, agentID, "host-a", bigger)
	for i := 0; ; i++ {
		o = expectOffer(t, ss)
		want, _ := bigger.Subtract(resources.Resources{CPUs: 1, Mem: 256})
		if o.Resources.Equal(want) {
			break
		}
		if i == 5 {
			t.Fatalf("offer %s, want %s", o.Resources, want)
		}
		ss.Decline([]string{o.ID}, refuse(0))
	}
}

// TestKillThatDoesNotReachTheAgentIsSentAgain: a kill the agent did not get (restarting, a
// network blip) is sent again until the task ends; the framework that asked for it does not
// find the task running for good.
func TestKillThatDoesNotReachTheAgentIsSentAgain(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	o := expectOffer(t, ss)
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("t1", 1, 128)), nil); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "t1", task.Running)
	e.sim.mu.Lock()
	e.sim.dropKills = 2
	e.sim.mu.Unlock()
	if err := ss.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: "t1"}}); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ss, "TASK_KILLED from a kill the agent did not get", func(ev api.Event) bool {
		return ev.Type == api.EventUpdate && ev.Update.Status.TaskID == "t1" && ev.Update.Status.State == task.Killed
	})
	for i := 0; i < 3; i++ { // two more tries, killRetry apart
		e.clock.Advance(6 * time.Second)
		e.step()
		waitUntil(t, "the kill sent again", 5*time.Second, func() bool {
			e.sim.mu.Lock()
			defer e.sim.mu.Unlock()
			return len(e.sim.kills) >= 2+i || i == 2
		})
	}
	expectUpdate(t, ss, "t1", task.Killed)
}
