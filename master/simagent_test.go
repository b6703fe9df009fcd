package master

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// simAgents stands in for agents in the scheduler's tests: an AgentConn that keeps tasks in
// memory and reports their states to the master over its real HTTP API, as agents do. The
// agent's real path (containerd, checkpoint, resends) is tested in agent/ and cmd/agora.
type simAgents struct {
	t      testing.TB
	master func() string // the HTTP address updates go to

	mu        sync.Mutex
	tasks     map[string]map[string]api.Task // agent → task → its record
	acks      []api.Acknowledgement
	kills     []string
	refuse    map[string]error // agent → what Launch answers
	noRunning bool             // tasks stay STARTING
	slowKills bool             // a kill is not reported; the test reports it
	http      string           // the API address agents register with; default sim.invalid:1
	// gossipOnly makes Present answer false: only gossip tells the master an agent is there
	// (sim agents are no gossip members unless a test runs gossipAs for them).
	gossipOnly bool
	dropKills  int                        // this many kills fail as an agent that does not answer
	volumes    map[string]map[string]bool // agent → its volumes (made, by CreateVolume or a launch)
	destroyed  []string                   // agent/volume, in the order asked
}

func newSimAgents(t testing.TB) *simAgents {
	return &simAgents{t: t, tasks: map[string]map[string]api.Task{}, refuse: map[string]error{}}
}

var _ scheduler.AgentConn = (*simAgents)(nil)

func (s *simAgents) addVolumeLocked(agentID, id string) {
	if s.volumes == nil {
		s.volumes = map[string]map[string]bool{}
	}
	if s.volumes[agentID] == nil {
		s.volumes[agentID] = map[string]bool{}
	}
	s.volumes[agentID][id] = true
}

func (s *simAgents) CreateVolume(ctx context.Context, ag api.Agent, v api.PersistentVolume) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addVolumeLocked(ag.ID, v.ID)
	return nil
}

func (s *simAgents) DestroyVolume(ctx context.Context, ag api.Agent, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.volumes[ag.ID], id)
	s.destroyed = append(s.destroyed, ag.ID+"/"+id)
	return nil
}

// hasVolume says whether the simulated agent has the volume.
func (s *simAgents) hasVolume(agentID, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.volumes[agentID][id]
}

func (s *simAgents) Launch(ctx context.Context, ag api.Agent, ti api.TaskInfo) error {
	s.mu.Lock()
	if err := s.refuse[ag.ID]; err != nil {
		s.mu.Unlock()
		return err
	}
	if s.tasks[ag.ID] == nil {
		s.tasks[ag.ID] = map[string]api.Task{}
	}
	st := api.TaskStatus{TaskID: ti.TaskID, FrameworkID: ti.FrameworkID, AgentID: ag.ID, State: task.Starting, Source: task.SourceAgent}
	s.tasks[ag.ID][ti.TaskID] = api.Task{Info: ti, Status: st}
	for _, m := range ti.PersistentVolumes {
		s.addVolumeLocked(ag.ID, m.VolumeID)
	}
	running := !s.noRunning
	s.mu.Unlock()
	go func() {
		s.report(ag.ID, ti.TaskID, task.Starting)
		if running {
			s.report(ag.ID, ti.TaskID, task.Running)
		}
	}()
	return nil
}

func (s *simAgents) Kill(ctx context.Context, ag api.Agent, taskID string, grace time.Duration) error {
	s.mu.Lock()
	s.kills = append(s.kills, taskID)
	if s.dropKills > 0 {
		s.dropKills--
		s.mu.Unlock()
		return fmt.Errorf("agent %s: connection refused", ag.ID)
	}
	_, ok := s.tasks[ag.ID][taskID]
	slow := s.slowKills
	s.mu.Unlock()
	if !ok {
		return &scheduler.AgentRefusal{Status: http.StatusNotFound, Message: "no task " + taskID}
	}
	if !slow {
		go s.report(ag.ID, taskID, task.Killed)
	}
	return nil
}

func (s *simAgents) Acknowledge(ctx context.Context, ag api.Agent, ack api.Acknowledgement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks = append(s.acks, ack)
	return nil
}

// Present says a sim agent is there, unless gossipOnly.
func (s *simAgents) Present(string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.gossipOnly
}

func (s *simAgents) Tasks(ctx context.Context, ag api.Agent) ([]api.Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refuse[ag.ID]; err != nil {
		return nil, err
	}
	var out []api.Task
	for _, tk := range s.tasks[ag.ID] {
		out = append(out, tk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out, nil
}

// report changes a task's state on the agent and sends the update to the master, as an
// agent's status update manager does (one attempt; the tests resend by calling it again).
func (s *simAgents) report(agentID, taskID string, state task.State) {
	s.mu.Lock()
	tk, ok := s.tasks[agentID][taskID]
	if !ok {
		s.mu.Unlock()
		return
	}
	tk.Status.State = state
	tk.Status.Timestamp = time.Now()
	tk.Status.UUID = fmt.Sprintf("%s-%s-%d", taskID, state, tk.Status.Timestamp.UnixNano())
	s.tasks[agentID][taskID] = tk
	st := tk.Status
	s.mu.Unlock()
	if err := postJSON(s.master()+"/v1/agents/"+agentID+"/status", st, nil); err != nil {
		s.t.Logf("sim agent %s: status update %s %s: %v", agentID, taskID, state, err)
	}
}

func (s *simAgents) acked(taskID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.acks {
		if a.TaskID == taskID {
			out = append(out, a.UUID)
		}
	}
	return out
}

func (s *simAgents) killed(taskID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.kills {
		if k == taskID {
			return true
		}
	}
	return false
}

// list is what the sim agent holds, as a registration lists it.
func (s *simAgents) list(agentID string) []api.Task {
	ts, _ := s.Tasks(context.Background(), api.Agent{ID: agentID})
	return ts
}

// register registers a sim agent through the master's API and returns its id.
func (s *simAgents) register(t testing.TB, id, hostname string, res resources.Resources) string {
	t.Helper()
	return s.registerWith(t, id, hostname, res, s.list(id))
}

// registerWith registers a sim agent listing the given tasks.
func (s *simAgents) registerWith(t testing.TB, id, hostname string, res resources.Resources, tasks []api.Task) string {
	t.Helper()
	var ag api.Agent
	addr := s.http
	if addr == "" {
		addr = "sim.invalid:1"
	}
	reg := api.AgentRegistration{ID: id, Hostname: hostname, HTTP: addr, Resources: res, Tasks: tasks}
	if err := postJSON(s.master()+"/v1/agents/register", reg, &ag); err != nil {
		t.Fatal(err)
	}
	return ag.ID
}

// gossipAs runs a gossip member with an agent's id on bind, so that the master sees the agent
// alive; shutting it down makes the agent dead to the master. An agent that comes back uses
// the same address, as a restarted agent does (memberlist keeps a dead name to its address).
func gossipAs(t testing.TB, agentID, bind, join string) *gossip.Gossip {
	t.Helper()
	g, err := gossip.New(gossip.Config{
		Name: "sim-" + agentID, BindAddr: bind, Timing: gossip.TimingLocal,
		Meta: gossip.Meta{Role: gossip.RoleAgent, ID: agentID, HTTP: "sim.invalid:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.Join(ctx, []string{join}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

func postJSON(url string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, e.Message)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
