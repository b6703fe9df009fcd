package master

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

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
