package main

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// TestPrivilegedOnlyWhereAllowed: containers run with containerd's default capabilities (the
// plain app's, wherever it lands); an app asking for a privileged container is placed only on
// the agent started with --allow-privileged, and gets every capability there; the other agent
// refuses such a launch.
func TestPrivilegedOnlyWhereAllowed(t *testing.T) {
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--allocation-interval", "200ms"}, `API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
	base, seed := got[0], got[1]
	agentArgs := func(ports string, extra ...string) []string {
		return append([]string{"agent", "--join", seed, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
			"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:1024;disk:1000;ports:[" + ports + "]"}, extra...)
	}
	_, got = startProcess(t, agentArgs("32900-32910"), `API:\s+(http://\S+)`)
	plainAgent := got[0]
	startProcess(t, agentArgs("32920-32930", "--allow-privileged"), `API:\s+(http://\S+)`)
	var agents []api.AgentView
	waitJob(t, "both agents registered", 30*time.Second, func() bool {
		return httpJSON(t, "GET", base+"/v1/agents", nil, &agents) == http.StatusOK && len(agents) == 2
	})
	allowed := ""
	for _, a := range agents {
		if a.Attributes[api.PrivilegedAttribute] == "true" {
			allowed = a.ID
		}
	}
	if allowed == "" {
		t.Fatalf("no agent has %s: %+v", api.PrivilegedAttribute, agents)
	}

	postApp(t, base, `{"id": "/priv", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest", "privileged": true}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 2}`)
	postApp(t, base, `{"id": "/plain", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1}`)
	type tasks struct {
		Tasks []struct {
			ID      string `json:"id"`
			SlaveID string `json:"slaveId"`
			State   string `json:"state"`
		} `json:"tasks"`
	}
	var priv, plain tasks
	waitJob(t, "both apps running", 60*time.Second, func() bool {
		httpJSON(t, "GET", base+"/v2/apps/priv/tasks", nil, &priv)
		httpJSON(t, "GET", base+"/v2/apps/plain/tasks", nil, &plain)
		running := func(ts tasks) int {
			n := 0
			for _, tk := range ts.Tasks {
				if tk.State == "TASK_RUNNING" {
					n++
				}
			}
			return n
		}
		return running(priv) == 2 && running(plain) == 1
	})
	for _, tk := range priv.Tasks {
		if tk.SlaveID != allowed {
			t.Fatalf("privileged task %s on %s, want only the agent that allows it (%s)", tk.ID, tk.SlaveID, allowed)
		}
	}
	caps := func(taskID string) []string {
		client := containerdtest.Client(t)
		ctx := namespaces.WithNamespace(containerdtest.Context(t), ns)
		c, err := client.LoadContainer(ctx, taskID)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := c.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return spec.Process.Capabilities.Effective
	}
	if c := caps(priv.Tasks[0].ID); !slices.Contains(c, "CAP_SYS_ADMIN") {
		t.Fatalf("the privileged container's capabilities: %v, want CAP_SYS_ADMIN among them", c)
	}
	if c := caps(plain.Tasks[0].ID); slices.Contains(c, "CAP_SYS_ADMIN") || len(c) == 0 {
		t.Fatalf("a default container's capabilities: %v, want containerd's defaults (no CAP_SYS_ADMIN)", c)
	}
	var refusal struct {
		Field string `json:"field"`
	}
	info := api.TaskInfo{TaskID: "sneaky", Image: containerdtest.TestAppImage, Privileged: true}
	info.Resources.CPUs, info.Resources.Mem = 0.1, 16
	if code := httpJSON(t, "POST", plainAgent+"/v1/tasks", info, &refusal); code != http.StatusUnprocessableEntity || refusal.Field != "privileged" {
		t.Fatalf("a privileged launch on an agent that does not allow it: %d %+v", code, refusal)
	}
}
