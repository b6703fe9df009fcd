package discovery

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// View is where the cluster's services run: every running task grouped by its framework and
// name (a Marathon app, a job's runs), each with its agent's addresses, its ports and whether it
// passes its health checks; the agents that run tasks; the masters. The leader reads it from
// its memory (Build); the other masters fetch the leader's (Keeper). A View is never changed
// once made: readers share it.
type View struct {
	// Index and Term are the leader's raft applied index and term when it read the view; Leader
	// is its id. Masters' followers keep the view with the index it proves.
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Leader string `json:"leader"`
	// Services are the running tasks by framework and name, sorted so; services without a
	// running task are left out.
	Services []Service `json:"services"`
	// Agents are the agents tasks may run on now (registered with the leader and reachable, or
	// not heard from yet by a new leader), sorted by id.
	Agents []Agent `json:"agents"`
	// Masters are the masters this master knows alive, sorted by id; LeaderID the one that
	// leads ("" while none does). Each master fills them in from its own raft and gossip state
	// (Keeper's Config.Masters): a follower knows of a new leader before it has its view.
	Masters  []Master `json:"masters,omitempty"`
	LeaderID string   `json:"leader_id,omitempty"`
}

// Service is the running tasks of one name of one framework: a Marathon app's instances
// ("/shop/web"), a job's runs ("prod.backup"), an external framework's tasks of one name.
type Service struct {
	Framework string `json:"framework"` // the framework's name, as it registered
	Name      string `json:"name"`      // the tasks' name, as the framework gave it
	// Label is the name's DNS label (TaskLabel): "web-shop" of "/shop/web".
	Label     string     `json:"label"`
	Instances []Instance `json:"instances"` // sorted by task id
}

// Instance is one running task (TASK_RUNNING) of a service.
type Instance struct {
	TaskID  string `json:"task_id"`
	AgentID string `json:"agent_id"`
	Host    string `json:"host"` // its agent's hostname
	// IPs are its agent's addresses: tasks use their host's network.
	IPs   []netip.Addr `json:"ips"`
	Ports []Port       `json:"ports,omitempty"`
	// Healthy: it passes its health checks, or it has none. Service discovery hands out healthy
	// instances only; an unhealthy one stays listed, for those who show it.
	Healthy bool `json:"healthy"`
}

// Port is one port of an instance, on its agent's addresses.
type Port struct {
	Number   uint16 `json:"number"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"` // "tcp" or "udp"; a port of both is listed once each
}

// Agent is an agent tasks may run on.
type Agent struct {
	ID       string       `json:"id"`
	Hostname string       `json:"hostname"`
	IPs      []netip.Addr `json:"ips"`
}

// Master is a master of the cluster, at the address of its raft transport.
type Master struct {
	ID  string       `json:"id"`
	IPs []netip.Addr `json:"ips"`
}

// Input is what the leader knows, for Build.
type Input struct {
	Index, Term uint64
	Leader      string
	// Frameworks names the frameworks by id.
	Frameworks map[string]string
	// Agents are the registry's agents with where they stand with the leader (api.AgentView's
	// State: active, unavailable, draining, recovered, unreachable, removed).
	Agents []api.AgentView
	// Tasks are the leader's tasks that have not ended.
	Tasks []Task
	// Prev is the view before this one (nil: none). A new leader has not heard from its agents
	// yet: until an agent registers ("recovered"), its instances are taken from Prev, so that a
	// failover empties no name.
	Prev *View
	// Resolve looks up a host name's addresses, for agents whose API address is a name (nil:
	// such agents have no address).
	Resolve func(host string) []netip.Addr
}

// Task is one task of the leader's table: what it was launched with (id, framework, name,
// ports and their names and protocols, health checks), where, and its latest status.
type Task struct {
	Info    api.TaskInfo
	AgentID string
	Status  api.TaskStatus
}

// serving are the agent states in which an agent's tasks are reachable.
var serving = map[string]bool{"active": true, "unavailable": true, "draining": true}

// Build makes the view of what the leader knows: its running tasks (TASK_RUNNING) on agents
// that are reachable, grouped by framework name and task name; their agents' addresses (the IP
// of the agent's API address, or its resolved name) and ports; whether each passes its health
// checks (the agent's latest report says healthy) or has none. Tasks on agents not registered
// with this leader yet are taken from in.Prev. Tasks without a name are listed under their id.
// Tasks whose agent has no address are left out: nothing could reach them.
func Build(in Input) *View {
	v := &View{Index: in.Index, Term: in.Term, Leader: in.Leader, Services: []Service{}, Agents: []Agent{}}
	agents := map[string]Agent{}
	recovered := map[string]bool{}
	for _, ag := range in.Agents {
		switch {
		case serving[ag.State]:
			a := Agent{ID: ag.ID, Hostname: ag.Hostname, IPs: agentIPs(ag.Agent, in.Resolve)}
			agents[ag.ID] = a
			v.Agents = append(v.Agents, a)
		case ag.State == "recovered":
			recovered[ag.ID] = true
		}
	}
	type key struct{ framework, name string }
	services := map[key]*Service{}
	add := func(framework, name string, in Instance) {
		k := key{framework, name}
		s := services[k]
		if s == nil {
			s = &Service{Framework: framework, Name: name, Label: TaskLabel(name)}
			services[k] = s
		}
		s.Instances = append(s.Instances, in)
	}
	for _, t := range in.Tasks {
		ag, ok := agents[t.AgentID]
		if t.Status.State != task.Running || !ok || len(ag.IPs) == 0 {
			continue
		}
		name := t.Info.Name
		if name == "" {
			name = t.Info.TaskID
		}
		healthy := len(t.Info.HealthChecks) == 0 || (t.Status.Healthy != nil && *t.Status.Healthy)
		add(in.Frameworks[t.Info.FrameworkID], name, Instance{TaskID: t.Info.TaskID, AgentID: t.AgentID, Host: ag.Hostname, IPs: ag.IPs,
			Ports: Ports(t.Info), Healthy: healthy})
	}
	if in.Prev != nil && len(recovered) > 0 {
		for _, a := range in.Prev.Agents {
			if recovered[a.ID] {
				v.Agents = append(v.Agents, a)
			}
		}
		for _, s := range in.Prev.Services {
			for _, inst := range s.Instances {
				if recovered[inst.AgentID] {
					add(s.Framework, s.Name, inst)
				}
			}
		}
	}
	for _, s := range services {
		slices.SortFunc(s.Instances, func(a, b Instance) int { return strings.Compare(a.TaskID, b.TaskID) })
		s.Instances = slices.CompactFunc(s.Instances, func(a, b Instance) bool { return a.TaskID == b.TaskID })
		v.Services = append(v.Services, *s)
	}
	slices.SortFunc(v.Services, func(a, b Service) int {
		if c := strings.Compare(a.Framework, b.Framework); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	slices.SortFunc(v.Agents, func(a, b Agent) int { return strings.Compare(a.ID, b.ID) })
	return v
}

// Ports lists a task's ports in the order the agent numbers them (PORT0, PORT1, ...: ascending),
// each with its name and once for each of its protocols ("udp,tcp": twice).
func Ports(info api.TaskInfo) []Port {
	var out []Port
	i := 0
	for _, rg := range info.Resources.Ports {
		for p := rg.Begin; p <= rg.End && p <= 65535; p++ {
			var name string
			if i < len(info.PortNames) {
				name = info.PortNames[i]
			}
			protocols := "tcp"
			if i < len(info.PortProtocols) && info.PortProtocols[i] != "" {
				protocols = info.PortProtocols[i]
			}
			for _, proto := range strings.Split(protocols, ",") {
				out = append(out, Port{Number: uint16(p), Name: name, Protocol: proto})
			}
			i++
		}
	}
	return out
}

// agentIPs are the addresses tasks on an agent are reached at: its API address's IP, or the
// addresses of its name; when the API listens on every address, those of its hostname.
func agentIPs(ag api.Agent, resolve func(string) []netip.Addr) []netip.Addr {
	host, _, err := net.SplitHostPort(ag.HTTP)
	if err != nil {
		host = ag.HTTP
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !ip.IsUnspecified() {
			return []netip.Addr{ip.Unmap()}
		}
		host = ag.Hostname
	}
	if host == "" || resolve == nil {
		return nil
	}
	return resolve(host)
}

// Healthy lists the service's healthy instances.
func (s *Service) Healthy() []Instance {
	out := make([]Instance, 0, len(s.Instances))
	for _, in := range s.Instances {
		if in.Healthy {
			out = append(out, in)
		}
	}
	return out
}
