package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/pkg/auth"
)

// need is the role a request to a master needs (pkg/auth): the liveness checks, a master's own
// raft state (which the others ask for), the UI's static files and the metrics are open; agents'
// own calls and the masters' service-discovery feed need the cluster secret (without one, they
// come from loopback only: pkg/auth's ErrOpenCluster); secrets, quotas, agents' drains and the masters' membership are for
// admins; task logs for operators, unless viewersReadLogs (--viewers-read-logs); other reads
// for viewers and other writes (apps, jobs, tasks, deployments, the scheduler API) for
// operators.
func need(r *http.Request, viewersReadLogs bool) auth.Role {
	p := r.URL.Path
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case read && (p == "/" || p == "/ping" || p == "/health" || p == "/metrics" || p == "/v1/cluster/self" || p == "/ui" || strings.HasPrefix(p, "/ui/")):
		return auth.Open
	case read && p == "/v1/discovery/view":
		return auth.Cluster // the masters' own feed (master/discovery)
	case r.Method == http.MethodPost && (p == "/v1/agents/register" || strings.HasPrefix(p, "/v1/agents/") && strings.HasSuffix(p, "/status")):
		return auth.Cluster
	case p == "/v1/secrets" || strings.HasPrefix(p, "/v1/secrets/"):
		return auth.Admin
	case !read && isQuota(p):
		return auth.Admin
	case read && isTaskLogs(p) && !viewersReadLogs:
		return auth.Operator
	case read:
		return auth.Viewer
	case strings.HasPrefix(p, "/v1/agents/"), strings.HasPrefix(p, "/v1/cluster/"), p == "/v2/leader":
		return auth.Admin
	}
	return auth.Operator
}

// isQuota says whether a path is of the roles' quotas, Agora's or Mesos's: setting one is an
// admin's, as the cluster's policy.
func isQuota(p string) bool {
	for _, prefix := range []string{"/v1/quota", "/quota", "/master/quota"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// isTaskLogs says whether a path is GET /v1/tasks/{id}/logs, the one route that answers with a
// task's output (the frameworks' job and app routes answer metadata only).
func isTaskLogs(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v1/tasks/")
	if !ok {
		return false
	}
	_, ok = strings.CutSuffix(rest, "/logs")
	return ok
}

// queryTokenWhere is where a master takes ?access_token=: the streams a browser opens with
// EventSource, which cannot set an Authorization header.
const queryTokenWhere = "GET /v2/events and GET /v1/tasks/{id}/logs?follow=true"

// queryToken says whether a request may carry its token as ?access_token= (queryTokenWhere).
func queryToken(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if r.URL.Path == "/v2/events" {
		return true
	}
	follow, err := strconv.ParseBool(r.URL.Query().Get("follow"))
	return isTaskLogs(r.URL.Path) && err == nil && follow
}

// NewGuard is the guard of a master's API: which role each request needs (need), where a token
// may come as ?access_token=, and the hint a refusal gives.
func NewGuard(clusterSecret string, viewersReadLogs bool) *auth.Guard {
	return &auth.Guard{
		ClusterSecret:   clusterSecret,
		Need:            func(r *http.Request) auth.Role { return need(r, viewersReadLogs) },
		QueryToken:      queryToken,
		QueryTokenWhere: queryTokenWhere,
		Hint: func(r *http.Request) string {
			if isTaskLogs(r.URL.Path) && !viewersReadLogs {
				return "task logs are for operators; masters started with --viewers-read-logs let viewers read them"
			}
			return ""
		},
	}
}
