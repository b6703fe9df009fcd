package scheduler

import (
	"context"
	"errors"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// Tasks' states and what goes out of the lock: status updates recorded and told to frameworks,
// kills and acknowledgements sent to agents and registry changes proposed in the background,
// allocation cycles asked for; and the answers about tasks — a framework's kill, a
// reconciliation question — that wait while the agent a task may be on has not registered.

// poke asks for an allocation cycle soon.
func (s *Scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// setStatusLocked records a task's new status; the first terminal one frees its resources. With
// forward, the framework is told (the master's own updates carry no uuid and need no ack).
func (s *Scheduler) setStatusLocked(t *schedTerm, e *taskEntry, st api.TaskStatus, forward bool, now time.Time) {
	wasTerminal := e.status.State.IsTerminal()
	if s.cfg.OnTaskChange != nil && ((e.status.State == task.Running) != (st.State == task.Running) || healthOf(e.status) != healthOf(st)) {
		s.cfg.OnTaskChange()
	}
	st.AgentID = e.agentID
	st.FrameworkID = e.info.FrameworkID
	e.status = st
	e.noteStatus(st)
	if st.State == task.Running {
		e.ran = true
	}
	if st.State.IsTerminal() && !wasTerminal {
		if e.heldBy != "" {
			holder := e.heldBy
			e.heldBy = ""
			if err := t.alloc.Recover(holder, e.agentID, e.info.Resources, 0, now); err != nil {
				s.logger.Debug("task ended: allocator", "task", e.info.TaskID, "err", err)
			}
			s.poke()
		}
		t.keepEndedLocked(e, s.cfg.KeepEnded)
	}
	if forward {
		s.tellLocked(t, e.info.FrameworkID, st)
	}
}

// healthOf is a status's health: "" when it says none.
func healthOf(st api.TaskStatus) string {
	switch {
	case st.Healthy == nil:
		return ""
	case *st.Healthy:
		return "healthy"
	}
	return "unhealthy"
}

// tellLocked sends a status update to a framework, if it is connected.
func (s *Scheduler) tellLocked(t *schedTerm, fwID string, st api.TaskStatus) {
	if fw := t.frameworks[fwID]; fw != nil && fw.session != nil {
		fw.session.push(api.Event{Type: api.EventUpdate, Update: &api.Update{Status: st}})
	}
}

// killOnAgentLocked asks the agent to kill a task, in the background.
//
// A kill that does not reach the agent (it is restarting, or the network failed) is not
// dropped: it is kept in the term's pendingKills and sent again every killRetry while the
// agent is active (and at once when it registers again) until the task ends — a framework that
// asked for a kill must not find the task running for good because one message was lost.
func (s *Scheduler) killOnAgentLocked(t *schedTerm, ag api.Agent, taskID string, grace time.Duration) {
	t.goLocked(func(ctx context.Context) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.cfg.Agents.Kill(cctx, ag, taskID, grace)
		cancel()
		var ref *AgentRefusal
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.term != t {
			return
		}
		if err == nil || errors.As(err, &ref) { // delivered, or the agent has no such task
			delete(t.pendingKills, taskID)
			return
		}
		s.logger.Warn("kill not delivered to the agent; sent again until the task ends", "agent", ag.ID, "task", taskID, "err", err)
		t.pendingKills[taskID] = pendingKill{grace: grace, next: s.cfg.Clock.Now().Add(killRetry)}
	})
}

// killRetry is how often a kill that did not reach its agent is sent again.
const killRetry = 5 * time.Second

// pendingKill is a kill that has not reached its agent yet.
type pendingKill struct {
	grace time.Duration
	next  time.Time // when to send it again
}

// retryKillsLocked sends again the kills due whose agents are active; a task that ended, or is
// gone, needs none.
func (s *Scheduler) retryKillsLocked(t *schedTerm, now time.Time) {
	for id, k := range t.pendingKills {
		e := t.tasks[id]
		if e == nil || e.status.State.IsTerminal() {
			delete(t.pendingKills, id)
			continue
		}
		ag := t.agents[e.agentID]
		if ag == nil || ag.state != agentActive || now.Before(k.next) {
			continue
		}
		k.next = now.Add(killRetry)
		t.pendingKills[id] = k
		s.killOnAgentLocked(t, ag.info, id, k.grace)
	}
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

// propose commits a registry change in the background (a change that must happen, and that a
// next leader would redo if this one is lost).
func (s *Scheduler) proposeLocked(t *schedTerm, cmd raft.Command) {
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := s.store.Apply(ctx, cmd); err != nil {
			s.logger.Warn("registry change not committed; the next leader redoes it", "type", cmd.Type, "err", err)
		}
	})
}

// AgentStatus takes in a status update an agent sent. It answers whether the master
// acknowledges it at once: it does for an update nobody waits for (no framework, or one that
// was removed) and for a stale duplicate; otherwise the framework acknowledges it, and the
// agent resends it until then.
func (s *Scheduler) AgentStatus(agentID string, st api.TaskStatus) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return false, ErrNotReady
	}
	now := s.cfg.Clock.Now()
	ag := t.agents[agentID]
	if ag == nil || ag.state == agentRecovered {
		return false, ErrAgentUnregistered
	}
	e := t.tasks[st.TaskID]
	if e == nil {
		// Launched before this leader, or on the agent's own API (an operator's task without a
		// framework): the agent is the truth, the table learns it.
		e = &taskEntry{info: api.TaskInfo{TaskID: st.TaskID, FrameworkID: st.FrameworkID}, agentID: agentID}
		t.putTask(e)
	}
	if st.Timestamp.Before(e.agentTS) || e.status.State.IsTerminal() && !st.State.IsTerminal() {
		return true, nil
	}
	e.agentTS = st.Timestamp
	s.metrics.updates.WithLabelValues(string(st.State)).Inc()
	s.setStatusLocked(t, e, st, false, now)
	fw := t.frameworks[e.info.FrameworkID]
	if fw == nil {
		return true, nil
	}
	cp := e.status
	e.unacked = &cp
	s.tellLocked(t, fw.info.ID, cp)
	return false, nil
}

// ErrAgentUnregistered: the agent must register with this leader first.
var ErrAgentUnregistered = errors.New("master: this agent has not registered with the leader; register first")

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
	grace := time.Duration(k.GracePeriodSeconds * float64(time.Second))
	ag := t.agents[e.agentID]
	if ag == nil || ag.state != agentActive {
		// Unreachable: the framework has been told. The kill goes to the agent if it comes back
		// (past its removal, the agent kills every task it still runs).
		t.pendingKills[e.info.TaskID] = pendingKill{grace: grace, next: now}
		return
	}
	if e.status.State == task.Staging {
		e.killRequested = true
		return
	}
	s.killOnAgentLocked(t, ag.info, e.info.TaskID, grace)
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

// answerWaitingLocked answers the reconciliation questions, and sends the kills, held for an
// agent, now that it has registered or been declared unreachable; those that named no agent
// once no agent is left to hear from.
func (s *Scheduler) answerWaitingLocked(t *schedTerm, agentID string, now time.Time) {
	qs := t.waiting[agentID]
	delete(t.waiting, agentID)
	if len(t.waiting[""]) > 0 && !t.anyRecovered() {
		qs = append(qs, t.waiting[""]...)
		delete(t.waiting, "")
	}
	for _, q := range qs {
		fw := t.frameworks[q.fwID]
		if q.kill != nil {
			if fw != nil { // a framework removed meanwhile had its tasks killed already
				s.killLocked(t, fw, *q.kill, now)
			}
			continue
		}
		s.reconcileOneLocked(t, fw, api.ReconcileTask{TaskID: q.taskID, AgentID: q.agentID}, now)
	}
}
