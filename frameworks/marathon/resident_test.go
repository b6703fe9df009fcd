package marathon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

const residentApp = `{"id": "/db", "cmd": "sleep 1000", "cpus": 0.5, "mem": 64, "disk": 10, "instances": 1,
	"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 100}}]}}`

// residentCluster is a master with two simulated agents and the service framework as role
// "marathon", which can reserve.
func residentCluster(t *testing.T) (*Service, string) {
	return simClusterWith(t, 2, resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000, Ports: resources.Ranges{{Begin: 31000, End: 31100}}},
		func(cfg *Config) { cfg.Role = "marathon" })
}

// appTasks lists an app's tasks as GET /v2/apps/{id}/tasks answers them.
func appTasks(t *testing.T, base, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, x := range getJSON(t, base+"/v2/apps"+id+"/tasks").(map[string]any)["tasks"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

// persistenceIDs are the persistence ids of a task's local volumes.
func persistenceIDs(task map[string]any) []string {
	var out []string
	for _, v := range task["localVolumes"].([]any) {
		out = append(out, v.(map[string]any)["persistenceId"].(string))
	}
	return out
}

// oneTask waits until the app has one task in state, and answers it.
func oneTask(t *testing.T, base, id, state string) map[string]any {
	t.Helper()
	var got map[string]any
	waitFor(t, id+" with one task "+state, func() bool {
		ts := appTasks(t, base, id)
		if len(ts) == 1 && ts[0]["state"] == state {
			got = ts[0]
			return true
		}
		return false
	})
	return got
}

// settled waits until no deployment is left: a change of an app a deployment is changing is a
// 409.
func settled(t *testing.T, base string) {
	t.Helper()
	waitFor(t, "no deployment left", func() bool {
		var deps []any
		return call(t, "GET", base+"/v2/deployments", "", &deps) == http.StatusOK && len(deps) == 0
	})
}

// masterVolumes lists the volumes the master's record holds, by agent.
func masterVolumes(t *testing.T, base string) map[string][]string {
	t.Helper()
	var body struct {
		Reservations []api.AgentReservations `json:"reservations"`
	}
	b, _ := json.Marshal(getJSON(t, base+"/v1/reservations"))
	json.Unmarshal(b, &body)
	out := map[string][]string{}
	for _, r := range body.Reservations {
		for _, v := range r.Volumes {
			out[r.AgentID] = append(out[r.AgentID], v.ID)
		}
	}
	return out
}

// TestResidentAppOnTheMaster: a resident app on a real master (simulated agents): its instance
// reserves and makes its volume where it lands; a killed task comes back on the same agent with
// the same volume; scaled to 0 it is listed suspended with its volume, and scaled back it takes
// it again; wipe=true gives a new volume; deleting the app leaves no volume in the master's
// record.
func TestResidentAppOnTheMaster(t *testing.T) {
	svc, base := residentCluster(t)
	if code := call(t, "POST", base+"/v2/apps", residentApp, nil); code != http.StatusCreated {
		t.Fatalf("POST a resident app: %d", code)
	}
	first := oneTask(t, base, "/db", "TASK_RUNNING")
	agent, vols := first["slaveId"], persistenceIDs(first)
	if len(vols) != 1 {
		t.Fatalf("the task's localVolumes: %v", first["localVolumes"])
	}
	// What a new leader loads from the store: the instance on its reservation, with its agent,
	// its volume and what it reserved.
	loaded, err := svc.load(nil)
	if err != nil {
		t.Fatal(err)
	}
	in := loaded.instances[first["id"].(string)]
	r := loaded.reservations[in.rec.Reservation]
	if r == nil || r.AgentID != agent || len(r.Volumes) != 1 || r.Volumes[0].PersistenceID != vols[0] ||
		!r.Resources.Equal(resources.Resources{CPUs: 0.5, Mem: 64, Disk: 110}) {
		t.Fatalf("the store's record of the instance's reservation: %+v", r)
	}
	sameShape(t, "task_resident.json", first)
	if got := masterVolumes(t, base)[agent.(string)]; len(got) != 1 || got[0] != vols[0] {
		t.Fatalf("the master's volumes on %s: %v, want %v", agent, got, vols)
	}

	// Killed: replaced on the same agent, mounting the same volume.
	if code := call(t, "DELETE", base+"/v2/apps/db/tasks/"+first["id"].(string), "", nil); code != http.StatusOK {
		t.Fatalf("kill: %d", code)
	}
	var second map[string]any
	waitFor(t, "a new task of /db", func() bool {
		ts := appTasks(t, base, "/db")
		if len(ts) == 1 && ts[0]["id"] != first["id"] && ts[0]["state"] == "TASK_RUNNING" {
			second = ts[0]
			return true
		}
		return false
	})
	if second["slaveId"] != agent || strings.Join(persistenceIDs(second), ",") != vols[0] {
		t.Fatalf("relaunched on %v with %v, want %v with %v", second["slaveId"], persistenceIDs(second), agent, vols)
	}

	// Scaled to 0: suspended, listed with its agent and volume; the volume stays.
	settled(t, base)
	if code := call(t, "PUT", base+"/v2/apps/db", `{"instances": 0}`, nil); code != http.StatusOK {
		t.Fatalf("scale to 0: %d", code)
	}
	suspended := oneTask(t, base, "/db", "TASK_KILLED")
	sameShape(t, "task_reserved.json", suspended)
	if all := getJSON(t, base+"/v2/tasks").(map[string]any)["tasks"].([]any); len(all) != 1 || all[0].(map[string]any)["id"] != suspended["id"] {
		t.Fatalf("GET /v2/tasks lists %v, want the suspended instance", all)
	}
	if suspended["slaveId"] != agent || strings.Join(persistenceIDs(suspended), ",") != vols[0] {
		t.Fatalf("suspended: %v", suspended)
	}
	if got := masterVolumes(t, base)[agent.(string)]; len(got) != 1 {
		t.Fatalf("scaled to 0, the master's volumes on %s: %v, want %v kept", agent, got, vols)
	}

	// Scaled back: the suspended instance runs again on its volume.
	settled(t, base)
	if code := call(t, "PUT", base+"/v2/apps/db", `{"instances": 1}`, nil); code != http.StatusOK {
		t.Fatalf("scale to 1: %d", code)
	}
	back := oneTask(t, base, "/db", "TASK_RUNNING")
	if back["slaveId"] != agent || strings.Join(persistenceIDs(back), ",") != vols[0] {
		t.Fatalf("scaled back on %v with %v, want %v with %v", back["slaveId"], persistenceIDs(back), agent, vols)
	}

	// wipe=true: killed, its volume destroyed; the replacement has a new one.
	if code := call(t, "DELETE", base+"/v2/apps/db/tasks/"+back["id"].(string)+"?wipe=true", "", nil); code != http.StatusOK {
		t.Fatalf("wipe: %d", code)
	}
	waitFor(t, "a fresh instance with a new volume, the old one destroyed", func() bool {
		ts := appTasks(t, base, "/db")
		if len(ts) != 1 || ts[0]["state"] != "TASK_RUNNING" || len(persistenceIDs(ts[0])) != 1 || persistenceIDs(ts[0])[0] == vols[0] {
			return false
		}
		for _, vs := range masterVolumes(t, base) {
			for _, v := range vs {
				if v == vols[0] {
					return false
				}
			}
		}
		return true
	})

	// A suspended instance wiped through POST /v2/tasks/delete: its volume goes, and with the
	// app at 0 instances nothing is left of it.
	settled(t, base)
	if code := call(t, "PUT", base+"/v2/apps/db", `{"instances": 0}`, nil); code != http.StatusOK {
		t.Fatalf("scale to 0: %d", code)
	}
	idle := oneTask(t, base, "/db", "TASK_KILLED")
	if code := call(t, "POST", base+"/v2/tasks/delete?wipe=true", `{"ids": ["`+idle["id"].(string)+`"]}`, nil); code != http.StatusOK {
		t.Fatalf("wipe a suspended instance: %d", code)
	}
	waitFor(t, "the suspended instance wiped", func() bool { return len(appTasks(t, base, "/db")) == 0 && len(masterVolumes(t, base)) == 0 })

	// Deleted: every volume of it goes.
	settled(t, base)
	if code := call(t, "PUT", base+"/v2/apps/db", `{"instances": 2}`, nil); code != http.StatusOK {
		t.Fatalf("scale to 2: %d", code)
	}
	waitFor(t, "two instances with their volumes", func() bool {
		n := 0
		for _, vs := range masterVolumes(t, base) {
			n += len(vs)
		}
		return n == 2
	})
	settled(t, base)
	if code := call(t, "DELETE", base+"/v2/apps/db", "", nil); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	waitFor(t, "no volume left in the master's record", func() bool { return len(masterVolumes(t, base)) == 0 })
}

// TestResidentAgentRemoved: an agent removed for good (a new agent registered in its place,
// its data dir lost) takes the instance's volume with it: the instance starts afresh on
// another agent, with a new volume, and the framework's record of the old one is gone.
func TestResidentAgentRemoved(t *testing.T) {
	res := resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000, Ports: resources.Ranges{{Begin: 31000, End: 31100}}}
	svc, base, sim := simClusterAgents(t, 2, res, func(cfg *Config) { cfg.Role = "marathon" })
	if code := call(t, "POST", base+"/v2/apps", residentApp, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	first := oneTask(t, base, "/db", "TASK_RUNNING")
	agent, vols := first["slaveId"].(string), persistenceIDs(first)
	var i int
	fmt.Sscanf(agent, "sim-agent-%05d", &i)
	sim.Replace(i, "sim-agent-new", res)
	var fresh map[string]any
	waitFor(t, "a fresh instance with a new volume", func() bool {
		ts := appTasks(t, base, "/db")
		if len(ts) == 1 && ts[0]["state"] == "TASK_RUNNING" && ts[0]["id"] != first["id"] {
			fresh = ts[0]
			return true
		}
		return false
	})
	if got := persistenceIDs(fresh); len(got) != 1 || got[0] == vols[0] {
		t.Fatalf("after its agent was removed the instance mounts %v, want a new volume (not %v)", got, vols)
	}
	loaded, err := svc.load(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range loaded.reservations {
		if r.AgentID == agent {
			t.Fatalf("the store still has a reservation on the removed agent: %+v", r)
		}
	}
}

// TestResidentAppNeedsARole: with the framework's role "*" a resident app is a 422 that names
// the volume and says how to start the masters.
func TestResidentAppNeedsARole(t *testing.T) {
	_, base := simCluster(t, 1, resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000})
	var e ValidationError
	if code := call(t, "POST", base+"/v2/apps", residentApp, &e); code != http.StatusUnprocessableEntity {
		t.Fatalf("POST: %d, want 422", code)
	}
	if len(e.Details) != 1 || e.Details[0].Path != "/container/volumes(0)/persistent" || !strings.Contains(strings.Join(e.Details[0].Errors, ""), "--marathon-role") {
		t.Fatalf("422 body: %+v", e)
	}
}

// TestResidentValidation: Marathon's rules for persistent volumes and resident apps, each a 422
// naming its field; Agora refuses path and mount disks, which its agents do not have.
func TestResidentValidation(t *testing.T) {
	_, base := residentCluster(t)
	vol := func(v string) string {
		return `{"id": "/v", "cmd": "x", "mem": 32, "container": {"type": "MESOS", "volumes": [` + v + `]}`
	}
	for _, tt := range []struct {
		name, body, path, msg string
	}{
		{"absolute containerPath", vol(`{"containerPath": "/data", "persistent": {"size": 10}}`) + `}`, "/container/volumes(0)/containerPath", `must not contain "/"`},
		{"nested containerPath", vol(`{"containerPath": "var/data", "persistent": {"size": 10}}`) + `}`, "/container/volumes(0)/containerPath", `must not contain "/"`},
		{"dot containerPath", vol(`{"containerPath": "..", "persistent": {"size": 10}}`) + `}`, "/container/volumes(0)/containerPath", "directory name"},
		{"read-only", vol(`{"containerPath": "data", "mode": "RO", "persistent": {"size": 10}}`) + `}`, "/container/volumes(0)/mode", "expected RW"},
		{"no size", vol(`{"containerPath": "data", "persistent": {}}`) + `}`, "/container/volumes(0)/persistent/size", "more than 0"},
		{"mount disk", vol(`{"containerPath": "data", "persistent": {"type": "mount", "size": 10}}`) + `}`, "/container/volumes(0)/persistent/type", "root disk only"},
		{"path disk", vol(`{"containerPath": "data", "persistent": {"type": "path", "size": 10}}`) + `}`, "/container/volumes(0)/persistent/type", "root disk only"},
		{"unknown type", vol(`{"containerPath": "data", "persistent": {"type": "ssd", "size": 10}}`) + `}`, "/container/volumes(0)/persistent/type", "expected root"},
		{"maxSize on root", vol(`{"containerPath": "data", "persistent": {"size": 10, "maxSize": 20}}`) + `}`, "/container/volumes(0)/persistent/maxSize", "Only mount volumes"},
		{"constraints on root", vol(`{"containerPath": "data", "persistent": {"size": 10, "constraints": [["path", "LIKE", "x"]]}}`) + `}`, "/container/volumes(0)/persistent/constraints", "not supported"},
		{"with hostPath", vol(`{"containerPath": "data", "hostPath": "/tmp", "persistent": {"size": 10}}`) + `}`, "/container/volumes(0)", "persistent only"},
		{"over capacity", vol(`{"containerPath": "data", "persistent": {"size": 10}}`) + `, "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.5}}`, "/upgradeStrategy/maximumOverCapacity", "expected 0"},
		{"unreachable enabled", vol(`{"containerPath": "data", "persistent": {"size": 10}}`) + `, "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}}`, "/unreachableStrategy", "must be disabled"},
		{"relaunch after timeout", vol(`{"containerPath": "data", "persistent": {"size": 10}}`) + `, "residency": {"taskLostBehavior": "RELAUNCH_AFTER_TIMEOUT"}}`, "/residency/taskLostBehavior", "WAIT_FOREVER"},
		{"negative escalation", vol(`{"containerPath": "data", "persistent": {"size": 10}}`) + `, "residency": {"relaunchEscalationTimeoutSeconds": -1}}`, "/residency/relaunchEscalationTimeoutSeconds", "0 or more"},
		{"unreachable not disabled", `{"id": "/v", "cmd": "x", "unreachableStrategy": "sometimes"}`, "/unreachableStrategy", "disabled"},
		{"accepted roles", vol(`{"containerPath": "data", "persistent": {"size": 10}}`) + `, "acceptedResourceRoles": ["slave_public"]}`, "/acceptedResourceRoles", `acceptedResourceRoles = ["*"]`},
		{"external", vol(`{"containerPath": "data", "external": {"name": "x"}}`) + `}`, "/container/volumes(0)", "not external"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var e ValidationError
			if code := call(t, "POST", base+"/v2/apps", tt.body, &e); code != http.StatusUnprocessableEntity {
				t.Fatalf("POST %s: %d, want 422", tt.body, code)
			}
			for _, d := range e.Details {
				if d.Path == tt.path && strings.Contains(strings.Join(d.Errors, " "), tt.msg) {
					return
				}
			}
			t.Fatalf("422 %+v: want %s with %q", e, tt.path, tt.msg)
		})
	}

	// A resident app's resources and volumes stay as written (its reservations hold them).
	if code := call(t, "POST", base+"/v2/apps", strings.Replace(residentApp, `"instances": 1`, `"instances": 0`, 1), nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	settled(t, base)
	for _, tt := range []struct{ body, path string }{
		{`{"cpus": 1}`, "/cpus"},
		{`{"mem": 128}`, "/mem"},
		{`{"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "persistent": {"size": 200}}]}}`, "/container/volumes"},
		{`{"container": {"type": "MESOS"}}`, "/container/volumes"},
		{`{"requirePorts": true}`, "/requirePorts"},
		{`{"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 100}}], "portMappings": [{"containerPort": 80, "hostPort": 31005}]}}`, "/"},
	} {
		var e ValidationError
		if code := call(t, "PUT", base+"/v2/apps/db", tt.body, &e); code != http.StatusUnprocessableEntity || len(e.Details) == 0 || e.Details[0].Path != tt.path {
			t.Errorf("PUT %s: %d %+v, want 422 at %s", tt.body, code, e, tt.path)
		}
	}
	settled(t, base)
	if code := call(t, "PUT", base+"/v2/apps/db", `{"instances": 2, "env": {"A": "b"}}`, nil); code != http.StatusOK {
		t.Errorf("PUT of instances and env: %d, want 200", code)
	}
}

// TestResidentAppWire: a resident app shows Marathon's residency, its upgrade strategy's and
// unreachable strategy's defaults for it, and its volumes with their defaults.
func TestResidentAppWire(t *testing.T) {
	_, base := residentCluster(t)
	if code := call(t, "POST", base+"/v2/apps", strings.Replace(residentApp, `"instances": 1`, `"instances": 0`, 1), nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	app := getJSON(t, base+"/v2/apps/db").(map[string]any)["app"].(map[string]any)
	sameShape(t, "app_resident.json", app)
	got, _ := json.Marshal(map[string]any{"residency": app["residency"], "upgradeStrategy": app["upgradeStrategy"], "unreachableStrategy": app["unreachableStrategy"],
		"volume": app["container"].(map[string]any)["volumes"].([]any)[0]})
	want := `{"residency":{"relaunchEscalationTimeoutSeconds":3600,"taskLostBehavior":"WAIT_FOREVER"},"unreachableStrategy":"disabled",` +
		`"upgradeStrategy":{"maximumOverCapacity":0,"minimumHealthCapacity":0.5},"volume":{"containerPath":"data","mode":"RW","persistent":{"constraints":[],"size":100,"type":"root"}}}`
	if string(got) != want {
		t.Fatalf("resident app:\n got %s\nwant %s", got, want)
	}
	// What GET answers, PUT back (without its version: that would be a rollback), is the same
	// app: its volume with Marathon's defaults filled in is the volume it had.
	delete(app, "version")
	delete(app, "versionInfo")
	b, _ := json.Marshal(app)
	settled(t, base)
	if code := call(t, "PUT", base+"/v2/apps/db", string(b), nil); code != http.StatusOK {
		t.Fatalf("PUT back what GET answered: %d", code)
	}
}
