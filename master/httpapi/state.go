package httpapi

import (
	"errors"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/agora-sched/agora/master/discovery"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/version"
)

// The cluster's state in one answer: GET /v1/state in Agora's own shapes, and GET /master/state
// (also /state.json and /master/state.json) in the shape of a Mesos 1.x master's, which tools
// written for Mesos read: Mesos-DNS (frameworks with their tasks, each task's agent and ports
// and the IP of its latest TASK_RUNNING status; agents' pids; the leader), Mesos exporters and
// dashboards. Both are answered by the leader (others forward), from its memory and registry.

// stateInput is what a state answer is made of, read before it is shaped.
type stateInput struct {
	clusterID  string
	leaderID   string
	leaderHTTP string // host:port of the leader's API
	leaderRaft string // its raft address
	hostname   string
	startedAt  time.Time
	agents     []api.AgentView
	frameworks []api.FrameworkState
	tasks      []taskView
}

func (a *apiHandler) stateInput(r *http.Request) (stateInput, error) {
	in := stateInput{clusterID: a.m.ClusterID(), leaderID: a.m.id, leaderHTTP: a.m.HTTPAddr(), startedAt: a.info.StartedAt}
	_, in.leaderRaft = a.m.store.Leader()
	in.hostname, _ = os.Hostname()
	agents, err := a.m.registeredAgents(r.Context())
	if err != nil {
		return in, err
	}
	in.agents = a.agentViews(agents)
	if in.frameworks, err = a.m.sched.FrameworksView(); err != nil {
		return in, err
	}
	in.tasks, err = a.m.sched.TasksFullView()
	return in, err
}

// getState is GET /v1/state: the leader, the agents, the frameworks and the tasks, as GET
// /v1/agents, /v1/frameworks and /v1/tasks show them.
func (a *apiHandler) getState(w http.ResponseWriter, r *http.Request) {
	in, err := a.stateInput(r)
	if err != nil {
		writeStateError(w, err)
		return
	}
	st := api.ClusterState{ClusterID: in.clusterID, Leader: api.LeaderInfo{ID: in.leaderID, Address: in.leaderRaft, HTTP: in.leaderHTTP},
		Agents: in.agents, Frameworks: in.frameworks, Tasks: make([]api.TaskStatus, 0, len(in.tasks))}
	for _, t := range in.tasks {
		st.Tasks = append(st.Tasks, t.Status)
	}
	writeJSON(w, http.StatusOK, st)
}

// getMesosState is GET /master/state (and /state.json): the state in a Mesos master's shape.
func (a *apiHandler) getMesosState(w http.ResponseWriter, r *http.Request) {
	in, err := a.stateInput(r)
	if err != nil {
		writeStateError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, mesosState(in))
}

func writeStateError(w http.ResponseWriter, err error) {
	if errors.Is(err, scheduler.ErrNotReady) {
		writeSchedulerError(w, err)
		return
	}
	writeStoreError(w, err)
}

// MesosVersion is the Mesos release whose /master/state shape Agora answers in: tools that
// branch on "version" take Agora's state for that release's (AgoraVersion says what it is).
const MesosVersion = "1.11.0"

// mesosStateJSON is a Mesos master's /master/state, the fields tools read.
type mesosStateJSON struct {
	Version                string            `json:"version"`
	AgoraVersion           string            `json:"agora_version"`
	GitSHA                 string            `json:"git_sha,omitempty"`
	StartTime              float64           `json:"start_time"`
	ElectedTime            float64           `json:"elected_time"`
	ID                     string            `json:"id"`
	PID                    string            `json:"pid"`
	Hostname               string            `json:"hostname"`
	Cluster                string            `json:"cluster"`
	Leader                 string            `json:"leader"`
	LeaderInfo             mesosMasterInfo   `json:"leader_info"`
	ActivatedSlaves        int               `json:"activated_slaves"`
	DeactivatedSlaves      int               `json:"deactivated_slaves"`
	UnreachableSlaves      int               `json:"unreachable_slaves"`
	Slaves                 []mesosSlave      `json:"slaves"`
	RecoveredSlaves        []mesosSlave      `json:"recovered_slaves"`
	Frameworks             []mesosFramework  `json:"frameworks"`
	CompletedFrameworks    []mesosFramework  `json:"completed_frameworks"`
	OrphanTasks            []mesosTask       `json:"orphan_tasks"`
	UnregisteredFrameworks []string          `json:"unregistered_frameworks"`
	Flags                  map[string]string `json:"flags"`
}

type mesosMasterInfo struct {
	ID       string       `json:"id"`
	PID      string       `json:"pid"`
	Port     int          `json:"port"`
	Hostname string       `json:"hostname"`
	Version  string       `json:"version"`
	Address  mesosAddress `json:"address"`
}

type mesosAddress struct {
	Hostname string `json:"hostname"`
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port"`
}

// mesosResources is Mesos's resources object: scalars as numbers, ports as "[a-b, c-d]".
type mesosResources struct {
	CPUs  float64 `json:"cpus"`
	Mem   float64 `json:"mem"`
	Disk  float64 `json:"disk"`
	GPUs  float64 `json:"gpus"`
	Ports string  `json:"ports"`
}

func toMesosResources(r resources.Resources) mesosResources {
	return mesosResources{CPUs: r.CPUs, Mem: r.Mem, Disk: r.Disk, Ports: r.Ports.String()}
}

type mesosSlave struct {
	ID                  string            `json:"id"`
	PID                 string            `json:"pid"`
	Hostname            string            `json:"hostname"`
	Port                int               `json:"port"`
	RegisteredTime      float64           `json:"registered_time"`
	ReregisteredTime    float64           `json:"reregistered_time,omitempty"`
	Resources           mesosResources    `json:"resources"`
	UsedResources       mesosResources    `json:"used_resources"`
	OfferedResources    mesosResources    `json:"offered_resources"`
	ReservedResources   map[string]any    `json:"reserved_resources"`
	UnreservedResources mesosResources    `json:"unreserved_resources"`
	Attributes          map[string]string `json:"attributes"`
	Active              bool              `json:"active"`
	Deactivated         bool              `json:"deactivated"`
	Version             string            `json:"version"`
	Capabilities        []string          `json:"capabilities"`
}

type mesosFramework struct {
	ID               string         `json:"id"`
	Name             string         `json:"name"`
	Hostname         string         `json:"hostname"`
	User             string         `json:"user"`
	Role             string         `json:"role"`
	Roles            []string       `json:"roles"`
	Principal        string         `json:"principal,omitempty"`
	Active           bool           `json:"active"`
	Connected        bool           `json:"connected"`
	Recovered        bool           `json:"recovered"`
	Checkpoint       bool           `json:"checkpoint"`
	FailoverTimeout  float64        `json:"failover_timeout"`
	Capabilities     []string       `json:"capabilities"`
	RegisteredTime   float64        `json:"registered_time"`
	UnregisteredTime float64        `json:"unregistered_time"`
	WebUIURL         string         `json:"webui_url"`
	Resources        mesosResources `json:"resources"`
	UsedResources    mesosResources `json:"used_resources"`
	OfferedResources mesosResources `json:"offered_resources"`
	Tasks            []mesosTask    `json:"tasks"`
	UnreachableTasks []mesosTask    `json:"unreachable_tasks"`
	CompletedTasks   []mesosTask    `json:"completed_tasks"`
	Offers           []any          `json:"offers"`
	Executors        []any          `json:"executors"`
}

type mesosTask struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	FrameworkID string         `json:"framework_id"`
	ExecutorID  string         `json:"executor_id"`
	SlaveID     string         `json:"slave_id"`
	State       string         `json:"state"`
	Role        string         `json:"role,omitempty"`
	Resources   mesosResources `json:"resources"`
	Statuses    []mesosStatus  `json:"statuses"`
	Labels      []mesosLabel   `json:"labels,omitempty"`
	Discovery   mesosDiscovery `json:"discovery"`
}

type mesosLabel struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type mesosStatus struct {
	State           string               `json:"state"`
	Timestamp       float64              `json:"timestamp"`
	Healthy         *bool                `json:"healthy,omitempty"`
	ContainerStatus mesosContainerStatus `json:"container_status"`
}

type mesosContainerStatus struct {
	NetworkInfos []mesosNetworkInfo `json:"network_infos"`
}

type mesosNetworkInfo struct {
	IPAddresses []mesosIPAddress `json:"ip_addresses"`
}

type mesosIPAddress struct {
	IPAddress string `json:"ip_address"`
}

type mesosDiscovery struct {
	Visibility string `json:"visibility"`
	Name       string `json:"name"`
	Ports      struct {
		Ports []mesosPort `json:"ports"`
	} `json:"ports"`
}

type mesosPort struct {
	Number   uint64 `json:"number"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"`
}

// seconds is a time as Mesos writes it: seconds since the epoch, a float; 0 for no time.
func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// hostPort splits an API address; the port is 0 when there is none.
func hostPort(addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// mesosState shapes the state as a Mesos master's /master/state. Tasks that have not ended
// are their framework's tasks, ended ones its completed_tasks; their statuses are the states
// they went through as Mesos lists them (the latest update of each), those the agent reported
// with the agent's IP as their network's address (tasks use the host's network). Frameworks
// have no pid: they speak the HTTP scheduler API, as Mesos omits it for such frameworks.
func mesosState(in stateInput) mesosStateJSON {
	host, port := hostPort(in.leaderHTTP)
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		// The API listens on every address (or names none): the leader's pid takes the IP
		// other masters reach it on, as a Mesos master advertises one. Mesos-DNS makes the
		// leader's A record of it and fails on anything but an IP.
		if raftHost, _ := hostPort(in.leaderRaft); net.ParseIP(raftHost) != nil {
			host = raftHost
		}
	}
	pid := "master@" + net.JoinHostPort(host, strconv.Itoa(port))
	info := version.Get()
	st := mesosStateJSON{
		Version: MesosVersion, AgoraVersion: info.Version, GitSHA: info.GitSHA,
		StartTime: seconds(in.startedAt), ElectedTime: seconds(in.startedAt),
		ID: in.leaderID, PID: pid, Hostname: in.hostname, Cluster: in.clusterID, Leader: pid,
		LeaderInfo: mesosMasterInfo{ID: in.leaderID, PID: pid, Port: port, Hostname: in.hostname, Version: MesosVersion,
			Address: mesosAddress{Hostname: in.hostname, IP: host, Port: port}},
		Slaves: []mesosSlave{}, RecoveredSlaves: []mesosSlave{}, Frameworks: []mesosFramework{}, CompletedFrameworks: []mesosFramework{},
		OrphanTasks: []mesosTask{}, UnregisteredFrameworks: []string{}, Flags: map[string]string{"cluster": in.clusterID},
	}
	agentIP := map[string]string{}
	for _, ag := range in.agents {
		h, p := hostPort(ag.HTTP)
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
			agentIP[ag.ID] = ip.String()
		}
		switch ag.State {
		case "removed":
			continue
		case "unreachable":
			st.UnreachableSlaves++
			continue
		}
		active := ag.State != "draining"
		if active {
			st.ActivatedSlaves++
		} else {
			st.DeactivatedSlaves++
		}
		attrs := ag.Attributes
		if attrs == nil {
			attrs = map[string]string{}
		}
		s := mesosSlave{
			ID: ag.ID, PID: "slave(1)@" + net.JoinHostPort(h, strconv.Itoa(p)), Hostname: ag.Hostname, Port: p,
			RegisteredTime: seconds(ag.RegisteredAt), ReregisteredTime: seconds(ag.LastRegisteredAt),
			Resources: toMesosResources(ag.Resources), UsedResources: toMesosResources(ag.Used), OfferedResources: toMesosResources(resources.Resources{}),
			ReservedResources: map[string]any{}, UnreservedResources: toMesosResources(ag.Resources), Attributes: attrs,
			Active: active, Deactivated: !active, Version: MesosVersion, Capabilities: []string{"MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"},
		}
		if ag.State == "recovered" {
			st.RecoveredSlaves = append(st.RecoveredSlaves, s)
			continue
		}
		st.Slaves = append(st.Slaves, s)
	}
	byFramework := map[string][]taskView{}
	for _, t := range in.tasks {
		byFramework[t.Info.FrameworkID] = append(byFramework[t.Info.FrameworkID], t)
	}
	for _, fw := range in.frameworks {
		role := fw.Info.Role
		if role == "" {
			role = "*"
		}
		f := mesosFramework{
			ID: fw.Info.ID, Name: fw.Info.Name, Hostname: in.hostname, Role: role, Roles: []string{role}, Principal: fw.Info.Principal,
			Active: fw.Active, Connected: fw.Connected, Checkpoint: true, FailoverTimeout: fw.Info.FailoverTimeout,
			Capabilities: append([]string{}, fw.Info.Capabilities...), RegisteredTime: seconds(fw.Info.RegisteredAt),
			Resources: toMesosResources(fw.Allocated.Add(fw.Offered)), UsedResources: toMesosResources(fw.Allocated), OfferedResources: toMesosResources(fw.Offered),
			Tasks: []mesosTask{}, UnreachableTasks: []mesosTask{}, CompletedTasks: []mesosTask{}, Offers: []any{}, Executors: []any{},
		}
		if fw.DisconnectedAt != nil {
			f.UnregisteredTime = seconds(*fw.DisconnectedAt)
		}
		for _, t := range byFramework[fw.Info.ID] {
			mt := toMesosTask(t, role, agentIP[t.AgentID])
			switch {
			case t.Status.State == "TASK_UNREACHABLE":
				f.UnreachableTasks = append(f.UnreachableTasks, mt)
			case t.Status.State.IsTerminal():
				f.CompletedTasks = append(f.CompletedTasks, mt)
			default:
				f.Tasks = append(f.Tasks, mt)
			}
		}
		st.Frameworks = append(st.Frameworks, f)
	}
	sort.Slice(st.Slaves, func(i, j int) bool { return st.Slaves[i].ID < st.Slaves[j].ID })
	return st
}

func toMesosTask(t taskView, role, ip string) mesosTask {
	name := discovery.MesosTaskName(t.Info.Name)
	if name == "" {
		name = t.Info.TaskID
	}
	mt := mesosTask{
		ID: t.Info.TaskID, Name: name, FrameworkID: t.Info.FrameworkID, SlaveID: t.AgentID, State: string(t.Status.State), Role: role,
		Resources: toMesosResources(t.Info.Resources),
	}
	mt.Statuses = make([]mesosStatus, 0, len(t.Statuses))
	for _, m := range t.Statuses {
		status := mesosStatus{State: string(m.State), Timestamp: seconds(m.Timestamp), Healthy: m.Healthy,
			ContainerStatus: mesosContainerStatus{NetworkInfos: []mesosNetworkInfo{}}}
		if ip != "" && m.FromAgent {
			status.ContainerStatus.NetworkInfos = []mesosNetworkInfo{{IPAddresses: []mesosIPAddress{{IPAddress: ip}}}}
		}
		mt.Statuses = append(mt.Statuses, status)
	}
	keys := make([]string, 0, len(t.Info.Labels))
	for k := range t.Info.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		mt.Labels = append(mt.Labels, mesosLabel{Key: k, Value: t.Info.Labels[k]})
	}
	mt.Discovery.Visibility, mt.Discovery.Name = "FRAMEWORK", name
	mt.Discovery.Ports.Ports = []mesosPort{}
	// One port each protocol ("udp,tcp": two), as Marathon describes them to Mesos: Mesos-DNS
	// makes an SRV record under _udp or _tcp of each.
	for _, p := range discovery.Ports(t.Info) {
		mt.Discovery.Ports.Ports = append(mt.Discovery.Ports.Ports, mesosPort{Number: uint64(p.Number), Name: p.Name, Protocol: p.Protocol})
	}
	return mt
}
