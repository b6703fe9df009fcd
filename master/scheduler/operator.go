package scheduler

import (
	"errors"
	"fmt"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// What an operator sees of, and does to, the leader's agents and tasks (the API's GET
// /v1/agents and /v1/agents/{id}, drain and reactivate, GET /v1/tasks/{id} and its kill).

// The operator's misses (the API answers 404, 409, 404).
var (
	ErrNoTask    = errors.New("no such task")
	ErrTaskEnded = errors.New("the task has ended")
	ErrNoAgent   = errors.New("no such agent")
)

// agentLoad is what an agent's tasks hold, counted by the leader.
type agentLoad struct {
	state       string
	unavailable string
	used        resources.Resources
	tasks       int
}

// agentsLoad is every agent the leader knows: its state and its live tasks' resources.
func (s *Scheduler) agentsLoad() (map[string]agentLoad, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make(map[string]agentLoad, len(t.agents))
	for id, e := range t.agents {
		l := agentLoad{state: e.state.String(), unavailable: e.unavailable}
		switch {
		case e.info.DrainingSince != nil && e.state == agentActive:
			l.state = "draining"
		case e.unavailable != "" && e.state == agentActive:
			l.state = "unavailable"
		}
		if e.info.RemovedAt != nil {
			l.state = "removed"
		}
		for _, te := range t.byAgent[id] {
			if te.status.State.IsTerminal() {
				continue
			}
			l.tasks++
			l.used = l.used.Add(te.info.Resources)
		}
		out[id] = l
	}
	return out, nil
}

// AgentViews joins agents' records (of the registry) with where each stands with this leader:
// its state, why it is unavailable, what its live tasks use. Off the leader, the records only
// (a removed one says so).
func (s *Scheduler) AgentViews(agents []api.Agent) []api.AgentView {
	out := make([]api.AgentView, len(agents))
	load, _ := s.agentsLoad() // nil off the leader: registry only
	for i, ag := range agents {
		out[i] = api.AgentView{Agent: ag}
		if l, ok := load[ag.ID]; ok {
			out[i].State, out[i].Unavailable, out[i].Used, out[i].Tasks = l.state, l.unavailable, l.used, l.tasks
		} else if ag.RemovedAt != nil {
			out[i].State = "removed"
		}
	}
	return out
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

func graceOf(ti api.TaskInfo) time.Duration {
	return time.Duration(ti.KillGracePeriodSeconds * float64(time.Second))
}

// TaskAt is a task's latest status and the agent it is on.
func (s *Scheduler) TaskAt(taskID string) (api.TaskStatus, api.Agent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return api.TaskStatus{}, api.Agent{}, ErrNotReady
	}
	e := t.tasks[taskID]
	if e == nil {
		return api.TaskStatus{}, api.Agent{}, ErrNoTask
	}
	ag := t.agents[e.agentID]
	if ag == nil {
		return e.status, api.Agent{}, ErrNoAgent
	}
	return e.status, ag.info, nil
}

// OperatorKill kills a task for an operator: its framework gets the agent's TASK_KILLED as for
// its own kill (a service framework then replaces it). grace nil: the task's own.
func (s *Scheduler) OperatorKill(taskID string, grace *time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return ErrNotReady
	}
	e := t.tasks[taskID]
	if e == nil {
		return ErrNoTask
	}
	if e.status.State.IsTerminal() {
		return ErrTaskEnded
	}
	ag := t.agents[e.agentID]
	if ag == nil || ag.state != agentActive {
		return fmt.Errorf("its agent %s is not reachable: %w", e.agentID, ErrNotReady)
	}
	g := graceOf(e.info)
	if grace != nil {
		g = *grace
	}
	if e.status.State == task.Staging {
		e.killRequested = true
		return nil
	}
	s.killOnAgentLocked(t, ag.info, taskID, g)
	return nil
}
