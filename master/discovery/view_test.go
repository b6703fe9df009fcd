package discovery

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

func agentView(id, http, state string) api.AgentView {
	return api.AgentView{Agent: api.Agent{ID: id, Hostname: id + ".example", HTTP: http}, State: state}
}

func running(id, fw, name, agent string, healthy *bool, checks bool, ports ...uint64) Task {
	info := api.TaskInfo{TaskID: id, FrameworkID: fw, Name: name}
	for _, p := range ports {
		info.Resources.Ports = info.Resources.Ports.Add(resources.Ranges{{Begin: p, End: p}})
	}
	if checks {
		info.HealthChecks = []health.Check{{Protocol: "HTTP"}}
	}
	return Task{Info: info, AgentID: agent, Status: api.TaskStatus{TaskID: id, State: task.Running, Healthy: healthy}}
}

func TestBuild(t *testing.T) {
	yes, no := true, false
	in := Input{Index: 42, Term: 3, Leader: "m1", Frameworks: map[string]string{"fw-m": "marathon", "fw-c": "chronos"},
		Agents: []api.AgentView{
			agentView("a1", "10.0.0.1:5151", "active"), agentView("a2", "[fd00::2]:5151", "draining"),
			agentView("a3", "10.0.0.3:5151", "unreachable"), agentView("a4", "0.0.0.0:5151", "active"), agentView("a5", "node5:5151", "active"),
		},
		Tasks: []Task{
			running("w1", "fw-m", "/group/web", "a1", &yes, true, 31000, 31001),
			running("w2", "fw-m", "/group/web", "a2", &no, true, 31002),  // unhealthy: listed, not healthy
			running("w3", "fw-m", "/group/web", "a3", &yes, true, 31003), // unreachable agent: left out
			running("w4", "fw-m", "/group/web", "a1", nil, true, 31004),  // no health yet: not healthy
			running("d1", "fw-m", "/db", "a4", nil, false, 31005),        // no checks: healthy; a4 by its hostname
			running("j1", "fw-c", "prod.backup", "a5", nil, false),       // a job's run, a5 resolved
			running("x1", "fw-x", "", "a1", nil, false),                  // no name, unknown framework
			{Info: api.TaskInfo{TaskID: "s1", FrameworkID: "fw-m", Name: "/group/web"}, AgentID: "a1", Status: api.TaskStatus{State: task.Staging}},
		},
		Resolve: func(host string) []netip.Addr {
			return map[string][]netip.Addr{"a4.example": {netip.MustParseAddr("10.0.0.4")}, "node5": {netip.MustParseAddr("10.0.0.5")}}[host]
		},
	}
	in.Tasks[0].Info.PortNames = []string{"http", "admin"}
	in.Tasks[0].Info.PortProtocols = []string{"tcp", "udp,tcp"}
	v := Build(in)
	if v.Index != 42 || v.Term != 3 || v.Leader != "m1" {
		t.Fatalf("stamp: %+v", v)
	}
	var agents []string
	for _, a := range v.Agents {
		agents = append(agents, a.ID)
	}
	if want := []string{"a1", "a2", "a4", "a5"}; !reflect.DeepEqual(agents, want) {
		t.Fatalf("agents %v, want %v", agents, want)
	}
	got := map[string][]string{}
	healthy := map[string]int{}
	for _, s := range v.Services {
		for _, inst := range s.Instances {
			got[s.Framework+" "+s.Name+" "+s.Label] = append(got[s.Framework+" "+s.Name+" "+s.Label], inst.TaskID)
		}
		healthy[s.Name] = len(s.Healthy())
	}
	want := map[string][]string{
		"chronos prod.backup prod-backup": {"j1"}, "marathon /db db": {"d1"}, "marathon /group/web web-group": {"w1", "w2", "w4"}, " x1 x1": {"x1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	if healthy["/group/web"] != 1 || healthy["/db"] != 1 || healthy["prod.backup"] != 1 {
		t.Fatalf("healthy instances %v", healthy)
	}
	web := v.Services[3]
	if web.Name != "/group/web" {
		t.Fatalf("services not sorted by framework and name: %+v", v.Services)
	}
	w1 := web.Instances[0]
	wantPorts := []Port{{31000, "http", "tcp"}, {31001, "admin", "udp"}, {31001, "admin", "tcp"}}
	if !reflect.DeepEqual(w1.Ports, wantPorts) || w1.Host != "a1.example" || w1.IPs[0] != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("w1 = %+v, want ports %v on 10.0.0.1", w1, wantPorts)
	}
	if w2 := web.Instances[1]; w2.IPs[0] != netip.MustParseAddr("fd00::2") || w2.Healthy {
		t.Fatalf("w2 = %+v", w2)
	}
}

// TestBuildKeepsWhatRecoveredAgentsRan: a new leader has not heard from an agent yet; the
// instances the view before had on it stay, until it registers.
func TestBuildKeepsWhatRecoveredAgentsRan(t *testing.T) {
	yes := true
	prev := Build(Input{Frameworks: map[string]string{"fw": "marathon"},
		Agents: []api.AgentView{agentView("a1", "10.0.0.1:1", "active"), agentView("a2", "10.0.0.2:1", "active")},
		Tasks:  []Task{running("t1", "fw", "/web", "a1", &yes, true, 1), running("t2", "fw", "/web", "a2", &yes, true, 2)}})
	next := Build(Input{Frameworks: map[string]string{"fw": "marathon"}, Prev: prev,
		Agents: []api.AgentView{agentView("a1", "10.0.0.1:1", "recovered"), agentView("a2", "10.0.0.2:1", "active")},
		Tasks:  []Task{running("t3", "fw", "/web", "a2", &yes, true, 3)}}) // a2 registered: t2 ended, t3 runs
	var ids []string
	for _, in := range next.Services[0].Instances {
		ids = append(ids, in.TaskID)
	}
	if !reflect.DeepEqual(ids, []string{"t1", "t3"}) || len(next.Agents) != 2 {
		t.Fatalf("instances %v, agents %+v; want t1 (kept from the recovered a1) and t3", ids, next.Agents)
	}
	// Without a view before, a recovered agent's instances are unknown.
	if none := Build(Input{Agents: []api.AgentView{agentView("a1", "10.0.0.1:1", "recovered")}}); len(none.Services) != 0 || len(none.Agents) != 0 {
		t.Fatalf("from nothing: %+v", none)
	}
}
