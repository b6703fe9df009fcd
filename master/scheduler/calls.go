package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/master/allocator"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// maxQueuedEvents bounds a session's queue: a framework that reads nothing while this many
// events pile up is disconnected (it may subscribe again and lose nothing but offers). A burst
// of 50,000 launches queues 100,000 updates within a second, so the bound is well above that.
const maxQueuedEvents = 500000

// Session is one subscription of a framework: the events for it, and its calls. An embedded
// framework gets one from Master.Subscribe; the HTTP scheduler API holds one per stream. It is
// safe for concurrent use.
type Session struct {
	s        *Scheduler
	fwID     string
	streamID string

	mu     sync.Mutex // guards queue and err
	queue  []api.Event
	err    error         // why the session ended; nil while open
	wake   chan struct{} // a new event, or the end
	closed chan struct{}
}

func newSession(s *Scheduler, fwID, streamID string) *Session {
	return &Session{s: s, fwID: fwID, streamID: streamID, wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// FrameworkID is the framework's id.
func (ss *Session) FrameworkID() string { return ss.fwID }

// StreamID names this subscription; HTTP calls carry it.
func (ss *Session) StreamID() string { return ss.streamID }

// push queues an event; it never blocks.
func (ss *Session) push(ev api.Event) {
	ss.mu.Lock()
	if ss.err != nil {
		ss.mu.Unlock()
		return
	}
	if len(ss.queue) >= maxQueuedEvents {
		ss.mu.Unlock()
		ss.end(fmt.Errorf("%w: more than %d events unread", ErrSubscriptionEnded, maxQueuedEvents))
		return
	}
	ss.queue = append(ss.queue, ev)
	ss.mu.Unlock()
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// end closes the session; Next then returns an ERROR event saying why, and after it err.
func (ss *Session) end(err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.err != nil {
		return
	}
	ss.err = err
	ss.queue = append(ss.queue, api.Event{Type: api.EventError, Error: &api.ErrorInfo{Message: err.Error()}})
	close(ss.closed)
}

// Next waits for the next event. After the session ended it returns the ERROR event that says
// why, then the error.
func (ss *Session) Next(ctx context.Context) (api.Event, error) {
	for {
		ss.mu.Lock()
		if len(ss.queue) > 0 {
			ev := ss.queue[0]
			ss.queue[0] = api.Event{}
			ss.queue = ss.queue[1:]
			ss.mu.Unlock()
			return ev, nil
		}
		err := ss.err
		ss.mu.Unlock()
		if err != nil {
			return api.Event{}, err
		}
		select {
		case <-ctx.Done():
			return api.Event{}, ctx.Err()
		case <-ss.wake:
		case <-ss.closed:
		}
	}
}

// Events delivers the session's events on a channel (of the given buffer, so a reader can take
// what has queued up at once) until ctx ends; when the session ends, its error comes on the
// second channel. It suits a framework's select loop.
func (ss *Session) Events(ctx context.Context, buffer int) (<-chan api.Event, <-chan error) {
	events := make(chan api.Event, buffer)
	ended := make(chan error, 1)
	go func() {
		for {
			ev, err := ss.Next(ctx)
			if err != nil {
				ended <- err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return events, ended
}

// Close disconnects the framework (its process went away): offers go back, and its tasks keep
// running until its failover timeout passes, unless it subscribes again.
func (ss *Session) Close() { ss.s.disconnect(ss) }

// Call makes one call for the framework: ACCEPT, DECLINE, REVIVE, SUPPRESS, KILL, ACKNOWLEDGE,
// RECONCILE or TEARDOWN. A wrong call is an *api.FieldError naming what is wrong.
func (ss *Session) Call(c api.Call) error { return ss.s.call(ss, c) }

// Accept launches tasks on offers (all of one agent) and declines what they leave.
func (ss *Session) Accept(offerIDs []string, ops []api.Operation, f *api.Filters) error {
	return ss.Call(api.Call{Type: api.CallAccept, Accept: &api.Accept{OfferIDs: offerIDs, Operations: ops, Filters: f}})
}

// Decline gives offers back.
func (ss *Session) Decline(offerIDs []string, f *api.Filters) error {
	return ss.Call(api.Call{Type: api.CallDecline, Decline: &api.Decline{OfferIDs: offerIDs, Filters: f}})
}

// Acknowledge acknowledges a status update that carried a uuid.
func (ss *Session) Acknowledge(st api.TaskStatus) error {
	return ss.Call(api.Call{Type: api.CallAcknowledge, Acknowledge: &api.AckUpdate{AgentID: st.AgentID, TaskID: st.TaskID, UUID: st.UUID}})
}

// Subscribe registers a framework, or re-registers it when info.ID is set (a failover, or a new
// leader): the registration is committed to the replicated registry before SUBSCRIBED is the
// session's first event. A subscription of a framework that has one open replaces it.
// info.Principal is who asks (set by the caller, never taken from a request's body): a framework
// registered by another principal is refused with an *OwnerError.
func (s *Scheduler) Subscribe(ctx context.Context, info api.FrameworkInfo) (*Session, error) {
	if err := validateFrameworkInfo(&info); err != nil {
		return nil, err
	}
	if info.Principal == "" {
		return nil, errors.New("master: a subscription without a principal")
	}
	s.mu.Lock()
	t := s.term
	if t == nil {
		s.mu.Unlock()
		return nil, ErrNotReady
	}
	reregistered := info.ID != ""
	if reregistered {
		fw := t.frameworks[info.ID]
		if fw == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %s (torn down, or removed after its failover timeout); subscribe without an id", ErrUnknownFramework, info.ID)
		}
		if err := checkOwner(fw.info, s.embedded, info.Principal); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if fw.info.Role != info.Role {
			s.mu.Unlock()
			return nil, &api.FieldError{Field: "subscribe.framework_info.role", Msg: fmt.Sprintf("is %q; it cannot change to %q", fw.info.Role, info.Role)}
		}
		info.RegisteredAt = fw.info.RegisteredAt
	} else {
		info.ID = string(s.ids.Framework())
	}
	s.mu.Unlock()

	info, err := registry.RegisterFramework(ctx, s.store, info)
	if err != nil {
		return nil, err
	}
	streamID, err := s.ids.UUID()
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.term != t {
		return nil, ErrNotReady
	}
	fw := t.frameworks[info.ID]
	if fw == nil {
		if reregistered {
			return nil, fmt.Errorf("%w: %s was removed meanwhile", ErrUnknownFramework, info.ID)
		}
		fw = &fwEntry{}
		t.frameworks[info.ID] = fw
		if err := t.alloc.AddFramework(info.ID, info.Role); err != nil {
			return nil, err
		}
	}
	fw.info = info
	if fw.session != nil {
		fw.session.end(fmt.Errorf("%w: the framework subscribed again on another stream", ErrSubscriptionEnded))
	}
	ss := newSession(s, info.ID, streamID)
	fw.session, fw.disconnectedAt = ss, time.Time{}
	if err := t.alloc.ActivateFramework(info.ID); err != nil {
		return nil, err
	}
	ss.push(api.Event{Type: api.EventSubscribed, Subscribed: &api.Subscribed{
		FrameworkID: info.ID, HeartbeatIntervalSeconds: s.cfg.HeartbeatInterval.Seconds(), Reregistered: reregistered, MasterID: s.masterID,
	}})
	// Updates sent to the session before and not acknowledged go out again now, rather than
	// when their agents resend them.
	for _, e := range t.tasks {
		if e.info.FrameworkID == info.ID && e.unacked != nil {
			ss.push(api.Event{Type: api.EventUpdate, Update: &api.Update{Status: *e.unacked}})
		}
	}
	s.logger.Info("framework subscribed", "framework", info.ID, "name", info.Name, "role", info.Role, "principal", info.Principal, "reregistered", reregistered)
	s.poke()
	return ss, nil
}

// disconnect marks a session's framework disconnected: its offers go back and its failover
// timeout starts (a framework with none is removed at the next step).
func (s *Scheduler) disconnect(ss *Session) {
	ss.end(fmt.Errorf("%w: disconnected", ErrSubscriptionEnded))
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return
	}
	fw := t.frameworks[ss.fwID]
	if fw == nil || fw.session != ss {
		return
	}
	now := s.cfg.Clock.Now()
	fw.session, fw.disconnectedAt = nil, now
	for oid, o := range t.offers {
		if o.offer.FrameworkID == ss.fwID {
			s.rescindLocked(t, oid, now)
		}
	}
	if err := t.alloc.DeactivateFramework(ss.fwID); err != nil {
		s.logger.Error("disconnect: allocator", "framework", ss.fwID, "err", err)
	}
	s.logger.Info("framework disconnected", "framework", ss.fwID, "failover_timeout", failoverTimeout(fw.info))
	s.poke()
}

// Session finds a framework's open session for an HTTP call of principal, checking that the
// framework is the principal's and the stream id is its open subscription's. The stream id, a
// random uuid only its subscriber was told, would be enough; the principal is checked as well,
// so that a stream id that leaks (a log, a proxy) is of no use to another principal.
func (s *Scheduler) Session(fwID, streamID, principal string) (*Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	fw := t.frameworks[fwID]
	if fw == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownFramework, fwID)
	}
	if err := checkOwner(fw.info, s.embedded, principal); err != nil {
		return nil, err
	}
	if fw.session == nil || fw.session.streamID != streamID {
		return nil, ErrNotSubscribed
	}
	return fw.session, nil
}

// call carries out one call of a subscribed framework.
func (s *Scheduler) call(ss *Session, c api.Call) error {
	if c.FrameworkID != "" && c.FrameworkID != ss.fwID {
		return &api.FieldError{Field: "framework_id", Msg: fmt.Sprintf("%q is not this subscription's framework %s", c.FrameworkID, ss.fwID)}
	}
	if err := checkCallBody(c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return ErrNotReady
	}
	fw := t.frameworks[ss.fwID]
	if fw == nil || fw.session != ss {
		return ErrNotSubscribed
	}
	now := s.cfg.Clock.Now()
	switch c.Type {
	case api.CallAccept:
		s.acceptLocked(t, fw, c.Accept, now)
	case api.CallDecline:
		refuse := refuseTime(c.Decline.Filters)
		for _, oid := range c.Decline.OfferIDs {
			s.returnOfferLocked(t, fw, oid, refuse, now)
		}
	case api.CallRevive:
		fw.suppressed = false
		if err := t.alloc.Revive(fw.info.ID); err != nil {
			return err
		}
		s.poke()
	case api.CallSuppress:
		fw.suppressed = true
		if err := t.alloc.Suppress(fw.info.ID); err != nil {
			return err
		}
	case api.CallKill:
		s.killLocked(t, fw, *c.Kill, now)
	case api.CallAcknowledge:
		s.acknowledgeLocked(t, fw, *c.Acknowledge)
	case api.CallReconcile:
		s.reconcileLocked(t, fw, c.Reconcile.Tasks, now)
	case api.CallTeardown:
		s.logger.Info("framework tore itself down", "framework", fw.info.ID)
		s.removeFrameworkLocked(t, fw, "it tore itself down")
	case api.CallSubscribe:
		return &api.FieldError{Field: "type", Msg: "SUBSCRIBE opens a stream; it is not a call on one"}
	}
	return nil
}

// checkCallBody names what a call lacks before anything changes.
func checkCallBody(c api.Call) error {
	missing := func(f string) error {
		return &api.FieldError{Field: f, Msg: fmt.Sprintf("is required for a %s call", c.Type)}
	}
	switch c.Type {
	case api.CallAccept:
		if c.Accept == nil {
			return missing("accept")
		}
		if len(c.Accept.OfferIDs) == 0 {
			return &api.FieldError{Field: "accept.offer_ids", Msg: "names no offer"}
		}
		for i, op := range c.Accept.Operations {
			switch {
			case op.Type == api.OperationLaunch && op.Launch == nil:
				return &api.FieldError{Field: fmt.Sprintf("accept.operations[%d].launch", i), Msg: "is required for a LAUNCH operation"}
			case op.Type == api.OperationKill && op.Kill == nil:
				return &api.FieldError{Field: fmt.Sprintf("accept.operations[%d].kill", i), Msg: "is required for a KILL operation"}
			case op.Type != api.OperationLaunch && op.Type != api.OperationKill:
				return &api.FieldError{Field: fmt.Sprintf("accept.operations[%d].type", i), Msg: fmt.Sprintf("%q: want LAUNCH or KILL", op.Type)}
			}
		}
		return checkFilters("accept.filters", c.Accept.Filters)
	case api.CallDecline:
		if c.Decline == nil {
			return missing("decline")
		}
		return checkFilters("decline.filters", c.Decline.Filters)
	case api.CallKill:
		if c.Kill == nil || c.Kill.TaskID == "" {
			return missing("kill.task_id")
		}
		if c.Kill.GracePeriodSeconds < 0 || c.Kill.GracePeriodSeconds > maxGraceSeconds || math.IsNaN(c.Kill.GracePeriodSeconds) {
			return &api.FieldError{Field: "kill.grace_period_seconds", Msg: "must be 0 to 86400 (a day)"}
		}
	case api.CallAcknowledge:
		switch {
		case c.Acknowledge == nil:
			return missing("acknowledge")
		case c.Acknowledge.TaskID == "":
			return missing("acknowledge.task_id")
		case c.Acknowledge.AgentID == "":
			return missing("acknowledge.agent_id")
		case c.Acknowledge.UUID == "":
			return &api.FieldError{Field: "acknowledge.uuid", Msg: "is required: only updates that carry a uuid are acknowledged"}
		}
	case api.CallReconcile:
		if c.Reconcile == nil {
			return missing("reconcile")
		}
		for i, q := range c.Reconcile.Tasks {
			if q.TaskID == "" {
				return &api.FieldError{Field: fmt.Sprintf("reconcile.tasks[%d].task_id", i), Msg: "is required"}
			}
		}
	case api.CallRevive, api.CallSuppress, api.CallTeardown, api.CallSubscribe:
	default:
		return &api.FieldError{Field: "type", Msg: fmt.Sprintf("%q is not a call (SUBSCRIBE, ACCEPT, DECLINE, REVIVE, SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE, TEARDOWN)", c.Type)}
	}
	return nil
}

func checkFilters(field string, f *api.Filters) error {
	if f != nil && f.RefuseSeconds != nil && (*f.RefuseSeconds < 0 || *f.RefuseSeconds > 365*24*3600) {
		return &api.FieldError{Field: field + ".refuse_seconds", Msg: fmt.Sprintf("%v: must be 0 to a year", *f.RefuseSeconds)}
	}
	return nil
}

func refuseTime(f *api.Filters) time.Duration {
	if f == nil || f.RefuseSeconds == nil {
		return allocator.DefaultRefuse
	}
	return time.Duration(*f.RefuseSeconds * float64(time.Second))
}

// returnOfferLocked gives an offer of the framework back, keeping its agent from the framework
// for refuse. Unknown offers are ignored (rescinded or timed out meanwhile), as in Mesos.
func (s *Scheduler) returnOfferLocked(t *schedTerm, fw *fwEntry, offerID string, refuse time.Duration, now time.Time) {
	o := t.offers[offerID]
	if o == nil || o.offer.FrameworkID != fw.info.ID {
		return
	}
	delete(t.offers, offerID)
	s.metrics.offers.WithLabelValues("declined").Inc()
	if err := t.alloc.Recover(fw.info.ID, o.offer.AgentID, o.offer.Resources, refuse, now); err != nil {
		s.logger.Error("decline: allocator", "offer", offerID, "err", err)
	}
	s.poke()
}

// acceptLocked checks every operation against the offers and carries out the valid ones:
// tasks that do not fit, repeat an id or are malformed end at once as TASK_ERROR with the
// reason; the others go to the agent. What the launches leave of the offers is declined.
func (s *Scheduler) acceptLocked(t *schedTerm, fw *fwEntry, a *api.Accept, now time.Time) {
	var agentID, bad string
	var pool resources.Resources
	for _, oid := range a.OfferIDs {
		o := t.offers[oid]
		switch {
		case o == nil || o.offer.FrameworkID != fw.info.ID:
			bad = fmt.Sprintf("offer %s is not outstanding for this framework (used, declined, rescinded or timed out)", oid)
			continue
		case agentID != "" && o.offer.AgentID != agentID:
			bad = fmt.Sprintf("offer %s is of agent %s, the others of %s: one accept uses offers of one agent", oid, o.offer.AgentID, agentID)
			continue
		}
		agentID = o.offer.AgentID
		pool = pool.Add(o.offer.Resources)
		delete(t.offers, oid)
		s.metrics.offers.WithLabelValues("accepted").Inc()
	}
	ag := t.agents[agentID]
	if bad == "" && (ag == nil || ag.state != agentActive) {
		bad = "the offers' agent is no longer reachable"
	}
	seen := map[string]bool{}
	for _, op := range a.Operations {
		switch op.Type {
		case api.OperationKill:
			s.killLocked(t, fw, *op.Kill, now)
		case api.OperationLaunch:
			for i, ti := range op.Launch.TaskInfos {
				ti.FrameworkID = fw.info.ID
				e := &taskEntry{info: ti, agentID: agentID}
				if bad != "" {
					s.refuseTaskLocked(t, fw, e, task.ReasonInvalidOffers, bad, now)
					continue
				}
				if err := s.checkTaskLocked(t, ti, pool, seen); err != nil {
					s.refuseTaskLocked(t, fw, e, task.ReasonTaskInvalid, fmt.Sprintf("accept.operations.launch.task_infos[%d].%v", i, err), now)
					continue
				}
				seen[ti.TaskID] = true
				pool, _ = pool.Subtract(ti.Resources)
				e.heldBy = fw.info.ID // the offer's resources, held already
				e.status = masterStatus(e, task.Staging, "", "", now)
				t.putTask(e)
				s.launchLocked(t, ag.info, e)
			}
		}
	}
	if agentID != "" && !pool.IsEmpty() {
		if err := t.alloc.Recover(fw.info.ID, agentID, pool, refuseTime(a.Filters), now); err != nil {
			s.logger.Error("accept: allocator", "agent", agentID, "err", err)
		}
		s.poke()
	}
}

// refuseTaskLocked ends a launch the master refused: TASK_ERROR with the reason. It is not
// kept in the table (the id was never the task's), so the same id can be launched again.
func (s *Scheduler) refuseTaskLocked(t *schedTerm, fw *fwEntry, e *taskEntry, reason task.Reason, msg string, now time.Time) {
	s.tellLocked(t, fw.info.ID, masterStatus(e, task.Error, reason, msg, now))
}

// checkTaskLocked checks one task of a launch; its error names the field.
func (s *Scheduler) checkTaskLocked(t *schedTerm, ti api.TaskInfo, pool resources.Resources, seen map[string]bool) error {
	if err := id.TaskID(ti.TaskID).ValidateContainerName(); err != nil {
		return &api.FieldError{Field: "task_id", Msg: err.Error()}
	}
	if old := t.tasks[ti.TaskID]; seen[ti.TaskID] || old != nil && !old.status.State.IsTerminal() {
		return &api.FieldError{Field: "task_id", Msg: fmt.Sprintf("a task %s exists already and has not ended", ti.TaskID)}
	}
	if err := ti.Resources.Validate(); err != nil {
		return &api.FieldError{Field: "resources", Msg: err.Error()}
	}
	if ti.Resources.CPUs <= 0 || ti.Resources.Mem <= 0 {
		return &api.FieldError{Field: "resources", Msg: fmt.Sprintf("%s: a task needs some cpus and mem", ti.Resources)}
	}
	if !pool.Contains(ti.Resources) {
		return &api.FieldError{Field: "resources", Msg: fmt.Sprintf("%s does not fit in what is left of the offers: %s", ti.Resources, pool)}
	}
	if ti.Image == "" && ti.Cmd == "" && len(ti.Args) == 0 {
		return &api.FieldError{Field: "cmd", Msg: "a task without an image needs a command or args (the program and its arguments)"}
	}
	return api.ValidateArtifacts("artifacts", ti.Artifacts)
}

// launchLocked sends a task to its agent in the background. A refusal by the agent ends the
// task as TASK_ERROR; an agent that cannot be reached, as TASK_DROPPED (it never got there).
func (s *Scheduler) launchLocked(t *schedTerm, ag api.Agent, e *taskEntry) {
	info := e.info
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.cfg.Agents.Launch(ctx, ag, info)
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.term != t {
			return
		}
		cur := t.tasks[info.TaskID]
		if cur != e {
			return
		}
		now := s.cfg.Clock.Now()
		var ref *AgentRefusal
		switch {
		case err == nil:
			if e.killRequested {
				s.killOnAgentLocked(t, ag, info.TaskID, 0)
			}
		case e.status.State != task.Staging:
			// The agent's own updates got here first; they are the truth.
		case errors.As(err, &ref) && ref.Status == http.StatusMisdirectedRequest:
			// Another agent answers at its address (it replaced the one meant): the task never
			// reached its agent.
			s.setStatusLocked(t, e, masterStatus(e, task.Dropped, task.ReasonAgentRemoved, "the task could not be sent to its agent: "+ref.Message, now), true, now)
		case errors.As(err, &ref):
			s.setStatusLocked(t, e, masterStatus(e, task.Error, task.ReasonTaskInvalid, "the agent refused the task: "+ref.Message, now), true, now)
		default:
			s.setStatusLocked(t, e, masterStatus(e, task.Dropped, task.ReasonAgentDisconnected, "the task could not be sent to its agent: "+err.Error(), now), true, now)
		}
	})
}

// killLocked kills a task of the framework. A task the master does not know is answered with
// TASK_UNKNOWN (partition-aware frameworks) or TASK_LOST, so a framework is never left waiting
// — once the master can know: while the agent it may be on has not registered with this
// leader, the kill waits for it (killed if the agent lists the task, answered if not), as a
// reconciliation question does. Answered at once, a task that runs there would be written off
// by its framework and then found running, owned by nothing.
func (s *Scheduler) killLocked(t *schedTerm, fw *fwEntry, k api.KillTask, now time.Time) {
	e := t.tasks[k.TaskID]
	if e == nil || e.info.FrameworkID != fw.info.ID {
		if e == nil && t.mayHaveLocked(k.AgentID) {
			t.waiting[k.AgentID] = append(t.waiting[k.AgentID], waitingQuery{fwID: fw.info.ID, taskID: k.TaskID, agentID: k.AgentID, kill: &k})
			return
		}
		if ag := t.agents[k.AgentID]; e == nil && ag != nil && ag.state == agentUnreachable {
			s.tellLocked(t, fw.info.ID, api.TaskStatus{TaskID: k.TaskID, FrameworkID: fw.info.ID, AgentID: k.AgentID, State: task.Unreachable,
				Reason: task.ReasonReconciliation, Source: task.SourceMaster, Message: "its agent is unreachable", Timestamp: now})
			return
		}
		state := task.Lost
		if fw.partitionAware() {
			state = task.Unknown
		}
		s.tellLocked(t, fw.info.ID, api.TaskStatus{TaskID: k.TaskID, FrameworkID: fw.info.ID, AgentID: k.AgentID, State: state,
			Reason: task.ReasonReconciliation, Source: task.SourceMaster, Message: "the master knows no such task of this framework", Timestamp: now})
		return
	}
	if e.status.State.IsTerminal() {
		s.tellLocked(t, fw.info.ID, reconciled(e.status))
		return
	}
	ag := t.agents[e.agentID]
	if ag == nil || ag.state != agentActive {
		return // unreachable: the framework has been told; the agent kills it if it comes back after removal
	}
	grace := time.Duration(k.GracePeriodSeconds * float64(time.Second))
	if e.status.State == task.Staging {
		e.killRequested = true
		return
	}
	s.killOnAgentLocked(t, ag.info, e.info.TaskID, grace)
}

// acknowledgeLocked passes a framework's acknowledgement on to the agent.
func (s *Scheduler) acknowledgeLocked(t *schedTerm, fw *fwEntry, a api.AckUpdate) {
	e := t.tasks[a.TaskID]
	if e != nil && e.info.FrameworkID == fw.info.ID && e.unacked != nil && e.unacked.UUID == a.UUID {
		e.unacked = nil
		t.forgetReplacedLocked(e) // a failed launch a later one replaced while this waited for it
	}
	s.ackOnAgentLocked(t, a.AgentID, a.TaskID, a.UUID)
}

// ackOnAgentLocked passes an acknowledgement to the agent, in the background. An agent that
// cannot be reached resends the update later, and it is acknowledged again.
func (s *Scheduler) ackOnAgentLocked(t *schedTerm, agentID, taskID, uuid string) {
	ag := t.agents[agentID]
	if ag == nil || ag.state != agentActive {
		return
	}
	info := ag.info
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := s.cfg.Agents.Acknowledge(ctx, info, api.Acknowledgement{TaskID: taskID, UUID: uuid}); err != nil {
			s.logger.Debug("acknowledgement not delivered; the agent will resend the update", "agent", info.ID, "task", taskID, "err", err)
		}
	})
}

// reconcileLocked answers RECONCILE: with the given tasks, each one's latest state (held back
// while its agent has yet to register with this leader); without, every task of the framework
// the leader knows. Answers are UPDATE events without uuid.
func (s *Scheduler) reconcileLocked(t *schedTerm, fw *fwEntry, tasks []api.ReconcileTask, now time.Time) {
	if len(tasks) == 0 {
		for _, e := range t.tasks {
			if e.info.FrameworkID == fw.info.ID && !e.status.State.IsTerminal() {
				s.tellLocked(t, fw.info.ID, reconciledAnswer(e.status))
			}
		}
		return
	}
	for _, q := range tasks {
		s.reconcileOneLocked(t, fw, q, now)
	}
}

// mayHaveLocked says whether a task this leader does not know may still be on the agent (or,
// with no agent named, on any agent): one that has not registered with this leader yet.
func (t *schedTerm) mayHaveLocked(agentID string) bool {
	if agentID == "" {
		return t.anyRecovered()
	}
	ag := t.agents[agentID]
	return ag != nil && ag.state == agentRecovered
}

func reconciledAnswer(st api.TaskStatus) api.TaskStatus {
	st = reconciled(st)
	st.Reason = task.ReasonReconciliation
	return st
}

// reconcileOneLocked answers for one task, or holds the question until the agent it may be on
// has registered with this leader.
func (s *Scheduler) reconcileOneLocked(t *schedTerm, fw *fwEntry, q api.ReconcileTask, now time.Time) {
	if fw == nil || fw.session == nil {
		return
	}
	if e := t.tasks[q.TaskID]; e != nil && e.info.FrameworkID == fw.info.ID {
		s.tellLocked(t, fw.info.ID, reconciledAnswer(e.status))
		return
	}
	ag := t.agents[q.AgentID]
	if t.mayHaveLocked(q.AgentID) {
		t.waiting[q.AgentID] = append(t.waiting[q.AgentID], waitingQuery{fwID: fw.info.ID, taskID: q.TaskID, agentID: q.AgentID})
		return
	}
	st := api.TaskStatus{TaskID: q.TaskID, FrameworkID: fw.info.ID, AgentID: q.AgentID, Reason: task.ReasonReconciliation, Source: task.SourceMaster, Timestamp: now}
	switch {
	case ag != nil && ag.state == agentUnreachable:
		st.State, st.Message = task.Unreachable, "its agent is unreachable"
	case ag != nil:
		st.State, st.Message = lostState(fw), "its agent does not run it"
	case fw.partitionAware():
		st.State, st.Message = task.Unknown, "the master knows no such task"
	default:
		st.State, st.Message = task.Lost, "the master knows no such task"
	}
	s.tellLocked(t, fw.info.ID, st)
}

// removeFrameworkLocked tears a framework down: its tasks are killed, its offers and
// resources go back, its session ends, and it leaves the registry.
func (s *Scheduler) removeFrameworkLocked(t *schedTerm, fw *fwEntry, why string) {
	fwID := fw.info.ID
	for oid, o := range t.offers {
		if o.offer.FrameworkID == fwID {
			delete(t.offers, oid)
		}
	}
	var stillRunning []*taskEntry
	for _, e := range t.tasks {
		if e.info.FrameworkID != fwID {
			continue
		}
		if e.unacked != nil {
			// Nobody will acknowledge it now: the master does, so that the agent's next
			// updates (the kills below) are not held behind it.
			s.ackOnAgentLocked(t, e.agentID, e.info.TaskID, e.unacked.UUID)
			e.unacked = nil
		}
		if e.status.State.IsTerminal() {
			continue
		}
		if e.heldBy == fwID {
			e.heldBy = "" // the allocator forgets the framework's holdings below
			stillRunning = append(stillRunning, e)
		}
		if ag := t.agents[e.agentID]; ag != nil && ag.state == agentActive && e.status.State != task.Staging {
			s.killOnAgentLocked(t, ag.info, e.info.TaskID, 0)
		} else {
			e.killRequested = true
		}
	}
	if err := t.alloc.RemoveFramework(fwID); err != nil {
		s.logger.Error("remove framework: allocator", "framework", fwID, "err", err)
	}
	delete(t.frameworks, fwID)
	for _, e := range stillRunning {
		s.holdLocked(t, e) // held as unmanaged until the kill ends them
	}
	if fw.session != nil {
		fw.session.end(fmt.Errorf("%w: framework %s was removed: %s", ErrSubscriptionEnded, fwID, why))
	}
	s.proposeLocked(t, registry.RemoveFramework(fwID))
	s.poke()
}

// maxGraceSeconds bounds a kill's grace period at a day (larger ones overflowed a Duration).
const maxGraceSeconds = 86400

// knownCapabilities are the framework capabilities Agora acts on.
var knownCapabilities = []string{api.CapabilityPartitionAware}

// validateFrameworkInfo names the first field of a subscription that is wrong, and fills in
// the defaults.
func validateFrameworkInfo(fw *api.FrameworkInfo) error {
	const p = "subscribe.framework_info."
	fw.Name = strings.TrimSpace(fw.Name)
	switch {
	case fw.Name == "":
		return &api.FieldError{Field: p + "name", Msg: "is required"}
	case len(fw.Name) > 200:
		return &api.FieldError{Field: p + "name", Msg: "is longer than 200 characters"}
	case fw.FailoverTimeout < 0 || fw.FailoverTimeout > 365*24*3600:
		return &api.FieldError{Field: p + "failover_timeout", Msg: fmt.Sprintf("%v: must be 0 to a year, in seconds", fw.FailoverTimeout)}
	}
	if fw.ID != "" {
		if err := id.FrameworkID(fw.ID).Validate(); err != nil {
			return &api.FieldError{Field: p + "id", Msg: err.Error()}
		}
	}
	if fw.Role == "" {
		fw.Role = api.DefaultRole
	}
	if fw.Role != api.DefaultRole {
		if err := validateRole(fw.Role); err != nil {
			return &api.FieldError{Field: p + "role", Msg: err.Error()}
		}
	}
	for i, c := range fw.Capabilities {
		if !slices.Contains(knownCapabilities, c) {
			return &api.FieldError{Field: fmt.Sprintf("%scapabilities[%d]", p, i), Msg: fmt.Sprintf("%q is not a capability Agora knows (%s)", c, strings.Join(knownCapabilities, ", "))}
		}
	}
	return nil
}

// validateRole applies Mesos's rules for role names.
func validateRole(r string) error {
	switch {
	case len(r) > 100:
		return fmt.Errorf("%.20q...: longer than 100 characters", r)
	case r == "." || r == ".." || strings.HasPrefix(r, "-"):
		return fmt.Errorf("%q is not a role name", r)
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// ownerOf is who may subscribe and call as a registered framework. A framework registered by a
// build before principals has none: if an embedded framework registers under its name
// (embedded), it is the embedded one's, so that no API caller can take it before the embedded
// framework subscribes again after the upgrade; otherwise the first principal that subscribes
// again with its id becomes its owner ("" here: anyone).
func ownerOf(fw api.FrameworkInfo, embedded map[string]bool) string {
	if fw.Principal == "" && embedded[fw.Name] {
		return auth.Embedded
	}
	return fw.Principal
}

// checkOwner refuses a principal that is not the framework's owner.
func checkOwner(fw api.FrameworkInfo, embedded map[string]bool, caller string) error {
	if owner := ownerOf(fw, embedded); owner != "" && owner != caller {
		return &registry.OwnerError{FrameworkID: fw.ID, Name: fw.Name, Owner: owner, Caller: caller}
	}
	return nil
}
