package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/task"
)

// Agents: registrations (the agent is the truth about its tasks), liveness through gossip,
// availability, removal, and drains.

// Registration is an agent's registration as the registry committed it (registry.Registered),
// with the tasks the agent listed.
type Registration struct {
	registry.Registered
	Tasks []api.Task
}

// AgentsRegistered takes in agents that registered with this leader (committed to the
// registry already), each with the tasks it lists and the agents its registration superseded
// (removed from the registry by the same command: same host address). A new agent is offered
// from the next cycle. An agent already known brings its tasks' real states: tasks the leader
// had marked unreachable are back, and tasks it does not list, ended. An agent that had been
// removed gets its tasks killed: their frameworks were told they are gone and have replaced
// them. A superseded agent's tasks end at once, as TASK_GONE or TASK_LOST. Registrations
// passed together are taken in together, between two allocation cycles.
func (s *Scheduler) AgentsRegistered(regs ...Registration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range regs {
		ag := r.Agent
		if t := s.term; t != nil {
			now := s.cfg.Clock.Now()
			for _, old := range r.Superseded {
				s.forgetReservationsLocked(t, old.ID)
				if e := t.agents[old.ID]; e != nil {
					s.logger.Warn("agent superseded: a new agent registered from its hostname and API address, so its process is gone (its data dir was lost); its tasks are lost",
						"agent", old.ID, "by", ag.ID, "hostname", ag.Hostname, "http", ag.HTTP, "tasks", len(t.byAgent[old.ID]))
					s.forgetAgentLocked(t, e, "agent "+old.ID+" was superseded by agent "+ag.ID+", which registered from the same host and address ("+ag.Hostname+", "+ag.HTTP+"): the old agent's data dir, and its tasks, were lost", now)
				}
			}
		}
		s.agentRegisteredLocked(ag, r.Tasks, r.WasRemoved)
	}
}

func (s *Scheduler) agentRegisteredLocked(ag api.Agent, tasks []api.Task, wasRemoved bool) {
	t := s.term
	if t == nil {
		return // a new leader gets the registration again
	}
	now := s.cfg.Clock.Now()
	e := t.agents[ag.ID]
	if e == nil {
		e = &agentEntry{info: ag, state: agentRecovered}
		t.agents[ag.ID] = e
	}
	if e.inAlloc && !e.info.Resources.Equal(ag.Resources) {
		// It came back with other resources: start its books over with the new total.
		s.logger.Warn("agent registered with other resources", "agent", ag.ID, "was", e.info.Resources.String(), "now", ag.Resources.String())
		for oid, o := range t.offers {
			if o.offer.AgentID == ag.ID {
				s.rescindLocked(t, oid, now)
			}
		}
		if err := t.alloc.RemoveAgent(ag.ID); err != nil {
			s.logger.Error("agent resources: allocator", "agent", ag.ID, "err", err)
		}
		e.inAlloc = false
		for _, te := range t.byAgent[ag.ID] {
			te.heldBy = ""
		}
	}
	e.info = ag
	if wasRemoved {
		s.logger.Warn("a removed agent came back; killing the tasks it still runs, which were written off", "agent", ag.ID, "tasks", len(tasks))
		for _, tk := range tasks {
			if !tk.Status.State.IsTerminal() {
				s.killOnAgentLocked(t, ag, tk.Info.TaskID, 0)
			}
		}
		tasks = nil
	}
	s.agentTasksLocked(t, e, tasks, now)
	s.logger.Info("agent registered", "agent", ag.ID, "hostname", ag.Hostname, "tasks", len(tasks))
	s.poke()
}

// agentTasksLocked makes the task table agree with what an agent reports and marks the agent
// active: the agent is the truth about its tasks.
func (s *Scheduler) agentTasksLocked(t *schedTerm, e *agentEntry, tasks []api.Task, now time.Time) {
	e.state, e.unreachableSince, e.fetching = agentActive, time.Time{}, false
	if !e.inAlloc {
		if err := t.alloc.AddAgent(e.info.ID, e.info.Resources); err != nil {
			s.logger.Error("agent: allocator", "agent", e.info.ID, "err", err)
		}
		e.inAlloc = true
		s.reserveInAllocLocked(t, e.info)
		for _, te := range t.byAgent[e.info.ID] {
			s.holdLocked(t, te)
		}
	}
	if e.unavailable == "" {
		if err := t.alloc.ActivateAgent(e.info.ID); err != nil {
			s.logger.Error("agent active: allocator", "agent", e.info.ID, "err", err)
		}
	} else if err := t.alloc.DeactivateAgent(e.info.ID); err != nil {
		s.logger.Error("agent unavailable: allocator", "agent", e.info.ID, "err", err)
	}
	for id, k := range t.pendingKills { // kills that did not reach it go again at the next step
		if te := t.tasks[id]; te != nil && te.agentID == e.info.ID {
			k.next = now
			t.pendingKills[id] = k
		}
	}
	listed := make(map[string]bool, len(tasks))
	for _, tk := range tasks {
		st := tk.Status
		st.AgentID = e.info.ID
		listed[tk.Info.TaskID] = true
		fwID := tk.Info.FrameworkID
		te := t.tasks[tk.Info.TaskID]
		if te == nil {
			te = &taskEntry{info: tk.Info, agentID: e.info.ID, status: st, agentTS: st.Timestamp, ran: tk.StartedAt != nil || st.State == task.Running}
			te.noteStatus(st)
			te.noteStatus(st)
			t.putTask(te)
			if st.State.IsTerminal() {
				t.keepEndedLocked(te, s.cfg.KeepEnded) // listed among the ended, and forgotten in turn
			}
			s.holdLocked(t, te) // until it ends, even an orphan's resources are not free
			if fwID != "" && t.frameworks[fwID] == nil {
				if !st.State.IsTerminal() {
					s.logger.Warn("killing an orphan task: its framework was removed", "agent", e.info.ID, "task", tk.Info.TaskID, "framework", fwID)
					s.killOnAgentLocked(t, e.info, tk.Info.TaskID, 0)
				}
				continue
			}
			if !st.State.IsTerminal() {
				// A new leader tells frameworks where their tasks stand as agents come back,
				// whether the agent comes back in time or after this leader declared it
				// unreachable (and answered the frameworks' questions about its tasks so):
				// a task it learns only now is one no framework heard of from it.
				s.tellLocked(t, fwID, reconciled(st))
			}
			continue
		}
		if te.status.State.IsTerminal() {
			continue
		}
		if te.status.Source == task.SourceMaster || st.Timestamp.After(te.agentTS) {
			changed := te.status.State != st.State
			te.agentTS = st.Timestamp
			s.setStatusLocked(t, te, reconciled(st), changed, now)
		}
	}
	for id, te := range t.byAgent[e.info.ID] {
		if listed[id] || te.status.State.IsTerminal() || te.status.State == task.Staging {
			continue
		}
		s.setStatusLocked(t, te, masterStatus(te, lostState(t.frameworks[te.info.FrameworkID]), task.ReasonReconciliation,
			"the agent does not know this task (its data dir was lost, or the task never reached it)", now), true, now)
	}
	if e.info.DrainingSince != nil {
		s.applyDrainLocked(t, e, now) // drained before: no offers, and nothing may run on it
	}
	s.answerWaitingLocked(t, e.info.ID, now)
}

// livenessLocked follows agents through gossip: a dead or departed agent is unreachable, and
// so is an active one that no gossip member has carried the id of for AgentGossipGrace (its
// process is gone and another took its gossip name: an agent restarted without its data dir);
// one back alive is asked for its tasks; one unreachable for longer than the removal timeout is
// removed; one that did not register with a new leader in time is unreachable. members is nil
// when this master has no gossip to follow.
func (s *Scheduler) livenessLocked(t *schedTerm, members []gossip.Member, now time.Time) {
	status := map[string]gossip.Status{}
	unavailable := map[string]string{}
	for _, m := range members {
		if m.Meta.Role == gossip.RoleAgent && m.Meta.ID != "" {
			status[m.Meta.ID] = m.Status
			unavailable[m.Meta.ID] = m.Meta.Unavailable
		}
	}
	presence, _ := s.cfg.Agents.(agentPresence)
	for _, e := range t.agents {
		st, seen := status[e.info.ID]
		if seen && st == gossip.StatusAlive && unavailable[e.info.ID] != e.unavailable {
			s.availabilityLocked(t, e, unavailable[e.info.ID], now)
		}
		switch e.state {
		case agentRecovered:
			if now.Sub(t.started) >= s.cfg.AgentReregisterTimeout {
				s.unreachableLocked(t, e, "it did not register with the new leader in time", now)
			} else if seen && st == gossip.StatusAlive && !e.fetching {
				// Alive: ask it rather than wait (a leader that leads again under the same id
				// is not a new leader to the agent, which then does not register again).
				e.fetching = true
				s.fetchAgentLocked(t, e.info)
			}
		case agentActive:
			switch {
			case seen && (st == gossip.StatusDead || st == gossip.StatusLeft):
				s.unreachableLocked(t, e, "gossip reports it "+string(st), now)
			case seen || members == nil || presence != nil && presence.Present(e.info.ID):
				e.missingSince = time.Time{}
			case e.missingSince.IsZero():
				e.missingSince = now
			case now.Sub(e.missingSince) >= s.cfg.AgentGossipGrace:
				s.unreachableLocked(t, e, fmt.Sprintf("no gossip member has carried its id for %s: its process is gone (another may have taken its gossip name)", s.cfg.AgentGossipGrace), now)
			}
		case agentUnreachable:
			if now.Sub(e.unreachableSince) >= s.cfg.AgentRemovalTimeout {
				s.removeAgentLocked(t, e, now)
				continue
			}
			if seen && st == gossip.StatusAlive && !e.fetching {
				e.fetching = true
				s.fetchAgentLocked(t, e.info)
			}
		}
	}
}

// agentPresence is an optional ability of an AgentConn whose agents are not members of the
// gossip pool (mastertest.SimulatedAgents): Present says whether an agent is there, where gossip cannot.
type agentPresence interface {
	Present(agentID string) bool
}

// availabilityLocked takes in an agent's word that it can take no tasks now (why: its container
// runtime does not answer), or, with why empty, that it can again. An unavailable agent is
// offered to nobody and its outstanding offers are rescinded, so that no launch is sent where
// it cannot run; its tasks keep their states (they run on, the agent still watches them), as a
// node whose runtime is down is not ready for new work while its running work is not failed.
func (s *Scheduler) availabilityLocked(t *schedTerm, e *agentEntry, why string, now time.Time) {
	was := e.unavailable
	e.unavailable = why
	if e.state != agentActive || !e.inAlloc {
		return // agentTasksLocked applies it when the agent is active again
	}
	switch {
	case was == "" && why != "":
		s.logger.Warn("agent unavailable: no offers of it until it takes tasks again", "agent", e.info.ID, "why", why)
		for oid, o := range t.offers {
			if o.offer.AgentID == e.info.ID {
				s.rescindLocked(t, oid, now)
			}
		}
		if err := t.alloc.DeactivateAgent(e.info.ID); err != nil {
			s.logger.Error("agent unavailable: allocator", "agent", e.info.ID, "err", err)
		}
	case was != "" && why == "":
		s.logger.Info("agent available again", "agent", e.info.ID)
		if e.info.DrainingSince == nil {
			if err := t.alloc.ActivateAgent(e.info.ID); err != nil {
				s.logger.Error("agent available: allocator", "agent", e.info.ID, "err", err)
			}
			s.poke()
		}
	}
}

// fetchAgentLocked asks an agent that is alive again for its tasks, and takes it back.
func (s *Scheduler) fetchAgentLocked(t *schedTerm, ag api.Agent) {
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tasks, err := s.cfg.Agents.Tasks(ctx, ag)
		s.mu.Lock()
		defer s.mu.Unlock()
		e := t.agents[ag.ID]
		if s.term != t || e == nil || e.state == agentActive {
			return
		}
		e.fetching = false
		if err != nil {
			s.logger.Warn("agent alive in gossip but its API does not answer", "agent", ag.ID, "err", err)
			return
		}
		s.logger.Info("agent reachable", "agent", ag.ID, "was", e.state)
		s.agentTasksLocked(t, e, tasks, s.cfg.Clock.Now())
		s.poke()
	})
}

// unreachableLocked marks an agent unreachable: no more offers of it, its offers rescinded, its
// tasks TASK_UNREACHABLE to their frameworks (their resources stay held: the tasks may well
// be running).
func (s *Scheduler) unreachableLocked(t *schedTerm, e *agentEntry, why string, now time.Time) {
	s.logger.Warn("agent unreachable", "agent", e.info.ID, "why", why)
	e.state, e.unreachableSince = agentUnreachable, now
	if e.inAlloc {
		if err := t.alloc.DeactivateAgent(e.info.ID); err != nil {
			s.logger.Error("agent unreachable: allocator", "agent", e.info.ID, "err", err)
		}
	}
	for oid, o := range t.offers {
		if o.offer.AgentID == e.info.ID {
			s.rescindLocked(t, oid, now)
		}
	}
	for _, te := range t.byAgent[e.info.ID] {
		if !te.status.State.IsTerminal() {
			s.setStatusLocked(t, te, masterStatus(te, task.Unreachable, task.ReasonAgentDisconnected, "agent "+e.info.ID+" is unreachable: "+why, now), true, now)
		}
	}
	if e.info.DrainingSince != nil {
		s.applyDrainLocked(t, e, now) // drained before: no offers, and nothing may run on it
	}
	s.answerWaitingLocked(t, e.info.ID, now)
}

// removeAgentLocked gives an agent up after the removal timeout: its tasks end as TASK_GONE or
// TASK_LOST, frameworks get a FAILURE event, and the registry keeps a tombstone so that its
// tasks are killed if it comes back.
func (s *Scheduler) removeAgentLocked(t *schedTerm, e *agentEntry, now time.Time) {
	s.logger.Warn("agent removed: unreachable for longer than --agent-removal-timeout", "agent", e.info.ID, "since", e.unreachableSince)
	s.forgetAgentLocked(t, e, "agent "+e.info.ID+" was unreachable for longer than the agent removal timeout", now)
	s.proposeLocked(t, registry.RemoveAgent(e.info.ID))
}

// forgetAgentLocked takes a removed agent out of the term: its tasks end as TASK_GONE
// (partition-aware frameworks) or TASK_LOST with REASON_AGENT_REMOVED and why, it is offered
// no more, and frameworks get a FAILURE event. The registry's tombstone is the caller's.
func (s *Scheduler) forgetAgentLocked(t *schedTerm, e *agentEntry, why string, now time.Time) {
	for oid, o := range t.offers {
		if o.offer.AgentID == e.info.ID {
			s.rescindLocked(t, oid, now)
		}
	}
	for _, te := range t.byAgent[e.info.ID] {
		if !te.status.State.IsTerminal() {
			s.setStatusLocked(t, te, masterStatus(te, lostState(t.frameworks[te.info.FrameworkID]), task.ReasonAgentRemoved, why, now), true, now)
		}
	}
	if e.inAlloc {
		if err := t.alloc.RemoveAgent(e.info.ID); err != nil {
			s.logger.Error("agent removed: allocator", "agent", e.info.ID, "err", err)
		}
	}
	s.forgetReservationsLocked(t, e.info.ID)
	delete(t.agents, e.info.ID)
	for _, fw := range t.frameworks {
		if fw.session != nil {
			fw.session.push(api.Event{Type: api.EventFailure, Failure: &api.Failure{AgentID: e.info.ID}})
		}
	}
	s.answerWaitingLocked(t, e.info.ID, now)
}

// SetDraining applies an agent's drain mark to the leader's memory: a drained agent's offers
// are rescinded, it gets no more, and its live tasks are killed; a reactivated one is offered
// again. It answers how many tasks it asked the agent to kill.
func (s *Scheduler) SetDraining(ag api.Agent) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return 0
	}
	e := t.agents[ag.ID]
	if e == nil {
		return 0
	}
	e.info.DrainingSince = ag.DrainingSince
	return s.applyDrainLocked(t, e, s.cfg.Clock.Now())
}

// applyDrainLocked keeps an active agent's standing in the allocator as its drain mark says.
func (s *Scheduler) applyDrainLocked(t *schedTerm, e *agentEntry, now time.Time) int {
	if e.state != agentActive || !e.inAlloc {
		return 0
	}
	if e.info.DrainingSince == nil {
		if e.unavailable != "" {
			return 0 // offered again when it takes tasks again (availabilityLocked)
		}
		if err := t.alloc.ActivateAgent(e.info.ID); err != nil {
			s.logger.Error("agent reactivated: allocator", "agent", e.info.ID, "err", err)
		}
		s.poke()
		return 0
	}
	for oid, o := range t.offers {
		if o.offer.AgentID == e.info.ID {
			s.rescindLocked(t, oid, now)
		}
	}
	if err := t.alloc.DeactivateAgent(e.info.ID); err != nil {
		s.logger.Error("agent drained: allocator", "agent", e.info.ID, "err", err)
	}
	killed := 0
	for _, te := range t.byAgent[e.info.ID] {
		if te.status.State.IsTerminal() {
			continue
		}
		killed++
		if te.status.State == task.Staging {
			te.killRequested = true
			continue
		}
		s.killOnAgentLocked(t, e.info, te.info.TaskID, graceOf(te.info))
	}
	return killed
}
