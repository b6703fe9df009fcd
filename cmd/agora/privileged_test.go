package main

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/hostaccess"
)

// TestPrivilegedOnlyWhereAllowed: a plain app's containers run as nobody with no capability,
// no new privileges and the default seccomp filter, wherever they land; apps asking for a
// privileged container, or for root, are placed only on the agent started with
// --allow-privileged and --allow-root-tasks: every capability there, or uid 0 with containerd's
// defaults; the other agent refuses such launches.
func TestPrivilegedOnlyWhereAllowed(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--allocation-interval", "200ms"}, `API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
	base, seed := got[0], got[1]
	agentArgs := func(extra ...string) []string {
		return append([]string{"agent", "--join", seed, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
			"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:1024;disk:1000;ports:" + taskPortRange()}, extra...)
	}
	_, got = startProcess(t, agentArgs(), `API:\s+(http://\S+)`)
	plainAgent := got[0]
	startProcess(t, agentArgs("--allow-privileged", "--allow-root-tasks"), `API:\s+(http://\S+)`)
	var agents []api.AgentView
	waitJob(t, "both agents registered", 30*time.Second, func() bool {
		return httpJSON(t, "GET", base+"/v1/agents", nil, &agents) == http.StatusOK && len(agents) == 2
	})
	allowed := ""
	for _, a := range agents {
		if a.Attributes[api.PrivilegedAttribute] == "true" && a.Attributes[hostaccess.RootAttribute] == "true" {
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
	postApp(t, base, `{"id": "/rooted", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 2, "user": "root"}`)
	type tasks struct {
		Tasks []struct {
			ID      string `json:"id"`
			SlaveID string `json:"slaveId"`
			State   string `json:"state"`
		} `json:"tasks"`
	}
	var priv, plain, rooted tasks
	waitJob(t, "the three apps running", 60*time.Second, func() bool {
		httpJSON(t, "GET", base+"/v2/apps/priv/tasks", nil, &priv)
		httpJSON(t, "GET", base+"/v2/apps/plain/tasks", nil, &plain)
		httpJSON(t, "GET", base+"/v2/apps/rooted/tasks", nil, &rooted)
		running := func(ts tasks) int {
			n := 0
			for _, tk := range ts.Tasks {
				if tk.State == "TASK_RUNNING" {
					n++
				}
			}
			return n
		}
		return running(priv) == 2 && running(plain) == 1 && running(rooted) == 2
	})
	for _, tk := range append(priv.Tasks, rooted.Tasks...) {
		if tk.SlaveID != allowed {
			t.Fatalf("task %s on %s, want only the agent that allows it (%s)", tk.ID, tk.SlaveID, allowed)
		}
	}
	spec := func(taskID string) *specs.Spec {
		client := containerdtest.Client(t)
		ctx := namespaces.WithNamespace(containerdtest.Context(t), ns)
		c, err := client.LoadContainer(ctx, taskID)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Spec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := spec(priv.Tasks[0].ID); !slices.Contains(s.Process.Capabilities.Effective, "CAP_SYS_ADMIN") {
		t.Fatalf("the privileged container's capabilities: %v, want CAP_SYS_ADMIN among them", s.Process.Capabilities.Effective)
	}
	if s := spec(plain.Tasks[0].ID); len(s.Process.Capabilities.Effective) != 0 || len(s.Process.Capabilities.Bounding) != 0 || s.Process.User.UID != 65534 ||
		!s.Process.NoNewPrivileges || s.Linux.Seccomp == nil {
		t.Fatalf("a default container: uid %d, capabilities %v (bounding %v), no new privileges %v, seccomp %v; want nobody, none, true, the default filter",
			s.Process.User.UID, s.Process.Capabilities.Effective, s.Process.Capabilities.Bounding, s.Process.NoNewPrivileges, s.Linux.Seccomp != nil)
	}
	if s := spec(rooted.Tasks[0].ID); s.Process.User.UID != 0 || slices.Contains(s.Process.Capabilities.Effective, "CAP_SYS_ADMIN") || len(s.Process.Capabilities.Effective) == 0 ||
		!s.Process.NoNewPrivileges || s.Linux.Seccomp == nil {
		t.Fatalf("a root container: uid %d, capabilities %v; want 0 with containerd's defaults (no CAP_SYS_ADMIN), no new privileges, seccomp", s.Process.User.UID, s.Process.Capabilities.Effective)
	}
	var refusal struct {
		Field string `json:"field"`
	}
	info := api.TaskInfo{TaskID: "sneaky", Image: containerdtest.TestAppImage, Privileged: true}
	info.Resources.CPUs, info.Resources.Mem = 0.1, 16
	if code := httpJSON(t, "POST", plainAgent+"/v1/tasks", info, &refusal); code != http.StatusUnprocessableEntity || refusal.Field != "privileged" {
		t.Fatalf("a privileged launch on an agent that does not allow it: %d %+v", code, refusal)
	}
	info = api.TaskInfo{TaskID: "sneaky-root", Image: containerdtest.TestAppImage, User: "0:0"}
	info.Resources.CPUs, info.Resources.Mem = 0.1, 16
	if code := httpJSON(t, "POST", plainAgent+"/v1/tasks", info, &refusal); code != http.StatusUnprocessableEntity || refusal.Field != "user" {
		t.Fatalf("a root launch on an agent that does not allow it: %d %+v", code, refusal)
	}
}
