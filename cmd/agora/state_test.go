package main

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
)

// mesosDNSState is what Mesos-DNS reads of a Mesos master's state: frameworks with their tasks,
// slaves with their pids, and the leader.
type mesosDNSState struct {
	Leader     string `json:"leader"`
	Cluster    string `json:"cluster"`
	Frameworks []struct {
		ID, Name, Hostname string
		Tasks              []struct {
			ID          string `json:"id"`
			Name        string `json:"name"`
			FrameworkID string `json:"framework_id"`
			SlaveID     string `json:"slave_id"`
			State       string `json:"state"`
			Resources   struct {
				Ports string  `json:"ports"`
				CPUs  float64 `json:"cpus"`
			} `json:"resources"`
			Statuses []struct {
				State           string  `json:"state"`
				Timestamp       float64 `json:"timestamp"`
				ContainerStatus struct {
					NetworkInfos []struct {
						IPAddresses []struct {
							IPAddress string `json:"ip_address"`
						} `json:"ip_addresses"`
					} `json:"network_infos"`
				} `json:"container_status"`
			} `json:"statuses"`
			Discovery struct {
				Name  string `json:"name"`
				Ports struct {
					Ports []struct {
						Number   int    `json:"number"`
						Name     string `json:"name"`
						Protocol string `json:"protocol"`
					} `json:"ports"`
				} `json:"ports"`
			} `json:"discovery"`
		} `json:"tasks"`
	} `json:"frameworks"`
	Slaves []struct {
		ID, Hostname, PID string
		Resources         struct {
			Ports string `json:"ports"`
		} `json:"resources"`
	} `json:"slaves"`
}

// TestMesosStateOfADevNode: an `agora dev` node running an app answers /master/state and
// /state.json as a Mesos master would to Mesos-DNS (the app's task under the Marathon
// framework, on the slave it names, with its ports, its statuses from TASK_STARTING to
// TASK_RUNNING with the agent's IP, its discovery ports under the app's port names and
// protocols; pids as name@ip:port), and /v1/state in Agora's shapes.
func TestMesosStateOfADevNode(t *testing.T) {
	t.Parallel()
	first := taskPorts()
	base, _, _ := startMarathonDev(t, first)
	postApp(t, base, `{"id": "/shop/web", "cpus": 0.1, "mem": 32, "cmd": "sleep 1000",
		"portDefinitions": [{"port": 0, "name": "http"}, {"port": 0, "name": "dns", "protocol": "udp,tcp"}]}`)
	app := waitAppRunning(t, base, "/shop/web", 1)
	taskID := app.Tasks[0].ID
	port0, port1 := app.Tasks[0].Ports[0], app.Tasks[0].Ports[1]

	for _, path := range []string{"/master/state", "/state.json", "/master/state.json"} {
		var st mesosDNSState
		if code := httpJSON(t, "GET", base+path, nil, &st); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		if !strings.HasPrefix(st.Leader, "master@") || !validHostPort(strings.TrimPrefix(st.Leader, "master@")) || st.Cluster == "" {
			t.Fatalf("%s: leader %q, cluster %q", path, st.Leader, st.Cluster)
		}
		if len(st.Slaves) != 1 || !strings.HasPrefix(st.Slaves[0].PID, "slave(1)@127.0.0.1:") || st.Slaves[0].Resources.Ports != fmt.Sprintf("[%d-%d]", first, first+40) {
			t.Fatalf("%s: slaves %+v", path, st.Slaves)
		}
		found := false
		for _, fw := range st.Frameworks {
			for _, tk := range fw.Tasks {
				if tk.ID != taskID {
					continue
				}
				found = true
				if fw.Name != "marathon" || tk.Name != "web.shop" || tk.SlaveID != st.Slaves[0].ID || tk.State != "TASK_RUNNING" || tk.FrameworkID != fw.ID {
					t.Errorf("%s: the app's task %+v under framework %s %s", path, tk, fw.ID, fw.Name)
				}
				want := fmt.Sprintf("[%d-%d, %d-%d]", port0, port0, port1, port1)
				if port1 == port0+1 {
					want = fmt.Sprintf("[%d-%d]", port0, port1)
				}
				if tk.Resources.Ports != want {
					t.Errorf("%s: the task's ports %q, want %s", path, tk.Resources.Ports, want)
				}
				// Mesos-DNS's A records take the IP of the latest TASK_RUNNING status.
				ss := tk.Statuses
				if len(ss) != 2 || ss[0].State != "TASK_STARTING" || ss[1].State != "TASK_RUNNING" || ss[0].Timestamp < 1e9 || ss[1].Timestamp < ss[0].Timestamp ||
					ss[1].ContainerStatus.NetworkInfos[0].IPAddresses[0].IPAddress != "127.0.0.1" {
					t.Errorf("%s: statuses %+v", path, ss)
				}
				// Its SRV records: _web.shop._tcp for http, _web.shop._udp and _tcp for dns.
				want = fmt.Sprintf("[{%d http tcp} {%d dns udp} {%d dns tcp}]", port0, port1, port1)
				if got := fmt.Sprint(tk.Discovery.Ports.Ports); tk.Discovery.Name != "web.shop" || got != want {
					t.Errorf("%s: discovery %q %s, want web.shop %s", path, tk.Discovery.Name, got, want)
				}
			}
		}
		if !found {
			t.Fatalf("%s: no framework lists the app's task %s: %+v", path, taskID, st.Frameworks)
		}
	}

	var st api.ClusterState
	if code := httpJSON(t, "GET", base+"/v1/state", nil, &st); code != 200 {
		t.Fatalf("GET /v1/state: %d", code)
	}
	if st.Leader.ID == "" || st.Leader.HTTP == "" || len(st.Agents) != 1 || st.Agents[0].Tasks != 1 || len(st.Frameworks) < 2 {
		t.Fatalf("/v1/state: %+v", st)
	}
	running := 0
	for _, ts := range st.Tasks {
		if ts.TaskID == taskID && ts.State == "TASK_RUNNING" && ts.AgentID == st.Agents[0].ID {
			running++
		}
	}
	if running != 1 {
		t.Fatalf("/v1/state's tasks lack the app's running task: %+v", st.Tasks)
	}
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != "" && port != "0"
}
