package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/agora-sched/agora/master/allocator"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// Offers: made by allocation cycles, rescinded, declined, and accepted — each launch checked
// against the offers and sent to its agent. A task's resources stay held in the allocator until
// it ends (holdLocked, setStatusLocked).

// holdLocked counts a running task's resources as allocated on its agent: under its framework,
// or under unmanagedFramework. An agent that does not have them (it registered with fewer
// resources than its tasks hold) is logged, not fatal: the agent is the truth.
func (s *Scheduler) holdLocked(t *schedTerm, e *taskEntry) {
	if e.heldBy != "" || e.status.State.IsTerminal() || e.info.Resources.IsEmpty() {
		return
	}
	if ag := t.agents[e.agentID]; ag == nil || !ag.inAlloc {
		return
	}
	holder := e.info.FrameworkID
	if _, ok := t.frameworks[holder]; !ok {
		holder = unmanagedFramework
	}
	if err := t.alloc.Allocate(holder, e.agentID, e.info.Resources); err != nil {
		s.logger.Warn("task's resources: allocator", "task", e.info.TaskID, "agent", e.agentID, "err", err)
		return
	}
	e.heldBy = holder
}

// allocateLocked runs one allocation cycle and sends each framework its new offers.
func (s *Scheduler) allocateLocked(t *schedTerm, now time.Time) {
	byFw := map[string][]api.Offer{}
	start := time.Now()
	made := t.alloc.Cycle(now)
	t.fresh = t.fresh[:0]
	s.metrics.cycle.Observe(time.Since(start).Seconds())
	s.metrics.offers.WithLabelValues("made").Add(float64(len(made)))
	for _, o := range made {
		ag := t.agents[o.AgentID]
		offer := api.Offer{
			ID: string(s.ids.Offer()), FrameworkID: o.FrameworkID, AgentID: o.AgentID,
			Hostname: ag.info.Hostname, Resources: o.Resources, Attributes: ag.info.Attributes, Reserved: o.Reserved,
		}
		if fw := t.frameworks[o.FrameworkID]; fw != nil && t.reservations[o.AgentID] != nil {
			offer.Volumes = s.freeVolumesLocked(t, o.AgentID, fw.info.Role, offer.ID)
		}
		t.offers[offer.ID] = &offerEntry{offer: offer, expires: now.Add(s.cfg.OfferTimeout)}
		t.fresh = append(t.fresh, offer.ID)
		byFw[o.FrameworkID] = append(byFw[o.FrameworkID], offer)
	}
	for fwID, offers := range byFw {
		if fw := t.frameworks[fwID]; fw != nil && fw.session != nil {
			fw.session.push(api.Event{Type: api.EventOffers, Offers: &api.Offers{Offers: offers}})
		}
	}
}

// rescindLocked takes an outstanding offer back and gives its resources back to the allocator.
func (s *Scheduler) rescindLocked(t *schedTerm, offerID string, now time.Time) {
	o := t.offers[offerID]
	if o == nil {
		return
	}
	delete(t.offers, offerID)
	s.metrics.offers.WithLabelValues("rescinded").Inc()
	if err := t.alloc.Recover(o.offer.FrameworkID, o.offer.AgentID, o.offer.Resources, 0, now); err != nil {
		s.logger.Error("rescind: allocator", "offer", offerID, "err", err)
	}
	if fw := t.frameworks[o.offer.FrameworkID]; fw != nil && fw.session != nil {
		fw.session.push(api.Event{Type: api.EventRescind, Rescind: &api.Rescind{OfferID: offerID}})
	}
	s.poke()
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
// reason; the others go to the agent. What the launches leave of the offers is declined. An
// accept with reservation operations (RESERVE, UNRESERVE, CREATE, DESTROY) is checked as a
// whole first: one that does not fit its offers is refused (the error names the operation) and
// changes nothing; one that fits takes the offers, and its launches go to the agent once the
// reservations are committed (reservations.go).
func (s *Scheduler) acceptLocked(t *schedTerm, fw *fwEntry, a *api.Accept, now time.Time) error {
	var agentID, bad string
	var offers []*offerEntry
	for _, oid := range a.OfferIDs {
		o := t.offers[oid]
		switch {
		case o == nil || o.offer.FrameworkID != fw.info.ID:
			bad = fmt.Sprintf("offer %s is not outstanding for this framework (used, declined, rescinded or timed out)", oid)
			continue
		case agentID != "" && o.offer.AgentID != agentID:
			bad = fmt.Sprintf("offer %s is of agent %s, the others of %s: one accept uses offers of one agent", oid, o.offer.AgentID, agentID)
			continue
		case slices.Contains(offers, o):
			continue
		}
		agentID = o.offer.AgentID
		offers = append(offers, o)
	}
	ag := t.agents[agentID]
	if bad == "" && (ag == nil || ag.state != agentActive) {
		bad = "the offers' agent is no longer reachable"
	}
	p := newAcceptPlan(offers, fw.info.Role)
	reserving := slices.ContainsFunc(a.Operations, func(op api.Operation) bool { return isReservation(op.Type) })
	if reserving {
		if bad != "" {
			return &api.FieldError{Field: "accept.offer_ids", Msg: bad}
		}
		if err := p.checkReservations(fw.info.Role, a.Operations); err != nil {
			return err
		}
	}
	for _, o := range offers {
		delete(t.offers, o.offer.ID)
		s.metrics.offers.WithLabelValues("accepted").Inc()
	}
	seen := map[string]bool{}
	var launches []*taskEntry
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
				field := fmt.Sprintf("accept.operations.launch.task_infos[%d].", i)
				err := s.checkTaskLocked(t, ti, p.pool, seen)
				if err == nil {
					e.info.PersistentVolumes, err = p.mount(ti)
				}
				if err != nil {
					s.refuseTaskLocked(t, fw, e, task.ReasonTaskInvalid, field+err.Error(), now)
					continue
				}
				seen[ti.TaskID] = true
				p.use(ti.Resources)
				e.heldBy = fw.info.ID // the offer's resources, held already
				e.status = masterStatus(e, task.Staging, "", "", now)
				t.putTask(e)
				launches = append(launches, e)
			}
		default:
			p.apply(op) // checked above
		}
	}
	if reserving {
		s.commitReservationsLocked(t, fw, ag, a, p, launches, now)
		return nil
	}
	for _, e := range launches {
		s.launchLocked(t, ag.info, e)
	}
	s.returnRestLocked(t, fw, agentID, p.pool, refuseTime(a.Filters), now)
	return nil
}

// returnRestLocked gives back what an accept left of its offers, with the accept's filter.
func (s *Scheduler) returnRestLocked(t *schedTerm, fw *fwEntry, agentID string, rest resources.Resources, refuse time.Duration, now time.Time) {
	if agentID == "" || rest.IsEmpty() {
		return
	}
	if err := t.alloc.Recover(fw.info.ID, agentID, rest, refuse, now); err != nil {
		s.logger.Error("accept: allocator", "agent", agentID, "err", err)
	}
	s.poke()
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
	if err := api.ValidateSecretFiles("secret_files", ti.SecretFiles, ti.Image != ""); err != nil {
		return err
	}
	if err := api.ValidatePortProtocols(ti.PortProtocols, int(ti.Resources.Ports.Count())); err != nil {
		return err
	}
	return api.ValidateArtifacts("artifacts", ti.Artifacts)
}

// refuseTaskLocked ends a launch the master refused: TASK_ERROR with the reason. It is not
// kept in the table (the id was never the task's), so the same id can be launched again.
func (s *Scheduler) refuseTaskLocked(t *schedTerm, fw *fwEntry, e *taskEntry, reason task.Reason, msg string, now time.Time) {
	s.tellLocked(t, fw.info.ID, masterStatus(e, task.Error, reason, msg, now))
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
