package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// badBodies are the request bodies every write endpoint is sent.
func badBodies() map[string][]byte {
	return map[string][]byte{
		"malformed JSON": []byte(`{"id": `),
		"wrong types":    []byte(`{"id": 5, "instances": "many", "cpus": "x", "run": 3, "type": 7, "hostname": [], "task_id": {}}`),
		"unknown field":  []byte(`{"bogus-field": 1}`),
		"a JSON array":   []byte(`[1, 2, 3]`),
		"null":           []byte(`null`),
		"empty":          nil,
		"deep nesting":   []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)),
		"deep objects":   []byte(strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)),
		"oversized":      bytes.Repeat([]byte(" "), 9<<20),
		"unicode":        []byte(`{"id": "ünïcödé-☃-\u0000", "cmd": "\ud800", "name": "../../etc/passwd"}`),
		"huge numbers":   []byte(`{"id": "x", "instances": 1e400, "cpus": -1e308, "mem": 99999999999999999999999}`),
	}
}

// writeRoutes are every write endpoint of a dev node (master, both frameworks) and its agent,
// with ids that do not exist or are not ids at all.
var writeRoutes = []struct{ method, path string }{
	{"POST", "/v2/apps"}, {"PUT", "/v2/apps"}, {"PATCH", "/v2/apps"}, {"PUT", "/v2/apps/x"}, {"PATCH", "/v2/apps/x"},
	{"POST", "/v2/apps/x/restart"}, {"DELETE", "/v2/apps/x"}, {"DELETE", "/v2/apps/x/tasks/y"}, {"POST", "/v2/tasks/delete"},
	{"DELETE", "/v2/deployments/x"}, {"POST", "/v2/groups"}, {"PUT", "/v2/groups"}, {"PUT", "/v2/groups/x"},
	{"DELETE", "/v2/groups/x"}, {"DELETE", "/v2/queue/x/delay"},
	{"POST", "/v1/jobs"}, {"PUT", "/v1/jobs/x"}, {"DELETE", "/v1/jobs/x"}, {"POST", "/v1/jobs/x/runs"},
	{"POST", "/v1/jobs/x/runs/r/actions/stop"}, {"POST", "/v1/jobs/x/schedules"}, {"PUT", "/v1/jobs/x/schedules/s"},
	{"DELETE", "/v1/jobs/x/schedules/s"}, {"POST", "/scheduler/iso8601"}, {"PUT", "/scheduler/iso8601"},
	{"POST", "/scheduler/dependency"}, {"PUT", "/scheduler/job/x"}, {"DELETE", "/scheduler/job/x"},
	{"PUT", "/v1/secrets/x"}, {"DELETE", "/v1/secrets/x"},
	{"POST", "/v1/agents/register"}, {"POST", "/v1/agents/x/status"}, {"POST", "/v1/agents/x/drain"},
	{"POST", "/v1/agents/x/reactivate"}, {"POST", "/v1/tasks/x/kill"}, {"DELETE", "/v1/cluster/masters/x"},
	{"POST", "/api/v1/scheduler"},
}

// readRoutes are reads with ids, paths and parameters that are wrong.
var readRoutes = []string{
	"/v2/apps/%ff%fe", "/v2/apps/x?force=bogus", "/v2/apps/../../etc/passwd", "/v2/apps/ünï/tasks", "/v2/apps/x/versions/nope",
	"/v2/groups/nope", "/v2/tasks?status=bogus", "/v1/jobs/nope", "/v1/jobs/nope/runs", "/v1/jobs/x/runs/y",
	"/v1/jobs?embed=bogus", "/v1/graph?format=xml", "/v1/tasks/nope", "/v1/tasks/nope/logs?offset=abc",
	"/v1/tasks?state=bogus", "/v1/agents/nope", "/v1/nope", "/v2/nope", "/%2e%2e/%2e%2e/etc/passwd",
}

// TestBadInputIsA4xxThatSaysWhat sends every write endpoint of a real dev node (and its agent)
// malformed JSON, wrong types, unknown fields, oversized and deeply nested bodies and unicode,
// and every read wrong ids and parameters: each answer is a 4xx with a JSON message (413 for an
// oversized body), never a 5xx, and nothing is stored.
func TestBadInputIsA4xxThatSaysWhat(t *testing.T) {
	t.Parallel()
	base, agentBase, _ := startMarathonDev(t, taskPorts())
	waitJob(t, "the frameworks ready", 30*time.Second, func() bool {
		return httpJSON(t, "GET", base+"/v2/apps", nil, nil) == http.StatusOK && httpJSON(t, "GET", base+"/v1/jobs", nil, nil) == http.StatusOK
	})
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	check := func(what, method, url string, body []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s %s (%s): %v", method, url, what, err)
			return
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Message string `json:"message"`
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400 && strings.Contains(url, ".."):
			// net/http cleans the path and redirects within the API: nothing outside it is read
		case resp.StatusCode < 400 || resp.StatusCode >= 500:
			t.Errorf("%s %s (%s): %d %.200s, want a 4xx", method, url, what, resp.StatusCode, data)
		case what == "oversized" && resp.StatusCode != http.StatusRequestEntityTooLarge:
			t.Errorf("%s %s (%s): %d %.200s, want 413", method, url, what, resp.StatusCode, data)
		case json.Unmarshal(data, &e) != nil || e.Message == "":
			t.Errorf("%s %s (%s): %d %.200s, want a JSON {\"message\"}", method, url, what, resp.StatusCode, data)
		}
	}
	for what, body := range badBodies() {
		for _, r := range writeRoutes {
			check(what, r.method, base+r.path, body)
		}
		for _, path := range []string{"/v1/tasks", "/v1/tasks/x/kill", "/v1/acknowledge"} {
			check(what, "POST", agentBase+path, body)
		}
	}
	for _, path := range readRoutes {
		check("bad read", "GET", base+path, nil)
	}
	// What could never run or is ambiguous, on the real path: refused at the door, saying why
	// (the frameworks' own tests have every case).
	waitJob(t, "the agent registered", 30*time.Second, func() bool {
		var agents []any
		return httpJSON(t, "GET", base+"/v1/agents", nil, &agents) == http.StatusOK && len(agents) == 1
	})
	for _, c := range []struct{ method, path, body, reason string }{
		{"POST", "/v2/apps", `{"id": "/` + strings.Repeat("a", 10000) + `", "cmd": "sleep 1"}`, "at most 164"},
		{"POST", "/v2/apps", `{"id": "/tiny", "cmd": "sleep 1", "mem": 1}`, "expected at least 6 (MiB)"},
		{"PUT", "/v2/apps", `[{"id": "/d", "cmd": "x"}, {"id": "/d", "cmd": "y"}]`, "given twice in this request"},
		{"DELETE", "/v2/apps/x?force=notabool", ``, `force: got \"notabool\"`},
		{"POST", "/v2/groups", `{"id": "/g", "apps": [{"id": "a", "cmd": "x", "dependencies": ["a"]}]}`, "/g/a is the app itself: nothing can depend on itself"},
		{"POST", "/v2/groups", `{"id": "/g", "apps": [{"id": "a", "cmd": "x", "dependencies": ["/nope"]}]}`, "/nope is neither an app nor a group"},
		{"POST", "/v2/apps", `{"id": "/priv", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest", "privileged": true}}}`, "agora agent --allow-privileged"},
		{"POST", "/v1/jobs", `{"id": "fast", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "s", "cron": "@every 100ms"}]}`, "more often than once a second"},
		{"DELETE", "/v1/jobs/x?stopCurrentJobRuns=maybe", ``, `stopCurrentJobRuns: got \"maybe\"`},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || !strings.Contains(string(data), c.reason) {
			t.Errorf("%s %.80s %.80s: %d %.300s, want a 4xx saying %q", c.method, c.path, c.body, resp.StatusCode, data, c.reason)
		}
	}
	// Nothing was stored.
	var apps struct {
		Apps []any `json:"apps"`
	}
	var groups struct {
		Groups []any `json:"groups"`
	}
	var secrets struct {
		Secrets []string `json:"secrets"`
	}
	var jobs []any
	httpJSON(t, "GET", base+"/v2/apps", nil, &apps)
	httpJSON(t, "GET", base+"/v2/groups", nil, &groups)
	httpJSON(t, "GET", base+"/v1/jobs", nil, &jobs)
	httpJSON(t, "GET", base+"/v1/secrets", nil, &secrets)
	if len(apps.Apps) != 0 || len(groups.Groups) != 0 || len(jobs) != 0 || len(secrets.Secrets) != 0 {
		t.Fatalf("bad input left state: apps %v, groups %v, jobs %v, secrets %v", apps.Apps, groups.Groups, jobs, secrets.Secrets)
	}
}

// TestBadCommandLinesExit2 gives the client commands what a person mistypes — a negative or
// non-integer count, a verb a noun does not have, an id that would name another path — and
// wants exit status 2 with a line that names the argument and says why, before anything is
// sent to the master (a master that counts requests gets none).
func TestBadCommandLinesExit2(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		t.Errorf("the master got %s %s", r.Method, r.URL)
		http.Error(w, "{}", http.StatusTeapot)
	}))
	defer srv.Close()
	verbs := map[string]string{
		"app":       "add, list, show, update, scale, restart, remove, tasks, versions, rollback",
		"job":       "add, list, show, run, runs, logs, remove",
		"task":      "list, show, logs, kill",
		"agent":     "list, show, drain, reactivate; 'agora agent' alone runs an agent",
		"deploy":    "list, watch, cancel",
		"cluster":   "members, masters, leader, remove-master",
		"framework": "list",
		"image":     "import, list",
		"tls":       "ca, cert",
		"tls ca":    "create",
		"tls cert":  "create",
	}
	tests := []struct {
		args string
		msg  string
	}{
		{"app scale hello -5", `agora app scale: INSTANCES must be a whole number, 0 or more, got "-5"`},
		{"app scale hello -1.5", `INSTANCES must be a whole number, 0 or more, got "-1.5"`},
		{"app scale hello 2.5", `INSTANCES must be a whole number, 0 or more, got "2.5"`},
		{"app scale hello many", `INSTANCES must be a whole number, 0 or more, got "many"`},
		{"app scale hello 99999999999999999999", `INSTANCES must be a whole number, 0 or more, got "99999999999999999999"`},
		{"app scale hello --wait -3", `got "-3"`},
		{"app show x/../hello", `agora app show: the id "x/../hello" has a ".." segment, which would name another path`},
		{"app show /", `agora app show: the id "/" has an empty segment`},
		{"app show a?b", `agora app show: the id "a?b" has '?'`},
		{"app update ../x app.json", `agora app update: the id "../x" has a ".." segment`},
		{"app scale x/../y 3", `agora app scale: the id "x/../y" has a ".." segment`},
		{"app restart ./x", `agora app restart: the id "./x" has a "." segment`},
		{"app remove x//y", `agora app remove: the id "x//y" has an empty segment`},
		{"app tasks ..", `agora app tasks: the id ".." has a ".." segment`},
		{"app versions a/..", `agora app versions: the id "a/.." has a ".." segment`},
		{"app rollback a/../b", `agora app rollback: the id "a/../b" has a ".." segment`},
		{"job show a/../b", `agora job show: the id "a/../b" has a ".." segment`},
		{"job run ..", `agora job run: the id ".." has a ".." segment`},
		{"job runs ../x", `agora job runs: the id "../x" has a ".." segment`},
		{"job logs j ..", `agora job logs: the id ".." has a ".." segment`},
		{"job remove x/./y", `agora job remove: the id "x/./y" has a "." segment`},
		{"task show ../x", `agora task show: the id "../x" has a ".." segment`},
		{"task logs ..", `agora task logs: the id ".." has a ".." segment`},
		{"task kill x/../y", `agora task kill: the id "x/../y" has a ".." segment`},
		{"agent show ..", `agora agent show: the id ".." has a ".." segment`},
		{"agent drain ../a", `agora agent drain: the id "../a" has a ".." segment`},
		{"deploy cancel ../x", `agora deploy cancel: the id "../x" has a ".." segment`},
		{"cluster remove-master ..", `agora cluster remove-master: the id ".." has a ".." segment`},
	}
	for noun, list := range verbs {
		tests = append(tests, struct{ args, msg string }{noun + " nosuchverb", fmt.Sprintf(`agora %s: no such verb "nosuchverb"; the verbs are %s (see 'agora %s --help')`, noun, list, noun)})
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			args := append([]string{"agora"}, strings.Fields(tt.args)...)
			if !strings.Contains(tt.msg, "no such verb") {
				args = append(args, "--master", srv.URL) // a master to talk to, were anything sent
			}
			var stderr bytes.Buffer
			err := run(context.Background(), args, io.Discard, io.Discard)
			if got := exitCode(err, &stderr); got != exitUsage {
				t.Fatalf("exit code = %d (%v), want %d", got, err, exitUsage)
			}
			if !strings.Contains(stderr.String(), tt.msg) {
				t.Errorf("stderr = %q, want it to say %q", stderr.String(), tt.msg)
			}
		})
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests reached the master", n)
	}
}
