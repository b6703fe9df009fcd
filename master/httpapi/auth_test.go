package httpapi

import (
	"net/http/httptest"
	"testing"

	"github.com/agora-sched/agora/pkg/auth"
)

func TestWhoMayCallWhat(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         auth.Role
	}{
		{"GET", "/ping", auth.Open}, {"GET", "/health", auth.Open}, {"GET", "/metrics", auth.Open},
		{"GET", "/ui/app.js", auth.Open}, {"GET", "/", auth.Open}, {"GET", "/v1/cluster/self", auth.Open},
		{"POST", "/v1/agents/register", auth.Cluster}, {"POST", "/v1/agents/a-1/status", auth.Cluster},
		{"GET", "/v1/secrets", auth.Admin}, {"PUT", "/v1/secrets/db", auth.Admin},
		{"POST", "/v1/agents/a-1/drain", auth.Admin}, {"DELETE", "/v1/cluster/masters/m-1", auth.Admin},
		{"DELETE", "/v2/leader", auth.Admin},
		{"GET", "/v1/cluster", auth.Viewer}, {"GET", "/v2/apps", auth.Viewer}, {"GET", "/v1/tasks/t", auth.Viewer},
		{"GET", "/v1/state", auth.Viewer}, {"GET", "/master/state", auth.Viewer}, {"GET", "/state.json", auth.Viewer},
		{"GET", "/v1/tasks/logs", auth.Viewer}, // the task named "logs", not its logs
		{"GET", "/v1/tasks/t/logs", auth.Operator}, {"GET", "/v1/tasks/t/logs?follow=true", auth.Operator},
		{"POST", "/v2/apps", auth.Operator}, {"DELETE", "/v1/jobs/x", auth.Operator}, {"POST", "/v1/tasks/t/kill", auth.Operator},
		{"POST", "/api/v1/scheduler", auth.Operator}, {"PUT", "/scheduler/job/x", auth.Operator},
	} {
		if got := need(httptest.NewRequest(tc.method, tc.path, nil), false); got != tc.want {
			t.Errorf("%s %s needs %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
	// --viewers-read-logs: logs are a read like the others.
	if got := need(httptest.NewRequest("GET", "/v1/tasks/t/logs", nil), true); got != auth.Viewer {
		t.Errorf("with --viewers-read-logs, logs need %s, want viewer", got)
	}
}

// TestQueryTokenOnlyOnStreams: ?access_token= is taken on the event stream and on a log follow,
// the two things a browser opens with EventSource.
func TestQueryTokenOnlyOnStreams(t *testing.T) {
	for target, want := range map[string]bool{
		"/v2/events":                            true,
		"/v2/events?event_type=deployment_info": true,
		"/v1/tasks/t/logs?follow=true":          true,
		"/v1/tasks/t/logs?follow=1":             true,
		"/v1/tasks/t/logs":                      false,
		"/v1/tasks/t/logs?follow=false":         false,
		"/v1/tasks/t/logs?follow=maybe":         false,
		"/v1/tasks/t?follow=true":               false,
		"/v2/apps":                              false,
		"/v1/cluster":                           false,
	} {
		if got := queryToken(httptest.NewRequest("GET", target, nil)); got != want {
			t.Errorf("GET %s takes a query token: %v, want %v", target, got, want)
		}
	}
	if queryToken(httptest.NewRequest("POST", "/v2/events", nil)) {
		t.Error("a POST takes a query token")
	}
}
