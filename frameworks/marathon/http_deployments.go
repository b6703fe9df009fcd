package marathon

import (
	"maps"
	"net/http"

	"github.com/agora-sched/agora/pkg/httpjson"
)

func (s *Service) listDeployments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	out := []map[string]any{}
	for _, id := range sortedKeys(st.deployments) {
		out = append(out, deploymentWire(st.deployments[id]))
	}
	httpjson.Write(w, http.StatusOK, out)
}

// deleteDeployment cancels a deployment: with force=true it just stops where it is; without, it
// reverts it as Marathon does, in one new deployment (revertChange): the apps it changed or
// deleted get their definitions from before it back, those it created go, and its groups'
// dependencies go back — from the trees its record keeps, so on any leader.
func (s *Service) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	var d *Deployment
	if s.st != nil {
		d = s.st.deployments[id]
	}
	s.mu.Unlock()
	if d == nil {
		marathonError(w, http.StatusNotFound, "DeploymentPlan "+id+" does not exist")
		return
	}
	if forced(r) {
		c := &change{}
		c.del(deploymentKey(id))
		if err := commit(r.Context(), s.store, c); err != nil {
			writeChangeError(w, err)
			return
		}
		s.mu.Lock()
		if s.st != nil {
			delete(s.st.deployments, id)
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.mu.Lock()
	current := map[string]groupRecord{}
	if s.st != nil {
		maps.Copy(current, s.st.groups)
	}
	s.mu.Unlock()
	edits, groups, err := revertChange(d, current)
	if err == nil {
		var res changeResult
		if res, err = s.changeApps(r.Context(), true, edits, groups); err == nil {
			writeResult(w, http.StatusOK, res)
			return
		}
	}
	writeChangeError(w, err)
}
