package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/agora-sched/agora/master/discovery"
)

// getDiscoveryView is GET /v1/discovery/view: the leader's service-discovery view, built now,
// which the other masters fetch every refresh period (master/discovery). Only the leader
// answers it (503 elsewhere: a follower's copy would prove nothing), and only to masters (the
// cluster secret, or loopback without one).
func (a *apiHandler) getDiscoveryView(w http.ResponseWriter, r *http.Request) {
	if a.m.discoveryView == nil {
		writeError(w, http.StatusNotFound, "this master serves no service-discovery view")
		return
	}
	v, err := a.m.discoveryView()
	if errors.Is(err, discovery.ErrNotLeader) {
		writeError(w, http.StatusServiceUnavailable, "this master does not lead, or its term has not started: ask the leader")
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v) // compact: a large cluster's view is fetched every few seconds
}
