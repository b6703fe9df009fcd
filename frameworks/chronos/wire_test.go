package chronos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
	"os"
	"reflect"
)

// Golden shapes: the JSON types of the fields Metronome 0.6 and Chronos 3 write, as their
// published schemas and examples show them (written down here in our own fixtures). A shape
// names each field a client reads and its JSON type; "time" is Metronome's
// 2026-12-06T20:24:17.735+0000, "time|null" may be null.
type shape map[string]string

var metronomeTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$`)

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if metronomeTime.MatchString(x) {
			return "time"
		}
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// checkShape says what of want the object lacks or has in another type.
func checkShape(t *testing.T, what string, obj map[string]any, want shape) {
	t.Helper()
	for k, typ := range want {
		v, ok := obj[k]
		if !ok {
			t.Errorf("%s: no %q (want %s) in %v", what, k, typ, obj)
			continue
		}
		if got := jsonType(v); !slices.Contains(strings.Split(typ, "|"), got) {
			t.Errorf("%s: %q is %s (%v), want %s", what, k, got, v, typ)
		}
	}
}

var (
	runShape     = shape{"id": "string", "jobId": "string", "status": "string", "createdAt": "time", "completedAt": "time|null", "tasks": "array"}
	runTaskShape = shape{"id": "string", "startedAt": "time", "completedAt": "time|null", "status": "string"}
	jobShape     = shape{"id": "string", "labels": "object", "run": "object", "schedules": "array", "dependencies": "array"}
	runSpecShape = shape{"cpus": "number", "mem": "number", "disk": "number", "gpus": "number", "env": "object", "placement": "object",
		"artifacts": "array", "maxLaunchDelay": "number", "volumes": "array", "restart": "object", "secrets": "object", "networks": "array"}
	scheduleShape = shape{"id": "string", "cron": "string", "timezone": "string", "startingDeadlineSeconds": "number", "concurrencyPolicy": "string",
		"enabled": "bool", "nextRunAt": "time"}
	historyShape = shape{"successCount": "number", "failureCount": "number", "lastSuccessAt": "time|null", "lastFailureAt": "time|null",
		"successfulFinishedRuns": "array", "failedFinishedRuns": "array"}
	finishedRunShape = shape{"id": "string", "createdAt": "time", "finishedAt": "time", "tasks": "array"}
	summaryShape     = shape{"successCount": "number", "failureCount": "number", "lastSuccessAt": "time|null", "lastFailureAt": "time|null"}
	queueShape       = shape{"jobId": "string", "runs": "array"}
	chronosJobShape  = shape{"name": "string", "command": "string", "shell": "bool", "executor": "string", "executorFlags": "string", "taskInfoData": "string",
		"retries": "number", "owner": "string", "ownerName": "string", "description": "string", "successCount": "number", "errorCount": "number",
		"lastSuccess": "string", "lastError": "string", "cpus": "number", "disk": "number", "mem": "number", "disabled": "bool", "softError": "bool",
		"dataProcessingJobType": "bool", "errorsSinceLastSuccess": "number", "fetch": "array", "uris": "array", "environmentVariables": "array",
		"arguments": "array", "highPriority": "bool", "runAsUser": "string", "concurrent": "bool", "maxCompletionTime": "number", "constraints": "array"}
)

func getObj(t *testing.T, method, url, body string, wantCode int) map[string]any {
	t.Helper()
	var out map[string]any
	if code := call(t, method, url, body, &out); code != wantCode {
		t.Fatalf("%s %s: %d, want %d", method, url, code, wantCode)
	}
	return out
}

func getList(t *testing.T, url string) []map[string]any {
	t.Helper()
	var out []map[string]any
	if code := call(t, "GET", url, "", &out); code != http.StatusOK {
		t.Fatalf("GET %s: %d", url, code)
	}
	return out
}

// TestMetronomeShapes: every /v1 and /v0 answer has Metronome's fields, in Metronome's types
// and time format, filled in when empty.
func TestMetronomeShapes(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, finishAfter(10*time.Millisecond))
	// A job as Metronome's docs write one (our own values), with a schedule far off.
	spec := `{"id": "reports.weekly", "description": "weekly report", "labels": {"team": "data"},
		"run": {"cmd": "echo report", "cpus": 0.2, "mem": 64, "disk": 0, "maxLaunchDelay": 600,
		        "restart": {"policy": "NEVER"}, "env": {"MODE": "full"},
		        "artifacts": [{"uri": "http://127.0.0.1:1/tool.tgz", "executable": false, "cache": false}],
		        "networks": [{"mode": "host"}],
		        "docker": {"image": "agora.local/testapp:latest", "parameters": [{"key": "cap-drop", "value": "ALL"}, {"key": "env", "value": "FROM_DOCKER=1"}, {"key": "label", "value": "tier=batch"}]}},
		"schedules": [{"id": "mondays", "cron": "0 3 * * 1", "timezone": "Europe/Berlin", "enabled": true}]}`
	job := getObj(t, "POST", c.base+"/v1/jobs", spec, http.StatusCreated)
	checkShape(t, "created job", job, jobShape)
	checkShape(t, "created job", job, shape{"description": "string"})
	checkShape(t, "its placement", job["run"].(map[string]any)["placement"].(map[string]any), shape{"constraints": "array"})
	run := job["run"].(map[string]any)
	checkShape(t, "run spec", run, runSpecShape)
	if a := run["artifacts"].([]any)[0].(map[string]any); a["extract"] != true {
		t.Errorf("artifact's extract: %v, want Metronome's default true", a)
	}
	checkShape(t, "schedule", job["schedules"].([]any)[0].(map[string]any), scheduleShape)
	if _, ok := job["activeRuns"]; ok {
		t.Errorf("activeRuns without ?embed: %v", job["activeRuns"])
	}

	// A job with nothing but what it needs: every default filled in.
	bare := getObj(t, "POST", c.base+"/v1/jobs", `{"id": "bare", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}`, http.StatusCreated)
	checkShape(t, "bare job", bare, shape{"labels": "object", "schedules": "array", "dependencies": "array"})
	checkShape(t, "bare run spec", bare["run"].(map[string]any), runSpecShape)

	// A run started by hand: tasks [] and completedAt null.
	started := getObj(t, "POST", c.base+"/v1/jobs/bare/runs", "", http.StatusCreated)
	checkShape(t, "started run", started, runShape)
	if started["completedAt"] != nil || len(started["tasks"].([]any)) != 0 {
		t.Errorf("a run just started: %v", started)
	}
	waitFor(t, "the run succeeded", func() bool { return history(t, c.base, "bare").SuccessCount == 1 })
	finished := getObj(t, "GET", c.base+"/v1/jobs/bare/runs/"+started["id"].(string), "", http.StatusOK)
	checkShape(t, "finished run", finished, runShape)
	checkShape(t, "its task", finished["tasks"].([]any)[0].(map[string]any), runTaskShape)
	for _, r := range getList(t, c.base+"/v1/jobs/bare/runs?include=finished") {
		checkShape(t, "listed run", r, runShape)
	}

	embedded := getObj(t, "GET", c.base+"/v1/jobs/bare?embed=activeRuns&embed=history,historySummary", "", http.StatusOK)
	if runs, ok := embedded["activeRuns"].([]any); !ok || len(runs) != 0 {
		t.Errorf("activeRuns embedded with none active: %v", embedded["activeRuns"])
	}
	h := embedded["history"].(map[string]any)
	checkShape(t, "history", h, historyShape)
	fr := h["successfulFinishedRuns"].([]any)[0].(map[string]any)
	checkShape(t, "finished run of the history", fr, finishedRunShape)
	if tasks := fr["tasks"].([]any); len(tasks) != 1 || !strings.HasPrefix(tasks[0].(string), "bare_") {
		t.Errorf("the finished run's tasks: %v", tasks)
	}
	checkShape(t, "history summary", embedded["historySummary"].(map[string]any), summaryShape)
	for _, j := range getList(t, c.base+"/v1/jobs?embed=activeRuns") {
		checkShape(t, "listed job", j, jobShape)
		if _, ok := j["activeRuns"].([]any); !ok {
			t.Errorf("%v: activeRuns embedded, none active: want []", j["id"])
		}
	}
	for _, s := range getList(t, c.base+"/v1/jobs/reports.weekly/schedules") {
		checkShape(t, "listed schedule", s, scheduleShape)
	}

	// The queue: a run no offer fits waits in it.
	getObj(t, "POST", c.base+"/v1/jobs", `{"id": "huge", "run": {"cmd": "true", "cpus": 64, "mem": 32}}`, http.StatusCreated)
	waiting := getObj(t, "POST", c.base+"/v1/jobs/huge/runs", "", http.StatusCreated)
	queue := getList(t, c.base+"/v1/queue")
	if len(queue) != 1 {
		t.Fatalf("queue: %v", queue)
	}
	checkShape(t, "queue entry", queue[0], queueShape)
	if r := queue[0]["runs"].([]any)[0].(map[string]any); queue[0]["jobId"] != "huge" || r["runId"] != waiting["id"] {
		t.Errorf("queue: %v", queue)
	}

	// v0: the job and its schedules together; PUT replaces both.
	v0 := `{"id": "v0.job", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "nightly", "cron": "20 0 * * *", "concurrencyPolicy": "ALLOW"}]}`
	checkShape(t, "v0 job", getObj(t, "POST", c.base+"/v0/scheduled-jobs", v0, http.StatusCreated), jobShape)
	put := getObj(t, "PUT", c.base+"/v0/scheduled-jobs/v0.job", `{"id": "v0.job", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}`, http.StatusOK)
	if len(put["schedules"].([]any)) != 0 {
		t.Errorf("a v0 PUT without schedules leaves the job none: %v", put["schedules"])
	}

	// Dependencies read as ids or {"id"} and are written as {"id"}.
	dep := getObj(t, "POST", c.base+"/v1/jobs", `{"id": "after", "dependencies": [{"id": "bare"}], "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}`, http.StatusCreated)
	if d := dep["dependencies"].([]any); len(d) != 1 || d[0].(map[string]any)["id"] != "bare" {
		t.Errorf("dependencies: %v", d)
	}

	// Errors are Metronome's {message, details: [{path, errors}]}; a missing job its {message}.
	e := getObj(t, "GET", c.base+"/v1/jobs/nope", "", http.StatusNotFound)
	if _, ok := e["message"].(string); !ok {
		t.Errorf("404: %v", e)
	}
	e = getObj(t, "POST", c.base+"/v1/jobs", `{"id": "x", "run": {"cmd": "x", "cpus": 0.1, "mem": 8}}`, http.StatusUnprocessableEntity)
	checkShape(t, "422", e, shape{"message": "string", "details": "array"})
	checkShape(t, "422 detail", e["details"].([]any)[0].(map[string]any), shape{"path": "string", "errors": "array"})
}

// TestDockerParametersReachTheTask: the docker parameters containerd can honour become the
// task's env, labels and user.
func TestDockerParametersReachTheTask(t *testing.T) {
	launched := make(chan api.TaskInfo, 1)
	c := startSim(t, t.TempDir(), nil, func(ti api.TaskInfo) (task.State, time.Duration) {
		launched <- ti
		return task.Finished, time.Millisecond
	})
	spec := `{"id": "params", "run": {"cpus": 0.1, "mem": 32, "args": ["-print-env"], "docker": {"image": "agora.local/testapp:latest",
		"parameters": [{"key": "env", "value": "GREETING=hi=there"}, {"key": "l", "value": "tier=batch"}, {"key": "user", "value": "1000:1000"},
		               {"key": "security-opt", "value": "no-new-privileges"}]}}}`
	getObj(t, "POST", c.base+"/v1/jobs", spec, http.StatusCreated)
	getObj(t, "POST", c.base+"/v1/jobs/params/runs", "", http.StatusCreated)
	select {
	case ti := <-launched:
		if ti.Env["GREETING"] != "hi=there" || ti.Labels["tier"] != "batch" || ti.User != "1000:1000" {
			t.Fatalf("the task: env %v labels %v user %q", ti.Env, ti.Labels, ti.User)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no launch")
	}
}

// TestChronosDocumentedJobs: the jobs of Chronos's API docs (our own values, their forms) are
// accepted as written, list back in Chronos's shape with every field, and run.
func TestChronosDocumentedJobs(t *testing.T) {
	launched := make(chan api.TaskInfo, 8)
	c := startSim(t, t.TempDir(), nil, func(ti api.TaskInfo) (task.State, time.Duration) {
		launched <- ti
		if strings.Contains(ti.Name, "Forever") {
			return "", 0
		}
		return task.Finished, 5 * time.Millisecond
	})
	for _, tc := range []struct{ path, body string }{
		// A scheduled job with capitals and '_' in its name, async, owner.
		{"/v1/scheduler/iso8601", `{"schedule": "R5/2030-03-01T04:10:00Z/PT10S", "name": "NIGHTLY_Export", "epsilon": "PT10M",
			"command": "echo export >> /tmp/out", "owner": "ops@example.org", "async": false}`},
		// A dependent job, async, with the read-only counters a listing carries.
		{"/v1/scheduler/dependency", `{"async": true, "command": "echo summary", "epsilon": "PT20M", "errorCount": 0, "lastError": "",
			"lastSuccess": "2024-01-02T03:04:05.678Z", "name": "summary_job", "owner": "ops@example.org", "parents": ["NIGHTLY_Export"],
			"retries": 1, "successCount": 7}`},
		// A docker job: cpus and mem as strings, host network, fetch empty.
		{"/scheduler/iso8601", `{"schedule": "R/2030-05-01T10:00:00Z/PT5M", "name": "dockerjob",
			"container": {"type": "DOCKER", "image": "agora.local/testapp:latest", "network": "HOST", "forcePullImage": "false", "volumes": []},
			"cpus": "0.25", "mem": "64", "fetch": [], "command": "date"}`},
		// The sample job: shell false, arguments, executor fields empty, fetch, env, EQUALS.
		{"/v1/scheduler/iso8601", `{"name": "sample.Job-1", "command": "/bin/echo", "arguments": ["-n", "hello"], "shell": false,
			"epsilon": "PT30M", "executor": "", "executorFlags": "", "retries": 2, "owner": "ops@example.org", "async": false,
			"successCount": 3, "errorCount": 1, "lastSuccess": "2024-02-03T04:05:06.789Z", "lastError": "2024-02-01T00:00:00.000Z",
			"cpus": 0.5, "disk": 512, "mem": 96, "disabled": false,
			"fetch": [{"uri": "http://127.0.0.1:1/tool", "cache": false, "extract": false, "executable": true}],
			"schedule": "R/2030-06-01T00:00:00.000Z/PT2H", "environmentVariables": [{"name": "JAVA_OPTS", "value": "-Xmx64m"}],
			"constraints": [["hostname", "LIKE", ".*"]]}`},
		// A containerized job with an empty networkInfos, and EQUALS.
		{"/scheduler/iso8601", `{"name": "Mesos_Forever", "command": "sleep 3600", "schedule": "R/2030-01-01T00:00:00Z/P1D",
			"container": {"type": "MESOS", "image": "agora.local/testapp:latest", "forcePullImage": true, "networkInfos": []},
			"constraints": [["hostname", "EQUALS", "nowhere"]]}`},
	} {
		if code := call(t, "POST", c.base+tc.path, tc.body, nil); code != http.StatusNoContent {
			t.Fatalf("POST %s %s: %d", tc.path, tc.body, code)
		}
	}
	jobs := map[string]map[string]any{}
	for _, j := range getList(t, c.base+"/v1/scheduler/jobs") {
		checkShape(t, fmt.Sprint(j["name"]), j, chronosJobShape)
		jobs[j["name"].(string)] = j
	}
	if len(jobs) != 5 {
		t.Fatalf("jobs: %v", jobs)
	}
	if j := jobs["dockerjob"]; j["cpus"] != 0.25 || j["mem"] != 64.0 || j["container"].(map[string]any)["type"] != "DOCKER" || j["container"].(map[string]any)["network"] != "HOST" {
		t.Errorf("docker job: %v", j)
	}
	if j := jobs["Mesos_Forever"]; j["container"].(map[string]any)["type"] != "MESOS" || j["cpus"] != 0.1 || j["mem"] != 128.0 || j["disk"] != 256.0 ||
		fmt.Sprint(j["constraints"]) != "[[hostname EQUALS nowhere]]" || j["concurrent"] != false {
		t.Errorf("Chronos's defaults (cpus 0.1, mem 128, disk 256) and EQUALS: %v", j)
	}
	s := jobs["sample.Job-1"]
	if s["shell"] != false || s["command"] != "/bin/echo" || fmt.Sprint(s["arguments"]) != "[-n hello]" || s["epsilon"] != "PT30M" ||
		fmt.Sprint(s["environmentVariables"]) != "[map[name:JAVA_OPTS value:-Xmx64m]]" || len(s["fetch"].([]any)) != 1 || s["disk"] != 512.0 {
		t.Errorf("sample job: %v", s)
	}
	if f := s["fetch"].([]any)[0].(map[string]any); f["extract"] != false || f["executable"] != true {
		t.Errorf("fetch: %v", f)
	}
	if j := jobs["summary_job"]; j["async"] != true || fmt.Sprint(j["parents"]) != "[NIGHTLY_Export]" || j["retries"] != 1.0 {
		t.Errorf("dependent job: %v", j)
	}

	// Search: by name, command or either, in any case.
	if found := getList(t, c.base+"/scheduler/jobs/search?name=nightly"); len(found) != 1 || found[0]["name"] != "NIGHTLY_Export" {
		t.Errorf("search by name: %v", found)
	}
	if found := getList(t, c.base+"/v1/scheduler/jobs/search?any=ECHO"); len(found) != 3 {
		t.Errorf("search any: %d jobs", len(found))
	}

	// Shell false: command and arguments are exec'd, no shell, no image.
	if code := call(t, "PUT", c.base+"/v1/scheduler/job/sample.Job-1", "", nil); code != http.StatusNoContent {
		t.Fatalf("start: %d", code)
	}
	ti := <-launched
	if ti.Cmd != "" || ti.Image != "" || fmt.Sprint(ti.Args) != "[/bin/echo -n hello]" || ti.Env["JAVA_OPTS"] != "-Xmx64m" {
		t.Errorf("the shell-false task: %+v", ti)
	}
	// Task kill stops the job's active runs.
	if code := call(t, "PUT", c.base+"/scheduler/job/Mesos_Forever", "", nil); code != http.StatusNoContent {
		t.Fatalf("start: %d", code)
	}
	if code := call(t, "DELETE", c.base+"/v1/scheduler/task/kill/Mesos_Forever", "", nil); code != http.StatusNoContent {
		t.Fatalf("kill: %d", code)
	}
	waitFor(t, "the killed run failed", func() bool {
		var rs []Run
		call(t, "GET", c.base+"/v1/jobs/Mesos_Forever/runs?include=finished", "", &rs)
		return len(rs) == 1 && rs[0].Status == RunFailed
	})
	if code := call(t, "DELETE", c.base+"/v1/scheduler/job/dockerjob", "", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
}

// TestChronosJobChangedThroughMetronomesAPI: a job made through Chronos's API, whose name
// Metronome's id rule would refuse (capitals, '_'), is read and changed through /v1/jobs like
// any other — what a team moving from Chronos to Metronome's tooling does — and keeps what only
// Chronos's API says of it.
func TestChronosJobChangedThroughMetronomesAPI(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, func(api.TaskInfo) (task.State, time.Duration) { return task.Finished, 5 * time.Millisecond })
	if code := call(t, "POST", c.base+"/v1/scheduler/iso8601", `{"schedule": "R/2030-03-01T04:10:00Z/PT1H", "name": "NIGHTLY_Export",
		"epsilon": "PT10M", "command": "echo export", "owner": "ops@example.org", "softError": true}`, nil); code != http.StatusNoContent {
		t.Fatalf("POST a Chronos job: %d", code)
	}
	var spec map[string]any
	if code := call(t, "GET", c.base+"/v1/jobs/NIGHTLY_Export", "", &spec); code != http.StatusOK {
		t.Fatalf("GET /v1/jobs/NIGHTLY_Export: %d", code)
	}
	spec["description"] = "changed through Metronome's API"
	spec["run"].(map[string]any)["cmd"] = "echo export v2"
	b, _ := json.Marshal(spec)
	var out map[string]any
	if code := call(t, "PUT", c.base+"/v1/jobs/NIGHTLY_Export", string(b), &out); code != http.StatusOK {
		t.Fatalf("PUT /v1/jobs/NIGHTLY_Export (its own GET, changed): %d %v", code, out)
	}
	// A spec without what GET showed of Chronos (as a Metronome client writes it from scratch).
	if code := call(t, "PUT", c.base+"/v1/jobs/NIGHTLY_Export", `{"id": "NIGHTLY_Export", "description": "from scratch",
		"run": {"cmd": "echo export v3", "cpus": 0.1, "mem": 32}}`, &out); code != http.StatusOK {
		t.Fatalf("PUT /v1/jobs/NIGHTLY_Export from scratch: %d %v", code, out)
	}
	var listed map[string]any
	for _, j := range getList(t, c.base+"/v1/scheduler/jobs") {
		if j["name"] == "NIGHTLY_Export" {
			listed = j
		}
	}
	if listed == nil || listed["command"] != "echo export v3" || listed["description"] != "from scratch" || listed["epsilon"] != "PT10M" || listed["softError"] != true {
		t.Errorf("Chronos's listing after the PUTs: %v", listed)
	}
	// A new job under such a name is still Metronome's rule on /v1/jobs.
	if code := call(t, "POST", c.base+"/v1/jobs", `{"id": "New_Job", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}`, &out); code != http.StatusUnprocessableEntity {
		t.Errorf("POST /v1/jobs New_Job: %d, want 422", code)
	}
}

// TestMetronomeJobsRoundTrip: every example-like job spec (the repository's examples, and
// Metronome's documented forms: docker with parameters, env with secrets, placement, restart,
// artifacts, host volumes, several schedules) reads back, is written back unchanged (PUT of
// its own GET) and reads back the same — what a client that edits a job does.
func TestMetronomeJobsRoundTrip(t *testing.T) {
	c := startSim(t, t.TempDir(), nil, func(api.TaskInfo) (task.State, time.Duration) { return task.Finished, 5 * time.Millisecond })
	var specs []json.RawMessage
	for _, f := range []string{"../../examples/jobs/etl.json", "../../examples/jobs/cleanup.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var list []json.RawMessage
		if json.Unmarshal(b, &list) != nil {
			list = []json.RawMessage{b}
		}
		specs = append(specs, list...)
	}
	for _, s := range []string{
		`{"id": "docs.prod.example", "description": "Example Application", "labels": {"location": "olympus", "owner": "zeus"},
		  "run": {"cpus": 0.1, "mem": 32, "disk": 0, "cmd": "sleep 10", "user": "nobody",
		          "docker": {"image": "agora.local/testapp:latest", "parameters": [{"key": "label", "value": "team=a"}]},
		          "env": {"MON": "test", "CONNECT": "direct"}, "maxLaunchDelay": 3600,
		          "placement": {"constraints": [{"attribute": "rack", "operator": "EQ", "value": "rack-2"}]},
		          "restart": {"policy": "NEVER"}, "artifacts": [{"uri": "https://example.org/file.tgz", "extract": true, "executable": false, "cache": false}]},
		  "schedules": [{"id": "every-5", "cron": "*/5 * * * *", "timezone": "UTC", "startingDeadlineSeconds": 60, "concurrencyPolicy": "ALLOW", "enabled": true},
		                {"id": "paused", "cron": "0 0 * * *", "enabled": false}]}`,
		`{"id": "with-secret", "run": {"cmd": "env", "cpus": 0.1, "mem": 32, "env": {"DB_PASS": {"secret": "pw"}},
		  "secrets": {"pw": {"source": "db/password"}}, "taskKillGracePeriodSeconds": 3}}`,
	} {
		specs = append(specs, json.RawMessage(s))
	}
	for _, spec := range specs {
		var id struct{ ID string }
		json.Unmarshal(spec, &id)
		var created map[string]any
		if code := call(t, "POST", c.base+"/v1/jobs", string(spec), &created); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %v", id.ID, code, created)
		}
		var first, second map[string]any
		call(t, "GET", c.base+"/v1/jobs/"+id.ID, "", &first)
		b, _ := json.Marshal(first)
		var put map[string]any
		if code := call(t, "PUT", c.base+"/v1/jobs/"+id.ID, string(b), &put); code != http.StatusOK {
			t.Errorf("PUT %s of its own GET: %d %v", id.ID, code, put)
			continue
		}
		call(t, "GET", c.base+"/v1/jobs/"+id.ID, "", &second)
		if !reflect.DeepEqual(first, second) {
			t.Errorf("%s changed when written back as read:\nbefore %v\nafter  %v", id.ID, first, second)
		}
	}
}
