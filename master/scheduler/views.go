package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// What the API reads of the leader's memory, and what an operator does to its agents and tasks
// (GET /v1/tasks, /v1/frameworks, /v1/agents and /v1/agents/{id}, /v1/state, GET /v1/tasks/{id}
// and its kill).

// The operator's misses (the API answers 404, 409, 404).
var (
	ErrNoTask    = errors.New("no such task")
	ErrTaskEnded = errors.New("the task has ended")
	ErrNoAgent   = errors.New("no such agent")
)

// Size is how many agents are active with this leader and how many tasks its table holds, the
// ended ones it still lists included; ErrNotReady while it does not lead. It walks the agents
// only: tests and benchmarks wait on it.
func (s *Scheduler) Size() (agents, tasks int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return 0, 0, ErrNotReady
	}
	for _, e := range t.agents {
		if e.state == agentActive {
			agents++
		}
	}
	return agents, len(t.tasks), nil
}

// TasksView lists the tasks the leader knows with their latest states.
func (s *Scheduler) TasksView() ([]api.TaskStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make([]api.TaskStatus, 0, len(t.tasks))
	for _, e := range t.tasks {
		out = append(out, e.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out, nil
}

// FrameworksView is what GET /v1/frameworks lists.
func (s *Scheduler) FrameworksView() ([]api.FrameworkState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	offered := map[string]resources.Resources{}
	for _, o := range t.offers {
		offered[o.offer.FrameworkID] = offered[o.offer.FrameworkID].Add(resources.Resources{CPUs: o.offer.Resources.CPUs, Mem: o.offer.Resources.Mem, Disk: o.offer.Resources.Disk})
	}
	running := map[string]int{}
	for _, e := range t.tasks {
		if !e.status.State.IsTerminal() {
			running[e.info.FrameworkID]++
		}
	}
	out := []api.FrameworkState{}
	for _, fw := range t.frameworks {
		st := api.FrameworkState{
			Info: fw.info, Connected: fw.session != nil, Allocated: t.alloc.Allocated(fw.info.ID),
			Offered: offered[fw.info.ID], Share: t.alloc.Share(fw.info.ID), Tasks: running[fw.info.ID],
		}
		st.Active = st.Connected && !fw.suppressed
		if fw.session == nil {
			at, deadline := fw.disconnectedAt, fw.disconnectedAt.Add(failoverTimeout(fw.info))
			st.DisconnectedAt, st.FailoverDeadline = &at, &deadline
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.ID < out[j].Info.ID })
	return out, nil
}

// TaskView is one task of the leader's table: what was launched, where, its latest state and
// the states it went through.
type TaskView struct {
	Info     api.TaskInfo // secrets masked
	AgentID  string
	Status   api.TaskStatus
	Statuses []StatusMark
}

// TasksFullView is every task of the leader's table with what was launched, by id.
func (s *Scheduler) TasksFullView() ([]TaskView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make([]TaskView, 0, len(t.tasks))
	for _, e := range t.tasks {
		out = append(out, TaskView{Info: e.info.Masked(), AgentID: e.agentID, Status: e.status, Statuses: slices.Clone(e.statuses)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out, nil
}

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

// LiveTasks lists the tasks of the leader's table that have not ended, with where they run and
// their latest states (service discovery reads them, master/discovery). Of what each was
// launched with, only its id, framework, name, ports (with their names and protocols) and health
// checks are copied; the slices are the table's own, which nothing changes after a launch.
// Statuses are left out.
func (s *Scheduler) LiveTasks() ([]TaskView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make([]TaskView, 0, len(t.tasks))
	for _, e := range t.tasks {
		if e.status.State.IsTerminal() {
			continue
		}
		info := api.TaskInfo{TaskID: e.info.TaskID, FrameworkID: e.info.FrameworkID, Name: e.info.Name, Resources: resources.Resources{Ports: e.info.Resources.Ports},
			PortNames: e.info.PortNames, PortProtocols: e.info.PortProtocols, HealthChecks: e.info.HealthChecks}
		out = append(out, TaskView{Info: info, AgentID: e.agentID, Status: e.status})
	}
	return out, nil
}
