package chronos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// simMaster is a real master (raft on bbolt, real HTTP) with the batch framework, on simulated
// agents whose tasks end as finish says; the real path with containers is tested in cmd/agora.
type simMaster struct {
	sim  *mastertest.SimulatedAgents
	svc  *Service
	base string
	stop func()
}

// startSim starts it; tweaks change the service before it runs (the clock check).
func startSim(t testing.TB, dir string, clk clock.Clock, finish func(api.TaskInfo) (task.State, time.Duration), tweaks ...func(*Service)) *simMaster {
	t.Helper()
	sim := &mastertest.SimulatedAgents{Finish: finish}
	var svc *Service
	m, stop := frameworktest.Master(t, dir, sim, 20*time.Millisecond, map[string]raft.Applier{Namespace: Applier()}, func(m *master.Master) error {
		var err error
		svc, err = New(Config{Host: m.FrameworkHost(Namespace), Tick: simTick, Clock: clk})
		if err == nil {
			for _, tw := range tweaks {
				tw(svc)
			}
			svc.Register()
		}
		return err
	})
	waitFor(t, "the batch framework", func() bool {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		return svc.st != nil
	})
	sim.AddAgents(4, resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000})
	return &simMaster{sim: sim, svc: svc, base: "http://" + m.HTTPAddr(), stop: stop}
}

// simTick is the framework's Tick in tests: short, so deadlines on a fake clock are seen soon.
var simTick = 20 * time.Millisecond

// finishAfter ends every task after d: FINISHED, or FAILED for jobs whose id has "fail".
func finishAfter(d time.Duration) func(api.TaskInfo) (task.State, time.Duration) {
	return func(ti api.TaskInfo) (task.State, time.Duration) {
		if strings.Contains(ti.Name, "fail") {
			return task.Failed, d
		}
		if strings.Contains(ti.Name, "forever") {
			return "", 0
		}
		return task.Finished, d
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	frameworktest.WaitFor(t, what, 20*time.Second, cond)
}

var call = frameworktest.Call

func history(t *testing.T, base, job string) History {
	t.Helper()
	var v struct {
		History History `json:"history"`
	}
	if code := call(t, "GET", base+"/v1/jobs/"+job+"?embed=history", "", &v); code != http.StatusOK {
		t.Fatalf("GET job %s: %d", job, code)
	}
	return v.History
}

func runs(t *testing.T, base, job string) []Run {
	t.Helper()
	var out []Run
	if code := call(t, "GET", base+"/v1/jobs/"+job+"/runs?include=finished", "", &out); code != http.StatusOK {
		t.Fatalf("GET runs of %s: %d", job, code)
	}
	return out
}

// TestEverySecondScheduleRunsAndSucceeds: a 6-field cron every second starts runs that
// succeed, each launched once, with its schedule, scheduled time and exit status recorded.
func TestEverySecondScheduleRunsAndSucceeds(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(50*time.Millisecond))
	job := `{"id": "tick", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "s", "cron": "* * * * * *"}]}`
	if code := call(t, "POST", c.base+"/v1/jobs", job, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "3 successful runs", func() bool { return history(t, c.base, "tick").SuccessCount >= 3 })
	seen := map[time.Time]bool{}
	for _, r := range runs(t, c.base, "tick") {
		if r.Status != RunSuccess {
			continue
		}
		if r.Trigger != TriggerSchedule || r.ScheduleID != "s" || r.ScheduledAt == nil || len(r.Tasks) != 1 || r.ExitStatus == nil || *r.ExitStatus != 0 {
			t.Fatalf("run: %+v", r)
		}
		if seen[*r.ScheduledAt] {
			t.Fatalf("two runs for %s", r.ScheduledAt)
		}
		seen[*r.ScheduledAt] = true
		if lag := r.Tasks[0].LaunchedAt.Sub(*r.ScheduledAt); lag < 0 || lag > 2*time.Second {
			t.Fatalf("run %s launched %s after its time", r.ID, lag)
		}
	}
	var v jobView
	call(t, "GET", c.base+"/v1/jobs/tick?embed=historySummary", "", &v)
	if v.HistorySummary == nil || v.HistorySummary.SuccessCount < 3 || len(v.Schedules) != 1 || v.Schedules[0].NextRunAt == nil {
		t.Fatalf("job view: %+v", v)
	}
}

// TestOnFailureRetriesThenFails: ON_FAILURE launches the task again with backoff up to the
// limit, then the run is FAILED with the reason; NEVER fails at once.
func TestOnFailureRetriesThenFails(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(20*time.Millisecond))
	job := `{"id": "fail-twice", "run": {"cmd": "false", "cpus": 0.1, "mem": 32, "restart": {"policy": "ON_FAILURE", "backoffLimit": 2, "backoffSeconds": 0.1}}}`
	if code := call(t, "POST", c.base+"/v1/jobs", job, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	var r Run
	if code := call(t, "POST", c.base+"/v1/jobs/fail-twice/runs", "", &r); code != http.StatusCreated || r.Status != RunInitial || r.Trigger != TriggerManual {
		t.Fatalf("run now: %d %+v", code, r)
	}
	waitFor(t, "the run to fail", func() bool { return history(t, c.base, "fail-twice").FailureCount == 1 })
	var got Run
	call(t, "GET", c.base+"/v1/jobs/fail-twice/runs/"+r.ID, "", &got)
	if got.Status != RunFailed || len(got.Tasks) != 3 || got.Retries != 2 || !strings.Contains(got.Reason, "TASK_FAILED with exit status 1") {
		t.Fatalf("run after retries: %+v", got)
	}
	for i := 1; i < 3; i++ {
		gap := got.Tasks[i].LaunchedAt.Sub(*got.Tasks[i-1].CompletedAt)
		if gap < 90*time.Millisecond*time.Duration(1<<(i-1)) {
			t.Fatalf("retry %d after %s: no backoff", i, gap)
		}
	}
	job = `{"id": "fail-once", "run": {"cmd": "false", "cpus": 0.1, "mem": 32}}`
	call(t, "POST", c.base+"/v1/jobs", job, nil)
	call(t, "POST", c.base+"/v1/jobs/fail-once/runs", "", &r)
	waitFor(t, "NEVER: failed", func() bool { return history(t, c.base, "fail-once").FailureCount == 1 })
	if rs := runs(t, c.base, "fail-once"); len(rs) != 1 || len(rs[0].Tasks) != 1 {
		t.Fatalf("NEVER retried: %+v", rs)
	}
}

// TestDAGRunsInOrder: extract → (transform-a, transform-b) → load; load runs once, after both
// transforms succeeded, and only again when both have succeeded again.
func TestDAGRunsInOrder(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(30*time.Millisecond))
	for _, j := range []string{
		`{"id": "extract", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}}`,
		`{"id": "transform-a", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "dependencies": ["extract"]}`,
		`{"id": "transform-b", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "dependencies": ["extract"]}`,
		`{"id": "load", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "dependencies": ["transform-a", "transform-b"]}`,
	} {
		if code := call(t, "POST", c.base+"/v1/jobs", j, nil); code != http.StatusCreated {
			t.Fatalf("POST %s: %d", j, code)
		}
	}
	for round := 1; round <= 2; round++ {
		call(t, "POST", c.base+"/v1/jobs/extract/runs", "", nil)
		waitFor(t, "load to succeed", func() bool { return history(t, c.base, "load").SuccessCount == round })
		time.Sleep(100 * time.Millisecond) // nothing more may start
		ex, ta, tb, ld := runs(t, c.base, "extract"), runs(t, c.base, "transform-a"), runs(t, c.base, "transform-b"), runs(t, c.base, "load")
		if len(ex) != round || len(ta) != round || len(tb) != round || len(ld) != round {
			t.Fatalf("round %d: runs %d %d %d %d", round, len(ex), len(ta), len(tb), len(ld))
		}
		// Newest first: the latest run of each.
		if !ta[0].CreatedAt.After(*ex[0].CompletedAt) && !ta[0].CreatedAt.Equal(*ex[0].CompletedAt) {
			t.Fatalf("transform-a created %s before extract ended %s", ta[0].CreatedAt, *ex[0].CompletedAt)
		}
		for _, tr := range []Run{ta[0], tb[0]} {
			if ld[0].CreatedAt.Before(*tr.CompletedAt) {
				t.Fatalf("load created %s before %s ended %s", ld[0].CreatedAt, tr.JobID, *tr.CompletedAt)
			}
		}
		if ld[0].Trigger != TriggerDependency {
			t.Fatalf("load trigger %q", ld[0].Trigger)
		}
	}
	var g Graph
	call(t, "GET", c.base+"/v1/graph", "", &g)
	if len(g.Nodes) != 4 || len(g.Edges) != 4 || g.Nodes[0].LastStatus != "success" {
		t.Fatalf("graph: %+v", g)
	}
	resp, err := http.Get(c.base + "/scheduler/graph/dot")
	if err != nil {
		t.Fatal(err)
	}
	dot, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(dot), `"transform-a" -> "load";`) || !strings.HasPrefix(string(dot), "digraph") {
		t.Fatalf("dot:\n%s", dot)
	}
}

// TestBadSpecsAreRefusedWholly: every bad spec is a 422 in Metronome's shape naming the field
// (details[{path, errors}], with the field as Agora names it), every bad query parameter a 400
// naming it, each saying why; nothing is stored.
func TestBadSpecsAreRefusedWholly(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(time.Millisecond))
	// One agent in the registry (the simulated ones are not), with nothing to offer: what it
	// does not allow (root, host volumes) no agent does.
	if code := call(t, "POST", c.base+"/v1/agents/register", `{"hostname": "plain", "http": "127.0.0.1:1", "resources": {}}`, nil); code != http.StatusOK {
		t.Fatalf("register an agent: %d", code)
	}
	call(t, "POST", c.base+"/v1/jobs", `{"id": "a", "run": {"cmd": "x"}}`, nil)
	call(t, "POST", c.base+"/v1/jobs", `{"id": "b", "run": {"cmd": "x"}, "dependencies": ["a"]}`, nil)
	longID := strings.Repeat("j", maxIDLen+1)
	for _, tc := range []struct{ name, method, path, body, field, reason string }{
		{"malformed", "POST", "/v1/jobs", `{"id": "x", `, "", "malformed JSON"},
		{"unknown field", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpu": 1}}`, "run.cpu", "unknown field"},
		// Metronome's run.volumes are host and secret volumes: a persistent volume is not of a
		// job's schema (Marathon's resident apps have them).
		{"persistent volume", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "data", "persistent": {"size": 10}}]}}`, "run.volumes[0].persistent", "unknown field"},
		{"wrong type", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpus": "1"}}`, "run.cpus", "want a JSON float64"},
		{"bad id", "POST", "/v1/jobs", `{"id": "Big_Job", "run": {"cmd": "x"}}`, "id", "lowercase letters, digits and '-'"},
		{"id one too long", "POST", "/v1/jobs", `{"id": "` + longID + `", "run": {"cmd": "x"}}`, "id", "at most 128"},
		{"id of 10,000 characters", "POST", "/v1/jobs", `{"id": "` + strings.Repeat("j", 10000) + `", "run": {"cmd": "x"}}`, "id", "is 10000 characters long; at most 128"},
		{"chronos name too long", "POST", "/scheduler/iso8601", `{"name": "` + longID + `", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P1D"}`, "name", "at most 128"},
		{"no command", "POST", "/v1/jobs", `{"id": "x", "run": {}}`, "run.cmd", "needs a cmd"},
		{"negative cpus", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpus": -1, "mem": 32}}`, "run.cpus", "at least 0"},
		{"mem runc cannot honour", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpus": 0.1, "mem": 1}}`, "run.mem", "expected at least 6 (MiB)"},
		{"mem 0", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpus": 0.1, "mem": 0}}`, "run.mem", "expected at least 6 (MiB)"},
		{"chronos mem", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P1D", "cpus": 0.1, "mem": 5}`, "mem", "expected at least 6 (MiB)"},
		{"bad cron", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "61 * * * *"}]}`, "schedules[0].cron", "end of range (61) above maximum (59)"},
		{"every 100ms", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "@every 100ms"}]}`, "schedules[0].cron", "more often than once a second"},
		{"every 0s", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "@every 0s"}]}`, "schedules[0].cron", "more often than once a second"},
		{"every 1500ms", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "@every 1500ms"}]}`, "schedules[0].cron", "not a whole number of seconds"},
		{"every 10ms added", "POST", "/v1/jobs/a/schedules", `{"id": "s", "cron": "@every 10ms"}`, "schedules[0].cron", "more often than once a second"},
		{"ISO 8601 period under a second", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT0.5S"}`, "schedule", "at least one second"},
		{"bad timezone", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "@daily", "timezone": "Mars/Olympus"}]}`, "schedules[0].timezone", "not an IANA timezone"},
		{"duplicate schedule", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "@daily"}, {"id": "s", "cron": "@hourly"}]}`, "schedules[1].id", "is given twice"},
		{"duplicate job", "POST", "/v1/jobs", `{"id": "a", "run": {"cmd": "x"}}`, "id", "already exists"},
		{"duplicate dependency", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "dependencies": ["a", "a"]}`, "dependencies[1]", "is given twice"},
		{"bad policy", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "restart": {"policy": "ALWAYS"}}}`, "run.restart.policy", "expected NEVER or ON_FAILURE"},
		{"missing parent", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "dependencies": ["nope"]}`, "dependencies[0]", `job "nope" does not exist`},
		{"depends on itself", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "dependencies": ["x"]}`, "dependencies[0]", "cannot depend on itself"},
		{"cycle", "PUT", "/v1/jobs/a", `{"id": "a", "run": {"cmd": "x"}, "dependencies": ["b"]}`, "dependencies", "would close a cycle: a → b → a"},
		{"dependants", "DELETE", "/v1/jobs/a", ``, "id", "jobs depend on"},
		{"bad ISO 8601", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P"}`, "schedule", "want an ISO 8601 duration"},
		{"bad schedule add", "POST", "/v1/jobs/a/schedules", `{"id": "s", "cron": "* * *"}`, "schedules[0].cron", "expected 5 to 6 fields"},
		{"relative host path", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "/d", "hostPath": "data"}]}}`, "run.volumes[0].hostPath", "no agent allows it"},
		{"container path up", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "/d", "hostPath": "/d", "mode": "RO"}, {"containerPath": "../etc", "hostPath": "/d"}]}}`, "run.volumes[1].containerPath", "nor contain '..'"},
		{"bad volume mode", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "/d", "hostPath": "/d", "mode": "rw"}]}}`, "run.volumes[0].mode", "expected RO or RW"},
		{"gpus", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "gpus": 1}}`, "run.gpus", "agents offer no GPUs"},
		{"bridge network", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "networks": [{"mode": "host"}, {"mode": "container/bridge"}]}}`, "run.networks[1].mode", `with no bridge or container networks; use "host"`},
		{"bad user", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "user": "no body"}}`, "run.user", "letters, digits"},
		{"root with no agent allowing it", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "user": "root"}}`, "run.user", "no registered agent runs tasks as root: start one with agora agent --allow-root-tasks"},
		{"an undeclared host volume", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "/d", "hostPath": "/srv/d", "mode": "RO"}]}}`, "run.volumes[0].hostPath", "agora agent --host-volume"},
		{"the host root", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "/d", "hostPath": "/", "mode": "RO"}]}}`, "run.volumes[0].hostPath", "root directory is never mounted"},
		{"privileged", "POST", "/v1/jobs", `{"id": "x", "run": {"docker": {"image": "a", "privileged": true}}}`, "run.docker.privileged", "jobs run unprivileged"},
		{"docker parameters", "POST", "/v1/jobs", `{"id": "x", "run": {"docker": {"image": "a", "parameters": [{"key": "cap-drop", "value": "ALL"}, {"key": "cap-add", "value": "ALL"}]}}}`, "run.docker.parameters[1].key", `"cap-add" is not supported`},
		{"docker env parameter twice", "POST", "/v1/jobs", `{"id": "x", "run": {"docker": {"image": "a", "parameters": [{"key": "env", "value": "A=1"}]}, "env": {"A": "2"}}}`, "run.docker.parameters[0].value", "run.env sets too"},
		{"metronome's mem floor", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpus": 0.1, "mem": 16}}`, "run.mem", "at least 32 (MiB), as Metronome's schema"},
		{"v0 mem floor", "POST", "/v0/scheduled-jobs", `{"id": "x", "run": {"cmd": "x", "cpus": 0.1, "mem": 31}}`, "run.mem", "at least 32"},
		{"secret volume undefined", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "volumes": [{"containerPath": "s", "secret": "k"}]}}`, "run.volumes[0].secret", "run.secrets does not define"},
		{"secret volume with hostPath", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "secrets": {"k": {"source": "/k"}}, "volumes": [{"containerPath": "s", "secret": "k", "hostPath": "/d"}]}}`, "run.volumes[0].secret", "no hostPath or mode"},
		{"secret volume with mode", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "secrets": {"k": {"source": "/k"}}, "volumes": [{"containerPath": "s", "secret": "k", "mode": "RO"}]}}`, "run.volumes[0].secret", "no hostPath or mode"},
		{"absolute secret volume without an image", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "secrets": {"k": {"source": "/k"}}, "volumes": [{"containerPath": "/etc/k", "secret": "k"}]}}`, "run.volumes[0].containerPath", "only a task with an image may have"},
		{"secret volume up", "POST", "/v1/jobs", `{"id": "x", "run": {"docker": {"image": "a"}, "secrets": {"k": {"source": "/k"}}, "volumes": [{"containerPath": "/run/../k", "secret": "k"}]}}`, "run.volumes[0].containerPath", "nor contain '..'"},
		{"artifact without uri", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "artifacts": [{"uri": ""}]}}`, "run.artifacts[0].uri", "is required"},
		{"chronos settings through metronome", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x"}, "chronos": {"shell": true}}`, "chronos", "not a field of Metronome's"},
		{"chronos executor", "POST", "/v1/scheduler/iso8601", `{"name": "X_1", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "executor": "/usr/bin/my-executor"}`, "executor", "no Mesos executor"},
		{"chronos executorFlags", "POST", "/scheduler/dependency", `{"name": "x", "command": "x", "parents": ["a"], "executorFlags": "--x"}`, "executorFlags", "no Mesos executor"},
		{"chronos bridge network", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "container": {"type": "DOCKER", "image": "i", "network": "BRIDGE"}}`, "container.network", "use HOST"},
		{"chronos named network", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "container": {"type": "MESOS", "image": "i", "networkInfos": [{"name": "mynet"}]}}`, "container.networkInfos[0].name", "no named networks"},
		{"chronos external volume", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "container": {"type": "MESOS", "image": "i", "volumes": [{"containerPath": "/tmp", "external": {"name": "t", "provider": "p"}}]}}`, "container.volumes[0].external", "external volumes are not supported"},
		{"chronos docker parameter", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "container": {"type": "DOCKER", "image": "i", "parameters": [{"key": "a-docker-option", "value": "x"}]}}`, "container.parameters[0].key", "not supported"},
		{"chronos constraint operator", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "constraints": [["rack", "GROUP_BY"]]}`, "constraints[0]", "expected EQUALS, LIKE or UNLIKE"},
		{"chronos name", "POST", "/scheduler/iso8601", `{"name": "a b", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D"}`, "name", "letters, digits, '_'"},
		{"chronos cpus not a number", "POST", "/scheduler/iso8601", `{"name": "x", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/P1D", "cpus": "lots"}`, "cpus", "not a number"},
		{"chronos shell false without command", "POST", "/scheduler/iso8601", `{"name": "x", "shell": false, "arguments": ["a"], "schedule": "R/2030-01-01T00:00:00Z/P1D"}`, "command", "is required with shell false"},
		{"appc image", "POST", "/v1/jobs", `{"id": "x", "run": {"ucr": {"image": {"id": "a", "kind": "appc"}}}}`, "run.ucr.image.kind", "only docker images"},
		{"docker and ucr", "POST", "/v1/jobs", `{"id": "x", "run": {"docker": {"image": "a"}, "ucr": {"image": {"id": "a"}}}}`, "run.ucr", "not both"},
		{"undefined secret", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "env": {"P": {"secret": "db"}}}}`, "run.env.P", "which run.secrets does not define"},
		{"secret without source", "POST", "/v1/jobs", `{"id": "x", "run": {"cmd": "x", "env": {"P": {"secret": "db"}}, "secrets": {"db": {"source": "/"}}}}`, "run.secrets.db.source", "must name a secret"},
		// Query parameters: 400 naming them.
		{"stopCurrentJobRuns not a boolean", "DELETE", "/v1/jobs/b?stopCurrentJobRuns=notabool", ``, "stopCurrentJobRuns", `got "notabool", expected true, false, 1 or 0`},
		{"stopCurrentJobRuns empty", "DELETE", "/v1/jobs/b?stopCurrentJobRuns", ``, "stopCurrentJobRuns", `got "", expected true, false, 1 or 0`},
		{"stopCurrentJobRuns both ways", "DELETE", "/v1/jobs/b?stopCurrentJobRuns=true&stopCurrentJobRuns=0", ``, "stopCurrentJobRuns", "both true and false"},
		{"unknown embed", "GET", "/v1/jobs?embed=activeRuns,bogus", ``, "embed", `got "bogus", expected one of activeRuns, history, historySummary, schedules`},
		{"unknown include", "GET", "/v1/jobs/a/runs?include=everything", ``, "include", `got "everything", expected one of finished`},
	} {
		before := stored(t, c.svc)
		var e struct {
			Message string `json:"message"`
			Details []struct {
				Path   string   `json:"path"`
				Errors []string `json:"errors"`
			} `json:"details"`
			Field      string   `json:"field"`
			Path       []string `json:"path"`
			Dependants []string `json:"dependants"`
		}
		code := call(t, tc.method, c.base+tc.path, tc.body, &e)
		query := strings.Contains(tc.path, "?")
		switch {
		case query && (code != http.StatusBadRequest || e.Field != tc.field || !strings.Contains(e.Message, tc.reason)):
			t.Errorf("%s: %d %+v, want 400 naming %q: %q", tc.name, code, e, tc.field, tc.reason)
		case query:
		case code != http.StatusUnprocessableEntity || e.Field != tc.field || e.Message != "Object is not valid" || len(e.Details) != 1:
			t.Errorf("%s: %d %+v, want 422 in Metronome's shape naming %q", tc.name, code, e, tc.field)
		case e.Details[0].Path != jsonPath(tc.field) || len(e.Details[0].Errors) != 1 || !strings.Contains(e.Details[0].Errors[0], tc.reason):
			t.Errorf("%s: details %+v, want %s: ...%s...", tc.name, e.Details, jsonPath(tc.field), tc.reason)
		case len(e.Details[0].Errors[0]) > 1000:
			t.Errorf("%s: the reason is %d characters long: it echoes the input", tc.name, len(e.Details[0].Errors[0]))
		}
		switch tc.name {
		case "cycle":
			if strings.Join(e.Path, ",") != "a,b,a" {
				t.Errorf("cycle path %v", e.Path)
			}
		case "dependants":
			if strings.Join(e.Dependants, ",") != "b" {
				t.Errorf("dependants %v", e.Dependants)
			}
		}
		if after := stored(t, c.svc); after != before {
			t.Errorf("%s: the refused request changed the store:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}
	var jobs []jobView
	call(t, "GET", c.base+"/v1/jobs", "", &jobs)
	if len(jobs) != 2 || len(jobs[0].Dependencies) != 0 || len(jobs[0].Schedules) != 0 {
		t.Fatalf("jobs after refused writes: %+v", jobs)
	}
	if code := call(t, "GET", c.base+"/v1/jobs/nope", "", nil); code != http.StatusNotFound {
		t.Fatalf("missing job: %d", code)
	}
	// The edges of what is refused are taken: an id of 128 characters, 6 MiB, every second, a
	// boolean as Play reads it.
	for _, ok := range []struct{ method, path, body string }{
		{"POST", "/v1/jobs", `{"id": "` + longID[1:] + `", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "s", "cron": "@every 1s", "enabled": false}]}`},
		{"POST", "/v1/jobs", `{"id": "c", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "s", "cron": "* * * * * *", "enabled": false}]}`},
		{"DELETE", "/v1/jobs/c?stopCurrentJobRuns=1", ``},
	} {
		if code := call(t, ok.method, c.base+ok.path, ok.body, nil); code/100 != 2 {
			t.Errorf("%s %s %.60s: %d, want it taken", ok.method, ok.path, ok.body, code)
		}
	}
}

// stored is every key and value of the framework's namespace, as one string to compare.
func stored(t *testing.T, svc *Service) string { return frameworktest.Stored(t, svc.store) }

// TestMissedRunsAfterDowntime: a master down for ten minutes of an every-minute schedule starts
// one run (the latest) when it is back and records the nine others missed; a deadline makes the
// latest missed too.
func TestMissedRunsAfterDowntime(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	c := startSim(t, dir, clk, finishAfter(time.Millisecond))
	call(t, "POST", c.base+"/v1/jobs", `{"id": "minutely", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "m", "cron": "* * * * *"}]}`, nil)
	call(t, "POST", c.base+"/v1/jobs", `{"id": "strict", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "m", "cron": "* * * * *", "startingDeadlineSeconds": 20}]}`, nil)
	c.stop()
	clk.Advance(10 * time.Minute) // 12:10:30: due at 12:01 ... 12:10
	c = startSim(t, dir, clk, finishAfter(time.Millisecond))
	waitFor(t, "one run of minutely", func() bool { return history(t, c.base, "minutely").SuccessCount == 1 })
	h := history(t, c.base, "minutely")
	rs := runs(t, c.base, "minutely")
	if len(rs) != 1 || !rs[0].ScheduledAt.Equal(time.Date(2026, 3, 1, 12, 10, 0, 0, time.UTC)) {
		t.Fatalf("runs: %+v", rs)
	}
	if h.MissedCount != 9 || len(h.MissedRuns) != 9 || !h.MissedRuns[0].ScheduledAt.Equal(time.Date(2026, 3, 1, 12, 9, 0, 0, time.UTC)) {
		t.Fatalf("missed: %d %+v", h.MissedCount, h.MissedRuns)
	}
	waitFor(t, "strict: all missed", func() bool { return history(t, c.base, "strict").MissedCount == 10 })
	if h := history(t, c.base, "strict"); !strings.Contains(h.MissedRuns[0].Reason, "startingDeadlineSeconds") || len(runs(t, c.base, "strict")) != 0 {
		t.Fatalf("strict: %+v", h)
	}
	// The cursor moved with the decision: a restart at the same time starts nothing again.
	c.stop()
	c = startSim(t, dir, clk, finishAfter(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	if n := len(runs(t, c.base, "minutely")); n != 1 {
		t.Fatalf("%d runs after a restart at the same time", n)
	}
}

// TestConcurrencyPolicyForbidAndReplace: with a run still active, FORBID records the next due
// run missed; REPLACE stops the old run and starts the new one.
func TestConcurrencyPolicyForbidAndReplace(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC))
	c := startSim(t, t.TempDir(), clk, finishAfter(time.Millisecond))
	call(t, "POST", c.base+"/v1/jobs", `{"id": "forever-forbid", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "m", "cron": "* * * * *", "concurrencyPolicy": "FORBID"}]}`, nil)
	call(t, "POST", c.base+"/v1/jobs", `{"id": "forever-replace", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "m", "cron": "* * * * *", "concurrencyPolicy": "REPLACE"}]}`, nil)
	active := func(job string) []Run {
		var out []Run
		call(t, "GET", c.base+"/v1/jobs/"+job+"/runs", "", &out)
		return out
	}
	clk.Advance(time.Minute)
	waitFor(t, "first runs active", func() bool {
		a, b := active("forever-forbid"), active("forever-replace")
		return len(a) == 1 && a[0].Status == RunActive && len(b) == 1 && b[0].Status == RunActive
	})
	first := active("forever-replace")[0]
	clk.Advance(time.Minute)
	waitFor(t, "FORBID: missed", func() bool { return history(t, c.base, "forever-forbid").MissedCount == 1 })
	if h := history(t, c.base, "forever-forbid"); !strings.Contains(h.MissedRuns[0].Reason, "FORBID") || len(active("forever-forbid")) != 1 {
		t.Fatalf("forbid: %+v", h)
	}
	waitFor(t, "REPLACE: the old run stopped, a new one active", func() bool {
		a := active("forever-replace")
		return len(a) == 1 && a[0].ID != first.ID && a[0].Status == RunActive
	})
	var old Run
	call(t, "GET", c.base+"/v1/jobs/forever-replace/runs/"+first.ID, "", &old)
	if old.Status != RunFailed || !strings.Contains(old.Reason, "REPLACE") || old.Tasks[0].Status != task.Killed {
		t.Fatalf("replaced run: %+v", old)
	}
}

// TestDeadlineStopAndHistoryLimits: activeDeadlineSeconds kills a run that runs too long; the
// stop action ends a run; history keeps as many finished runs as the limits say while the
// counts go on.
func TestDeadlineStopAndHistoryLimits(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	c := startSim(t, t.TempDir(), clk, finishAfter(time.Millisecond))
	call(t, "POST", c.base+"/v1/jobs", `{"id": "forever", "run": {"cmd": "x", "cpus": 0.1, "mem": 32, "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 30}}}`, nil)
	var r1, r2 Run
	call(t, "POST", c.base+"/v1/jobs/forever/runs", "", &r1)
	call(t, "POST", c.base+"/v1/jobs/forever/runs", "", &r2)
	waitFor(t, "two runs active", func() bool {
		var a []Run
		call(t, "GET", c.base+"/v1/jobs/forever/runs", "", &a)
		return len(a) == 2 && a[0].Status == RunActive && a[1].Status == RunActive
	})
	if code := call(t, "POST", c.base+"/v1/jobs/forever/runs/"+r2.ID+"/actions/stop", "", nil); code != http.StatusOK {
		t.Fatalf("stop: %d", code)
	}
	clk.Advance(31 * time.Second)
	waitFor(t, "both failed", func() bool { return history(t, c.base, "forever").FailureCount == 2 })
	for id, reason := range map[string]string{r1.ID: "activeDeadlineSeconds", r2.ID: "stopped by request"} {
		var r Run
		call(t, "GET", c.base+"/v1/jobs/forever/runs/"+id, "", &r)
		if r.Status != RunFailed || !strings.Contains(r.Reason, reason) || len(r.Tasks) != 1 {
			t.Fatalf("run %s: %+v, want FAILED with %q and no retry", id, r, reason)
		}
	}
	if code := call(t, "POST", c.base+"/v1/jobs/forever/runs/"+r2.ID+"/actions/stop", "", nil); code != http.StatusConflict {
		t.Fatalf("stopping an ended run: %d", code)
	}

	call(t, "POST", c.base+"/v1/jobs", `{"id": "short", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "successfulHistoryLimit": 2}`, nil)
	for i := 1; i <= 4; i++ {
		call(t, "POST", c.base+"/v1/jobs/short/runs", "", nil)
		waitFor(t, "run done", func() bool { return history(t, c.base, "short").SuccessCount == i })
	}
	h := history(t, c.base, "short")
	if len(h.SuccessfulFinishedRuns) != 2 || len(runs(t, c.base, "short")) != 2 {
		t.Fatalf("history kept %d summaries, %d runs; want 2", len(h.SuccessfulFinishedRuns), len(runs(t, c.base, "short")))
	}
	// Deleting a job with an active run needs stopCurrentJobRuns.
	call(t, "POST", c.base+"/v1/jobs/forever/runs", "", nil)
	if code := call(t, "DELETE", c.base+"/v1/jobs/forever", "", nil); code != http.StatusConflict {
		t.Fatalf("delete with an active run: %d", code)
	}
	if code := call(t, "DELETE", c.base+"/v1/jobs/forever?stopCurrentJobRuns=true", "", nil); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	if code := call(t, "GET", c.base+"/v1/jobs/forever", "", nil); code != http.StatusNotFound {
		t.Fatalf("deleted job: %d", code)
	}
}

// TestChronosAliases: jobs posted in Chronos's JSON run, list in Chronos's shape, and start on
// PUT /scheduler/job/{name}.
func TestChronosAliases(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(10*time.Millisecond))
	if code := call(t, "POST", c.base+"/scheduler/iso8601", `{"name": "nightly", "command": "echo hi", "schedule": "R/2030-01-01T02:00:00Z/P1D", "epsilon": "PT30M", "cpus": 0.1, "mem": 32}`, nil); code != http.StatusNoContent {
		t.Fatalf("iso8601: %d", code)
	}
	if code := call(t, "POST", c.base+"/scheduler/dependency", `{"name": "after", "command": "echo after", "parents": ["nightly"], "cpus": 0.1, "mem": 32}`, nil); code != http.StatusNoContent {
		t.Fatalf("dependency: %d", code)
	}
	if code := call(t, "PUT", c.base+"/scheduler/job/nightly", "", nil); code != http.StatusNoContent {
		t.Fatalf("run: %d", code)
	}
	waitFor(t, "the dependant ran", func() bool { return history(t, c.base, "after").SuccessCount == 1 })
	var jobs []ChronosJob
	call(t, "GET", c.base+"/scheduler/jobs", "", &jobs)
	if len(jobs) != 2 || jobs[1].Name != "nightly" || jobs[1].Schedule != "R/2030-01-01T02:00:00Z/P1D" || jobs[1].Epsilon != "PT30M" ||
		jobs[1].SuccessCount != 1 || jobs[0].Parents[0] != "nightly" || *jobs[1].Retries != 2 {
		t.Fatalf("chronos jobs: %+v", jobs)
	}
	var v jobView
	call(t, "GET", c.base+"/v1/jobs/nightly", "", &v)
	if v.Schedules[0].NextRunAt == nil || !v.Schedules[0].NextRunAt.Equal(time.Date(2030, 1, 1, 2, 0, 0, 0, time.UTC)) || v.Schedules[0].StartingDeadlineSeconds != 1800 {
		t.Fatalf("schedule: %+v", v.Schedules)
	}
}

// TestJobSecrets: a job's env and volumes may name secrets of the masters' store (Metronome's
// run.env {"secret": ref}, run.volumes {"containerPath", "secret": ref} and run.secrets). A run
// while the secret has no value fails at once, saying where to put it; once it has one, the
// task gets it among its secret env (never its plain env) and as a secret file (never a host
// volume), and the job as stored and shown holds the reference only.
func TestJobSecrets(t *testing.T) {
	launched := make(chan api.TaskInfo, 4)
	c := startSim(t, t.TempDir(), nil, func(ti api.TaskInfo) (task.State, time.Duration) {
		launched <- ti
		return task.Finished, time.Millisecond
	})
	spec := `{"id": "backup", "run": {"cmd": "backup", "env": {"PLAIN": "1", "DB_PASS": {"secret": "db"}},
		"volumes": [{"containerPath": "creds/db", "secret": "db"}], "secrets": {"db": {"source": "backup/dbpass"}}}}`
	if code := call(t, "POST", c.base+"/v1/jobs", spec, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	call(t, "POST", c.base+"/v1/jobs/backup/runs", "", nil)
	waitFor(t, "the run without its secret to fail", func() bool { return history(t, c.base, "backup").FailureCount == 1 })
	if rs := runs(t, c.base, "backup"); len(rs) != 1 || len(rs[0].Tasks) != 0 || !strings.Contains(rs[0].Reason, "PUT /v1/secrets/backup/dbpass") {
		t.Fatalf("run without its secret: %+v", rs)
	}
	if code := call(t, "PUT", c.base+"/v1/secrets/backup/dbpass", `{"value": "s3cr3t"}`, nil); code != http.StatusNoContent {
		t.Fatalf("PUT secret: %d", code)
	}
	call(t, "POST", c.base+"/v1/jobs/backup/runs", "", nil)
	select {
	case ti := <-launched:
		if ti.SecretEnv["DB_PASS"] != "s3cr3t" || ti.Env["PLAIN"] != "1" || ti.Env["DB_PASS"] != "" {
			t.Fatalf("launched with env %v, secret env %v", ti.Env, ti.SecretEnv)
		}
		if want := []api.SecretFile{{ContainerPath: "creds/db", Value: "s3cr3t"}}; !slices.Equal(ti.SecretFiles, want) || len(ti.Volumes) != 0 {
			t.Fatalf("launched with secret files %v, volumes %v; want %v and no host volume", ti.SecretFiles, ti.Volumes, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the run with its secret never launched")
	}
	waitFor(t, "the run with its secret to succeed", func() bool { return history(t, c.base, "backup").SuccessCount == 1 })
	for _, path := range []string{"/v1/jobs/backup", "/v1/jobs/backup/runs?include=finished", "/v1/jobs?embed=activeRuns,history", "/scheduler/jobs"} {
		var raw json.RawMessage
		call(t, "GET", c.base+path, "", &raw)
		if strings.Contains(string(raw), "s3cr3t") {
			t.Fatalf("GET %s shows the secret: %s", path, raw)
		}
	}
	var job struct {
		Run RunSpec `json:"run"`
	}
	call(t, "GET", c.base+"/v1/jobs/backup", "", &job)
	if job.Run.Env["DB_PASS"].Secret != "db" || job.Run.Secrets["db"].Source != "backup/dbpass" || len(job.Run.Volumes) != 1 || job.Run.Volumes[0] != (Volume{ContainerPath: "creds/db", Secret: "db"}) {
		t.Fatalf("the job as shown: %+v", job.Run)
	}
	if code := call(t, "POST", c.base+"/v1/jobs", `{"id": "y", "run": {"cmd": "x", "env": {"P": {"secret": "db", "sekret": 1}}, "secrets": {"db": {"source": "a"}}}}`, nil); code < 400 || code >= 500 {
		t.Fatalf("an env secret with an unknown field: %d, want 4xx", code)
	}
}

// TestMetronomeSpecsLoadAsExported: a job as Metronome writes it back (every field present, empty
// or zero where unused) loads as it is; a UCR image becomes the docker image; IS places as EQ.
func TestMetronomeSpecsLoadAsExported(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(time.Millisecond))
	exported := `{"id": "nightly.report", "description": "d", "labels": {"team": "data"},
		"run": {"cmd": "report", "cpus": 0.1, "mem": 32, "disk": 0, "gpus": 0, "artifacts": [], "volumes": [], "networks": [{"mode": "host"}],
		 "secrets": {}, "env": {}, "placement": {"constraints": [{"attribute": "hostname", "operator": "IS", "value": "nowhere"}]},
		 "restart": {"policy": "NEVER"}, "maxLaunchDelay": 3600, "taskKillGracePeriodSeconds": 5,
		 "docker": {"image": "agora.local/testapp:latest", "forcePullImage": false, "privileged": false, "parameters": []}},
		"schedules": []}`
	if code := call(t, "POST", c.base+"/v1/jobs", exported, nil); code != http.StatusCreated {
		t.Fatalf("an exported Metronome job: %d", code)
	}
	if code := call(t, "POST", c.base+"/v1/jobs", `{"id": "ucr", "run": {"cpus": 0.1, "mem": 32, "ucr": {"image": {"id": "agora.local/testapp:latest", "kind": "docker", "forcePull": true}}}}`, nil); code != http.StatusCreated {
		t.Fatalf("a UCR job: %d", code)
	}
	var job struct {
		Run RunSpec `json:"run"`
	}
	call(t, "GET", c.base+"/v1/jobs/ucr", "", &job)
	if job.Run.Docker == nil || job.Run.Docker.Image != "agora.local/testapp:latest" || !job.Run.Docker.ForcePullImage || job.Run.UCR != nil {
		t.Fatalf("the UCR job as kept: %+v", job.Run)
	}
	// IS is EQ: the report may only run on the host "nowhere", which no simulated agent is.
	call(t, "POST", c.base+"/v1/jobs/nightly.report/runs", "", nil)
	time.Sleep(500 * time.Millisecond)
	if rs := runs(t, c.base, "nightly.report"); len(rs) != 1 || len(rs[0].Tasks) != 0 {
		t.Fatalf("a run constrained to hostname IS nowhere was placed: %+v", rs)
	}
}

// TestDroppedLaunchesBackOff: an agent that never gets a launch (its API does not answer:
// every launch ends TASK_DROPPED) is not sent one per offer. The run is launched again at once
// the first time, then after the job's backoff, doubling; it keeps one dropped attempt, not one
// per launch, and runs as soon as launches reach an agent again.
func TestDroppedLaunchesBackOff(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(20*time.Millisecond))
	var mu sync.Mutex
	var launched []time.Time
	dropping := true
	c.sim.Refuse = func(ti api.TaskInfo) error {
		mu.Lock()
		defer mu.Unlock()
		if !dropping {
			return nil
		}
		launched = append(launched, time.Now())
		return errors.New("dial tcp 10.0.0.9:5151: connection refused")
	}
	job := `{"id": "unlucky", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "restart": {"backoffSeconds": 0.1}}}`
	if code := call(t, "POST", c.base+"/v1/jobs", job, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	var r Run
	if code := call(t, "POST", c.base+"/v1/jobs/unlucky/runs", "", &r); code != http.StatusCreated {
		t.Fatalf("run now: %d", code)
	}
	waitFor(t, "6 dropped launches", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(launched) >= 6
	})
	mu.Lock()
	dropping = false
	times := slices.Clone(launched)
	mu.Unlock()
	// Launches 1 and 2 come one after the other; then 0.1 s, 0.2 s, 0.4 s, 0.8 s apart.
	for i := 2; i < 6; i++ {
		want := time.Duration(float64(100*time.Millisecond) * math.Pow(2, float64(i-2)))
		if gap := times[i].Sub(times[i-1]); gap < want-10*time.Millisecond {
			t.Fatalf("launch %d came %s after the one before, want at least %s (the backoff): %v", i+1, gap, want, times)
		}
	}
	var got Run
	call(t, "GET", c.base+"/v1/jobs/unlucky/runs/"+r.ID, "", &got)
	if len(got.Tasks) != 1 || got.Attempts < 6 || got.Retries != 0 || got.Status == RunInitial && (got.Tasks[0].Status != task.Dropped || got.Dropped < 6) {
		t.Fatalf("run after 6 dropped launches: %+v, want one dropped attempt kept, no retry used", got)
	}
	waitFor(t, "the run to succeed once launches reach an agent", func() bool { return history(t, c.base, "unlucky").SuccessCount == 1 })
	got = Run{}
	call(t, "GET", c.base+"/v1/jobs/unlucky/runs/"+r.ID, "", &got)
	if len(got.Tasks) != 1 || got.Tasks[0].Status != task.Finished || got.Dropped != 0 || got.Attempts < 7 ||
		got.Tasks[0].ID != fmt.Sprintf("unlucky_%s.%d", r.ID, got.Attempts) {
		t.Fatalf("run: %+v, want its one attempt that ran, numbered after the dropped ones", got)
	}
}

// TestRunSaysWhyItWaits: a run that no agent can take (it needs more cpus than any has, or a
// constraint none meets) says why in its view — Marathon's reason names with Agora's words and
// processedOffersSummary — in GET .../runs/{run}, the runs list and the job's activeRuns; once
// maxLaunchDelay passes it fails, its reason saying the same.
func TestRunSaysWhyItWaits(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(50*time.Millisecond))
	for _, job := range []string{
		`{"id": "big", "run": {"cmd": "true", "cpus": 64, "mem": 32, "maxLaunchDelay": 3}}`,
		`{"id": "picky", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "placement": {"constraints": [{"attribute": "hostname", "operator": "LIKE", "value": "db.*"}]}}}`,
	} {
		if code := call(t, "POST", c.base+"/v1/jobs", job, nil); code != http.StatusCreated {
			t.Fatalf("POST %s: %d", job, code)
		}
	}
	for _, tc := range []struct{ job, want string }{
		{"big", "InsufficientCpus (needs 64 cpus, "},
		{"picky", `UnfulfilledConstraint (hostname:LIKE:db.*: hostname is "`},
	} {
		var r RunView
		if code := call(t, "POST", c.base+"/v1/jobs/"+tc.job+"/runs", "", &r); code != http.StatusCreated {
			t.Fatalf("POST run of %s: %d", tc.job, code)
		}
		waitFor(t, "run of "+tc.job+" to say why it waits", func() bool {
			call(t, "GET", c.base+"/v1/jobs/"+tc.job+"/runs/"+r.ID, "", &r)
			return strings.Contains(r.WaitingReason, tc.want)
		})
		if s := r.ProcessedOffersSummary; s == nil || s.UnusedOffersCount == 0 || s.UnusedOffersCount != s.ProcessedOffersCount {
			t.Fatalf("run of %s: processedOffersSummary %+v", tc.job, s)
		}
		var list []RunView
		call(t, "GET", c.base+"/v1/jobs/"+tc.job+"/runs", "", &list)
		var job struct {
			ActiveRuns []RunView `json:"activeRuns"`
		}
		call(t, "GET", c.base+"/v1/jobs/"+tc.job+"?embed=activeRuns", "", &job)
		if len(list) != 1 || !strings.Contains(list[0].WaitingReason, tc.want) || len(job.ActiveRuns) != 1 || !strings.Contains(job.ActiveRuns[0].WaitingReason, tc.want) {
			t.Fatalf("%s: runs %+v, activeRuns %+v", tc.job, list, job.ActiveRuns)
		}
	}
	waitFor(t, "the big run to fail after maxLaunchDelay", func() bool {
		rs := runs(t, c.base, "big")
		return len(rs) == 1 && rs[0].Status == RunFailed
	})
	if r := runs(t, c.base, "big")[0]; !strings.Contains(r.Reason, "not launched within maxLaunchDelay (3 s): last ") || !strings.Contains(r.Reason, "InsufficientCpus (needs 64 cpus") {
		t.Fatalf("reason: %q", r.Reason)
	}
}
