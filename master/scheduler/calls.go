package scheduler

import (
	"fmt"
	"math"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// A framework's calls: Session's methods, each call's checks, and its dispatch.

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
		return s.acceptLocked(t, fw, c.Accept, now)
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
			case op.Type != api.OperationLaunch && op.Type != api.OperationKill && !isReservation(op.Type):
				return &api.FieldError{Field: fmt.Sprintf("accept.operations[%d].type", i), Msg: fmt.Sprintf("%q: want LAUNCH, KILL, RESERVE, UNRESERVE, CREATE or DESTROY", op.Type)}
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

// maxGraceSeconds bounds a kill's grace period at a day (larger ones overflowed a Duration).
const maxGraceSeconds = 86400

// acknowledgeLocked passes a framework's acknowledgement on to the agent.
func (s *Scheduler) acknowledgeLocked(t *schedTerm, fw *fwEntry, a api.AckUpdate) {
	e := t.tasks[a.TaskID]
	if e != nil && e.info.FrameworkID == fw.info.ID && e.unacked != nil && e.unacked.UUID == a.UUID {
		e.unacked = nil
		t.forgetReplacedLocked(e) // a failed launch a later one replaced while this waited for it
	}
	s.ackOnAgentLocked(t, a.AgentID, a.TaskID, a.UUID)
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
