package marathon

import (
	"net/http"

	"github.com/agora-sched/agora/pkg/endpoints"
	"github.com/agora-sched/agora/pkg/task"
)

// The text/plain list of tasks (pkg/endpoints) from the leader's memory.

// endpointsLocked is the text list's view of apps (all apps, by id, when ids is nil).
func (s *Service) endpointsLocked(st *leaderState, ids []string) []endpoints.App {
	if ids == nil {
		ids = sortedKeys(st.apps)
	}
	var out []endpoints.App
	for _, id := range ids {
		as := st.apps[id]
		if as == nil || as.deleted {
			continue
		}
		a := endpoints.App{ID: id, ServicePorts: as.app.ServicePorts()}
		for _, in := range st.appInstances(id) {
			if in.state == task.Running {
				a.Running = append(a.Running, endpoints.Task{Host: in.rec.Host, Ports: in.rec.Ports})
			}
		}
		out = append(out, a)
	}
	return out
}

// tasksText answers the text list of apps (all of them when ids is nil). The caller holds s.mu.
func (s *Service) tasksText(w http.ResponseWriter, st *leaderState, ids []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	endpoints.Write(w, s.endpointsLocked(st, ids))
}
