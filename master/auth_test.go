package master

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/task"
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

// TestTaskLogsNeedAnOperator: a task's logs need an operator (a viewer's 403 names the flag), or
// a viewer with --viewers-read-logs; its metadata stays a viewer's read. ?access_token= counts
// on a log follow and the event stream only; the agent never sees a person's token.
func TestTaskLogsNeedAnOperator(t *testing.T) {
	agentAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("access_token") || r.Header.Get("Authorization") != "" {
			http.Error(w, "a person's token reached the agent", http.StatusTeapot)
			return
		}
		fmt.Fprintf(w, "output of %s", r.URL.Path)
	}))
	defer agentAPI.Close()
	for _, viewersReadLogs := range []bool{false, true} {
		t.Run(fmt.Sprint("viewers-read-logs=", viewersReadLogs), func(t *testing.T) {
			e := newSchedEnvWith(t, Config{Tokens: testTokens(t), ViewersReadLogs: viewersReadLogs}, nil)
			e.sim.http = strings.TrimPrefix(agentAPI.URL, "http://")
			e.sim.register(t, "", "host-a", agentRes)
			ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
			if err := ss.Accept([]string{expectOffer(t, ss).ID}, launch(sleepTask("t1", 1, 64)), nil); err != nil {
				t.Fatal(err)
			}
			expectUpdate(t, ss, "t1", task.Running)
			base := "http://" + e.r.m.HTTPAddr()
			viewerLogs := http.StatusForbidden
			if viewersReadLogs {
				viewerLogs = http.StatusOK
			}
			for _, c := range []struct {
				target, token string
				code          int
				says          string
			}{
				{"/v1/tasks/t1/logs", eveToken, viewerLogs, map[bool]string{false: "--viewers-read-logs", true: "output of /v1/tasks/t1/logs"}[viewersReadLogs]},
				{"/v1/tasks/t1/logs", aliceToken, http.StatusOK, "output of /v1/tasks/t1/logs"},
				{"/v1/tasks/t1", eveToken, http.StatusOK, "TASK_RUNNING"},
				{"/v1/tasks/t1?access_token=" + eveToken, "", http.StatusUnauthorized, "send 'Authorization: Bearer TOKEN'; ?access_token= is accepted only on GET /v2/events and"},
				{"/v1/tasks/t1/logs?access_token=" + aliceToken, "", http.StatusUnauthorized, "Authorization: Bearer"},
				{"/v1/tasks/t1/logs?follow=true&access_token=" + aliceToken, "", http.StatusOK, "output of /v1/tasks/t1/logs"},
				{"/v1/tasks/t1/logs?follow=true&access_token=" + eveToken, "", viewerLogs, ""},
				{"/v1/tasks/t1/logs?follow=true&access_token=not-a-token-0123456789", "", http.StatusUnauthorized, "not known"},
				// This master runs no Marathon: a 404 from the mux means the guard let it by.
				{"/v2/events?access_token=" + eveToken, "", http.StatusNotFound, "no such endpoint"},
			} {
				code, body := send(t, "GET", base+c.target, c.token, nil)
				if code != c.code || !strings.Contains(body, c.says) {
					t.Errorf("GET %s with %q: %d %s, want %d saying %q", c.target, c.token, code, body, c.code, c.says)
				}
			}
		})
	}
}
