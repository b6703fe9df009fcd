package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
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
	"/v2/apps/%ff%fe", "/v2/apps/x?embed=bogus", "/v2/apps/../../etc/passwd", "/v2/apps/ünï/tasks", "/v2/apps/x/versions/nope",
	"/v2/groups/nope", "/v2/tasks?status=bogus", "/v1/jobs/nope", "/v1/jobs/nope/runs", "/v1/jobs/x/runs/y",
	"/v1/jobs?embed=bogus", "/v1/graph?format=xml", "/v1/tasks/nope", "/v1/tasks/nope/logs?offset=abc",
	"/v1/tasks?state=bogus", "/v1/agents/nope", "/v1/nope", "/v2/nope", "/%2e%2e/%2e%2e/etc/passwd",
}

// TestBadInputIsA4xxThatSaysWhat sends every write endpoint of a real dev node (and its agent)
// malformed JSON, wrong types, unknown fields, oversized and deeply nested bodies and unicode,
// and every read wrong ids and parameters: each answer is a 4xx with a JSON message (413 for an
// oversized body), never a 5xx, and nothing is stored.
func TestBadInputIsA4xxThatSaysWhat(t *testing.T) {
	base, agentBase, _ := startMarathonDev(t, 32500)
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
