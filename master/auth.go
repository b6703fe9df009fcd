package master

import (
	"net/http"
	"strings"

	"github.com/agora-sched/agora/pkg/auth"
)

// need is the role a request to a master needs (pkg/auth): the liveness checks, a master's own
// raft state (which the others ask for), the UI's static files and the metrics are open; agents' own calls need the cluster secret; secrets,
// agents' drains and the masters' membership are for admins; other reads for viewers and
// other writes (apps, jobs, tasks, deployments, the scheduler API) for operators.
func need(r *http.Request) auth.Role {
	p := r.URL.Path
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case read && (p == "/" || p == "/ping" || p == "/health" || p == "/metrics" || p == "/v1/cluster/self" || p == "/ui" || strings.HasPrefix(p, "/ui/")):
		return auth.Open
	case r.Method == http.MethodPost && (p == "/v1/agents/register" || strings.HasPrefix(p, "/v1/agents/") && strings.HasSuffix(p, "/status")):
		return auth.Cluster
	case p == "/v1/secrets" || strings.HasPrefix(p, "/v1/secrets/"):
		return auth.Admin
	case read:
		return auth.Viewer
	case strings.HasPrefix(p, "/v1/agents/"), strings.HasPrefix(p, "/v1/cluster/"), p == "/v2/leader":
		return auth.Admin
	}
	return auth.Operator
}
