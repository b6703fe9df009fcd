package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// residentTask is a task of a resident app as GET /v2/apps/{id}/tasks lists it.
type residentTask struct {
	ID           string `json:"id"`
	SlaveID      string `json:"slaveId"`
	State        string `json:"state"`
	Version      string `json:"version"`
	LocalVolumes []struct {
		ContainerPath string `json:"containerPath"`
		PersistenceID string `json:"persistenceId"`
	} `json:"localVolumes"`
}

func (t residentTask) volume() string {
	if len(t.LocalVolumes) != 1 {
		return ""
	}
	return t.LocalVolumes[0].PersistenceID
}

// waitResidentTask waits until the app lists one task, as cond wants it.
func waitResidentTask(t *testing.T, base, what string, cond func(residentTask) bool) residentTask {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last []residentTask
	for time.Now().Before(deadline) {
		var out struct {
			Tasks []residentTask `json:"tasks"`
		}
		if code := httpJSON(t, "GET", base+"/v2/apps/db/tasks", nil, &out); code == http.StatusOK {
			last = out.Tasks
			if len(out.Tasks) == 1 && cond(out.Tasks[0]) {
				return out.Tasks[0]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no task of /db %s; last %+v", what, last)
	return residentTask{}
}

// counted waits until the task's stdout says the count its start wrote in the volume.
func counted(t *testing.T, agentBase, taskID string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var text string
	for time.Now().Before(deadline) {
		if resp, err := http.Get(agentBase + "/v1/tasks/" + taskID + "/logs"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			text = string(b)
			if i := strings.Index(text, "count="); i >= 0 && strings.Contains(text[i:], "\n") {
				return strings.TrimSpace(text[i+len("count=") : i+strings.Index(text[i:], "\n")])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("task %s printed no count; stdout %q", taskID, text)
	return ""
}

// noDeployment waits until no deployment is left: a change of an app a deployment is changing
// is a 409.
func noDeployment(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var deps []any
		if httpJSON(t, "GET", base+"/v2/deployments", nil, &deps) == http.StatusOK && len(deps) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployments left: %v", deps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentVolumes lists the ids of the agent's persistent volumes.
func agentVolumes(t *testing.T, agentBase string) []string {
	t.Helper()
	var vols []api.AgentVolume
	if code := httpJSON(t, "GET", agentBase+"/v1/volumes", nil, &vols); code != http.StatusOK {
		t.Fatalf("GET /v1/volumes: %d", code)
	}
	var out []string
	for _, v := range vols {
		out = append(out, v.ID)
	}
	return out
}

func waitAgentVolumes(t *testing.T, agentBase, what string, cond func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last []string
	for time.Now().Before(deadline) {
		if last = agentVolumes(t, agentBase); cond(last) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the agent's volumes: %v, want %s", last, what)
}

// TestMarathonResidentApp: a Marathon app with a persistent volume on agora dev (containerd),
// the framework started with --marathon-role. Each start of its task adds one to a counter in
// the volume: killed, its task comes back on the same agent and the count goes on; scaled to 0
// and back, the same; wipe=true starts over on a new volume; deleting the app removes the
// volume from the agent.
func TestMarathonResidentApp(t *testing.T) {
	t.Parallel()
	base, agentBase, _ := startMarathonDev(t, taskPorts(), "--marathon-role", "stateful")
	t.Cleanup(func() {
		// Whatever the test left, its volumes are destroyed (the agent keeps them mounted until
		// then) before the node stops and its data dir goes.
		if t.Failed() {
			httpJSON(t, "DELETE", base+"/v2/apps/db?force=true", nil, nil)
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && len(agentVolumes(t, agentBase)) > 0; {
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	postApp(t, base, `{"id": "/db", "cpus": 0.1, "mem": 32, "disk": 1, "instances": 1,
		"cmd": "n=$(cat data/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > data/count && sync && echo count=$n; exec sleep 3600",
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"type": "root", "size": 64}}]}}`)

	running := func(tk residentTask) bool { return tk.State == "TASK_RUNNING" && tk.volume() != "" }
	first := waitResidentTask(t, base, "running with its volume", running)
	vol, agent := first.volume(), first.SlaveID
	if got := counted(t, agentBase, first.ID); got != "1" {
		t.Fatalf("the first start counted %s, want 1", got)
	}
	if vols := agentVolumes(t, agentBase); len(vols) != 1 || vols[0] != vol {
		t.Fatalf("the agent's volumes: %v, want [%s]", vols, vol)
	}

	// Killed: back on the same agent, the same volume, the count goes on.
	if code := httpJSON(t, "DELETE", base+"/v2/apps/db/tasks/"+first.ID, nil, nil); code != http.StatusOK {
		t.Fatalf("kill: %d", code)
	}
	second := waitResidentTask(t, base, "relaunched", func(tk residentTask) bool { return running(tk) && tk.ID != first.ID })
	if second.SlaveID != agent || second.volume() != vol {
		t.Fatalf("relaunched on %s with %s, want %s with %s", second.SlaveID, second.volume(), agent, vol)
	}
	if got := counted(t, agentBase, second.ID); got != "2" {
		t.Fatalf("after a kill the count is %s, want 2", got)
	}

	// Scaled to 0: suspended, its volume kept and shown; back to 1: the same volume.
	noDeployment(t, base)
	if code := httpJSON(t, "PUT", base+"/v2/apps/db", json.RawMessage(`{"instances": 0}`), nil); code != http.StatusOK {
		t.Fatalf("scale to 0: %d", code)
	}
	suspended := waitResidentTask(t, base, "suspended", func(tk residentTask) bool { return tk.Version == "" && tk.volume() == vol })
	if suspended.SlaveID != agent {
		t.Fatalf("suspended on %s, want %s", suspended.SlaveID, agent)
	}
	out, err := agora(t, "app", "show", "/db", "--master", base)
	if err != nil || !strings.Contains(out, "VOLUMES") || !strings.Contains(out, "suspended") || !strings.Contains(out, "data="+vol) || !strings.Contains(out, agent) {
		t.Fatalf("agora app show of a suspended instance: %v\n%s", err, out)
	}
	// The UI's app page lists it too: suspended, on its agent, with its volume.
	b := newBrowser(t, base)
	b.open("#/apps/db")
	row := fmt.Sprintf(`#instances tr[data-task=%q]`, suspended.ID)
	b.waitText("the app page shows the instance suspended", row+" .state", 30*time.Second, equals("suspended"))
	b.waitText("the app page shows its agent", row+" .agent", 5*time.Second, equals(agent))
	b.waitText("the app page shows its volume", row+" .volumes", 5*time.Second, equals("data = "+vol))
	noDeployment(t, base)
	if code := httpJSON(t, "PUT", base+"/v2/apps/db", json.RawMessage(`{"instances": 1}`), nil); code != http.StatusOK {
		t.Fatalf("scale to 1: %d", code)
	}
	third := waitResidentTask(t, base, "back", func(tk residentTask) bool { return running(tk) && tk.ID != second.ID })
	if third.SlaveID != agent || third.volume() != vol {
		t.Fatalf("scaled back on %s with %s, want %s with %s", third.SlaveID, third.volume(), agent, vol)
	}
	if got := counted(t, agentBase, third.ID); got != "3" {
		t.Fatalf("after scaling back the count is %s, want 3", got)
	}

	// wipe=true: a new volume, the count starts over, the old volume leaves the agent.
	if code := httpJSON(t, "DELETE", base+"/v2/apps/db/tasks/"+third.ID+"?wipe=true", nil, nil); code != http.StatusOK {
		t.Fatalf("wipe: %d", code)
	}
	fresh := waitResidentTask(t, base, "afresh", func(tk residentTask) bool { return running(tk) && tk.volume() != vol })
	if got := counted(t, agentBase, fresh.ID); got != "1" {
		t.Fatalf("after wipe=true the count is %s, want 1 (a new volume)", got)
	}
	waitAgentVolumes(t, agentBase, "the new volume only", func(vs []string) bool { return len(vs) == 1 && vs[0] == fresh.volume() })

	// Deleted: no volume left on the agent.
	noDeployment(t, base)
	if code := httpJSON(t, "DELETE", base+"/v2/apps/db", nil, nil); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	waitAgentVolumes(t, agentBase, "none", func(vs []string) bool { return len(vs) == 0 })
}
