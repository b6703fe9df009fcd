package mastertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// SimulatedAgents stand in for agents in benchmarks and large simulated clusters, and only
// there: a launch is reported TASK_STARTING then TASK_RUNNING straight into the leader's
// scheduler, a kill TASK_KILLED; nothing runs, nothing goes over the network, and they keep
// nothing, so what is measured is the master's (and its frameworks') own work. Every behaviour
// they stand in for is tested on the real path with agents on containerd.
//
// Use: pass one as master.SchedulerConfig.Agents (the scheduler attaches it to itself when it is
// made: scheduler.Attacher), then AddAgents on the leader.
type SimulatedAgents struct {
	s        atomic.Pointer[scheduler.Scheduler]
	Launched atomic.Int64
	// Finish, when set, says how a launched task ends: its final state (TASK_FINISHED with exit
	// status 0, TASK_FAILED with 1) after a while; "" runs it until killed. Batch jobs use it.
	Finish func(api.TaskInfo) (task.State, time.Duration)
	// Refuse, when set, says whether the agent refuses a launch, as a real one that cannot run
	// it answers: a *scheduler.AgentRefusal ends the task TASK_ERROR, any other error TASK_DROPPED
	// (it never got there). Launched counts refused launches too.
	Refuse func(api.TaskInfo) error
	ended  sync.Map // task id → true once killed or finished
}

var (
	_ scheduler.AgentConn = (*SimulatedAgents)(nil)
	_ scheduler.Attacher  = (*SimulatedAgents)(nil)
)

// Attach connects the simulated agents to the scheduler they report to (scheduler.New calls it).
func (p *SimulatedAgents) Attach(s *scheduler.Scheduler) { p.s.Store(s) }

// AddAgents registers n agents of res with the leader's scheduler, as if each had registered
// (without the registry's raft write: the raft benchmarks measure that). They come all at once,
// between two allocation cycles, as a rack that powers up together: the first cycle shares all
// of them out, so what each framework ends with does not depend on how this machine happened
// to interleave the registrations with the cycles (DRF never takes back what it gave).
func (p *SimulatedAgents) AddAgents(n int, res resources.Resources) {
	regs := make([]scheduler.Registration, n)
	for i := range regs {
		regs[i].Agent = api.Agent{ID: fmt.Sprintf("sim-agent-%05d", i), Hostname: fmt.Sprintf("sim-host-%05d", i), HTTP: "simulated:1", Resources: res}
	}
	p.s.Load().AgentsRegistered(regs...)
}

func (p *SimulatedAgents) report(ag api.Agent, ti api.TaskInfo, states ...task.State) error {
	now := time.Now()
	for i, state := range states {
		st := api.TaskStatus{TaskID: ti.TaskID, FrameworkID: ti.FrameworkID, AgentID: ag.ID, State: state, Source: task.SourceAgent,
			Timestamp: now.Add(time.Duration(i)), UUID: fmt.Sprintf("%s-%d-%d", ti.TaskID, now.UnixNano(), i)}
		switch state {
		case task.Finished:
			st.ExitStatus = new(int)
		case task.Failed:
			one := 1
			st.ExitStatus = &one
		}
		if _, err := p.s.Load().AgentStatus(ag.ID, st); err != nil {
			return err
		}
	}
	return nil
}

// Launch reports the task STARTING, then RUNNING, unless Refuse refuses it.
func (p *SimulatedAgents) Launch(ctx context.Context, ag api.Agent, ti api.TaskInfo) error {
	p.Launched.Add(1)
	if p.Refuse != nil {
		if err := p.Refuse(ti); err != nil {
			return err
		}
	}
	if err := p.report(ag, ti, task.Starting, task.Running); err != nil || p.Finish == nil {
		return err
	}
	if state, after := p.Finish(ti); state != "" {
		time.AfterFunc(after, func() {
			if _, killed := p.ended.LoadOrStore(ti.TaskID, true); !killed {
				p.report(ag, ti, state)
			}
		})
	}
	return nil
}

// Kill reports the task KILLED.
func (p *SimulatedAgents) Kill(ctx context.Context, ag api.Agent, taskID string, grace time.Duration) error {
	if _, ended := p.ended.LoadOrStore(taskID, true); ended {
		return nil
	}
	return p.report(ag, api.TaskInfo{TaskID: taskID}, task.Killed)
}

// Acknowledge has nothing to do: simulated agents do not resend.
func (p *SimulatedAgents) Acknowledge(context.Context, api.Agent, api.Acknowledgement) error {
	return nil
}

// Present says every agent is there: simulated agents are no members of the gossip pool, and
// never go away.
func (p *SimulatedAgents) Present(string) bool { return true }

// Tasks lists nothing: simulated agents keep nothing.
func (p *SimulatedAgents) Tasks(context.Context, api.Agent) ([]api.Task, error) { return nil, nil }

// CreateVolume and DestroyVolume have nothing to keep: simulated agents have no disk.
func (p *SimulatedAgents) CreateVolume(context.Context, api.Agent, api.PersistentVolume) error {
	return nil
}

// DestroyVolume: see CreateVolume.
func (p *SimulatedAgents) DestroyVolume(context.Context, api.Agent, string) error { return nil }

// Replace registers a new agent, of id, in place of the i-th that AddAgents registered: the
// same hostname and API address, as an agent whose data dir was lost registers again. The old
// agent is superseded (removed for good: its tasks end TASK_GONE, its reservations and volumes
// go with it).
func (p *SimulatedAgents) Replace(i int, id string, res resources.Resources) {
	old := api.Agent{ID: fmt.Sprintf("sim-agent-%05d", i), Hostname: fmt.Sprintf("sim-host-%05d", i), HTTP: "simulated:1", Resources: res}
	ag := old
	ag.ID = id
	var reg scheduler.Registration
	reg.Agent, reg.Superseded = ag, []api.Agent{old}
	p.s.Load().AgentsRegistered(reg)
}
