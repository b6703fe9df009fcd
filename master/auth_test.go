package master

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
		{"GET", "/v1/cluster", auth.Viewer}, {"GET", "/v2/apps", auth.Viewer}, {"GET", "/v1/tasks/t/logs", auth.Viewer},
		{"POST", "/v2/apps", auth.Operator}, {"DELETE", "/v1/jobs/x", auth.Operator}, {"POST", "/v1/tasks/t/kill", auth.Operator},
		{"POST", "/api/v1/scheduler", auth.Operator}, {"PUT", "/scheduler/job/x", auth.Operator},
	} {
		if got := need(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("%s %s needs %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
}
