package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// shapeDiff lists where got lacks a field of want's shape or has it with another JSON type.
// want is a shape: "string", "number", "bool", an object of shapes, or an array of one shape
// (an empty array: any array).
func shapeDiff(path string, want, got any) []string {
	switch w := want.(type) {
	case string:
		var ok bool
		switch w {
		case "string":
			_, ok = got.(string)
		case "number":
			_, ok = got.(float64)
		case "bool":
			_, ok = got.(bool)
		}
		if !ok {
			return []string{fmt.Sprintf("%s: %T (%v), want a %s", path, got, got, w)}
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an object", path, got)}
		}
		var out []string
		for k, sub := range w {
			v, ok := g[k]
			if !ok {
				out = append(out, path+"."+k+": missing")
				continue
			}
			out = append(out, shapeDiff(path+"."+k, sub, v)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: %T, want an array", path, got)}
		}
		if len(w) == 0 {
			return nil
		}
		if len(g) == 0 {
			return []string{path + ": empty, want an element to check"}
		}
		var out []string
		for i, v := range g {
			out = append(out, shapeDiff(fmt.Sprintf("%s[%d]", path, i), w[0], v)...)
		}
		return out
	}
	return nil
}

// TestMesosStateShape: /master/state has every field, of the JSON type, that Mesos documents
// and Mesos-DNS and Mesos exporters read (testdata/mesos_state_shape.json); the values they
// parse are in Mesos's forms: pids as name@ip:port (the leader's an IP even when the API
// listens on every address), times as float seconds, ports as "[a-b, c-d]", Marathon's task
// names as Mesos-DNS makes records of them, statuses as the states a task went through with
// the agent's IP in those the agent reported, discovery ports under their protocols, and
// ended tasks among completed_tasks.
func TestMesosStateShape(t *testing.T) {
	at := time.Date(2026, 12, 6, 20, 24, 17, 909_000_000, time.UTC)
	ports := resources.Ranges{{Begin: 31000, End: 31001}}
	healthy := true
	in := stateInput{
		clusterID: "c-1", leaderID: "m-1", leaderHTTP: "127.0.0.1:5050", leaderRaft: "10.0.0.1:5052", hostname: "node-a", startedAt: at,
		agents: []api.AgentView{
			{Agent: api.Agent{ID: "a-1", Hostname: "node-a", HTTP: "10.0.0.5:5051", Resources: resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000, Ports: resources.Ranges{{Begin: 31000, End: 32000}}},
				Attributes: map[string]string{"rack": "r1"}, RegisteredAt: at}, State: "active", Used: resources.Resources{CPUs: 0.5, Mem: 64, Ports: ports}, Tasks: 1},
			{Agent: api.Agent{ID: "a-2", Hostname: "node-b", HTTP: "10.0.0.6:5051", RegisteredAt: at}, State: "removed"},
		},
		frameworks: []api.FrameworkState{{Info: api.FrameworkInfo{ID: "fw-1", Name: "marathon", Role: "*", FailoverTimeout: 604800, RegisteredAt: at, Capabilities: []string{"PARTITION_AWARE"}},
			Connected: true, Active: true, Allocated: resources.Resources{CPUs: 0.5, Mem: 64, Ports: ports}}},
		tasks: []taskView{
			{Info: api.TaskInfo{TaskID: "shop_web.1", FrameworkID: "fw-1", Name: "/shop/web", Resources: resources.Resources{CPUs: 0.5, Mem: 64, Ports: ports},
				PortNames: []string{"http", "dns"}, PortProtocols: []string{"", "udp,tcp"}, Labels: map[string]string{"tier": "front"}},
				AgentID: "a-1", Status: api.TaskStatus{TaskID: "shop_web.1", State: task.Running, Timestamp: at.Add(2 * time.Second), Healthy: &healthy},
				Statuses: []scheduler.StatusMark{{State: task.Starting, Timestamp: at, FromAgent: true}, {State: task.Running, Timestamp: at.Add(2 * time.Second), Healthy: &healthy, FromAgent: true}}},
			{Info: api.TaskInfo{TaskID: "shop_web.0", FrameworkID: "fw-1", Name: "/shop/web", Resources: resources.Resources{CPUs: 0.5, Mem: 64}},
				AgentID: "a-1", Status: api.TaskStatus{TaskID: "shop_web.0", State: task.Failed, Timestamp: at},
				Statuses: []scheduler.StatusMark{{State: task.Starting, Timestamp: at, FromAgent: true}, {State: task.Failed, Timestamp: at, FromAgent: true}}},
			{Info: api.TaskInfo{TaskID: "shop_web.2", FrameworkID: "fw-1", Name: "/shop/web", Resources: resources.Resources{CPUs: 0.5, Mem: 64}},
				AgentID: "a-1", Status: api.TaskStatus{TaskID: "shop_web.2", State: task.Unreachable, Timestamp: at.Add(time.Minute), Source: task.SourceMaster},
				Statuses: []scheduler.StatusMark{{State: task.Running, Timestamp: at, FromAgent: true}, {State: task.Unreachable, Timestamp: at.Add(time.Minute)}}},
		},
	}
	b, err := json.Marshal(mesosState(in))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	json.Unmarshal(b, &got)
	golden, err := os.ReadFile("testdata/mesos_state_shape.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(golden, &want); err != nil {
		t.Fatal(err)
	}
	if diff := shapeDiff("state", want, got); len(diff) > 0 {
		sort.Strings(diff)
		t.Fatalf("/master/state differs from Mesos's shape:\n%s\n%s", strings.Join(diff, "\n"), b)
	}

	var st mesosStateJSON
	json.Unmarshal(b, &st)
	if st.Leader != "master@127.0.0.1:5050" || st.PID != st.Leader || st.LeaderInfo.Port != 5050 || st.LeaderInfo.Address.IP != "127.0.0.1" || st.Cluster != "c-1" {
		t.Errorf("leader: %q %q %+v cluster %q", st.Leader, st.PID, st.LeaderInfo, st.Cluster)
	}
	if math.Abs(st.StartTime-1796588657.909) > 1e-6 { // 2026-12-06T20:24:17.909Z
		t.Errorf("start_time = %v, want seconds as a float", st.StartTime)
	}
	if len(st.Slaves) != 1 || st.Slaves[0].PID != "slave(1)@10.0.0.5:5051" || st.Slaves[0].Resources.Ports != "[31000-32000]" || !st.Slaves[0].Active || st.ActivatedSlaves != 1 {
		t.Errorf("slaves (the removed one left out): %+v", st.Slaves)
	}
	fw := st.Frameworks[0]
	if len(fw.Tasks) != 1 || len(fw.CompletedTasks) != 1 || fw.CompletedTasks[0].ID != "shop_web.0" || len(fw.UnreachableTasks) != 1 {
		t.Fatalf("tasks %+v, completed %+v, unreachable %+v", fw.Tasks, fw.CompletedTasks, fw.UnreachableTasks)
	}
	tk := fw.Tasks[0]
	if tk.Name != "web.shop" || tk.SlaveID != "a-1" || tk.Resources.Ports != "[31000-31001]" || tk.State != "TASK_RUNNING" {
		t.Errorf("task: %+v", tk)
	}
	// Mesos-DNS takes the task's IP from its latest TASK_RUNNING status.
	if ss := tk.Statuses; len(ss) != 2 || ss[0].State != "TASK_STARTING" || ss[1].State != "TASK_RUNNING" || ss[1].Timestamp-ss[0].Timestamp != 2 ||
		ss[1].Healthy == nil || !*ss[1].Healthy || ss[1].ContainerStatus.NetworkInfos[0].IPAddresses[0].IPAddress != "10.0.0.5" {
		t.Errorf("statuses: %+v", ss)
	}
	// A status the master made (the agent was cut off) says nothing of the task's network.
	if ss := fw.UnreachableTasks[0].Statuses; len(ss) != 2 || ss[1].State != "TASK_UNREACHABLE" || len(ss[1].ContainerStatus.NetworkInfos) != 0 ||
		len(ss[0].ContainerStatus.NetworkInfos) != 1 {
		t.Errorf("statuses of the unreachable task: %+v", ss)
	}
	wantPorts := []mesosPort{{Number: 31000, Name: "http", Protocol: "tcp"}, {Number: 31001, Name: "dns", Protocol: "udp"}, {Number: 31001, Name: "dns", Protocol: "tcp"}}
	if d := tk.Discovery; d.Name != "web.shop" || d.Visibility != "FRAMEWORK" || !slices.Equal(d.Ports.Ports, wantPorts) {
		t.Errorf("discovery: %+v, want ports %+v", d, wantPorts)
	}
	if len(tk.Labels) != 1 || tk.Labels[0] != (mesosLabel{"tier", "front"}) {
		t.Errorf("labels: %+v", tk.Labels)
	}
	if strings.Contains(string(b), `"pid":""`) {
		t.Error("an empty pid: Mesos-DNS refuses to parse the state")
	}

	// An API on every address: the leader's pid has the IP raft reaches it on (Mesos-DNS makes
	// leader.mesos of it, and stops at anything but an IP).
	for _, listen := range []string{"0.0.0.0:5050", "[::]:5050", ":5050"} {
		in.leaderHTTP = listen
		if got := mesosState(in); got.Leader != "master@10.0.0.1:5050" || got.LeaderInfo.Address.IP != "10.0.0.1" {
			t.Errorf("API on %s: leader %q, %+v", listen, got.Leader, got.LeaderInfo.Address)
		}
	}
}
