package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/master/discovery"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/endpoints"
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

// servicesKeepalive is how often a services stream that has nothing new says it is alive.
const servicesKeepalive = 15 * time.Second

// getServices is GET /v1/services: where every service runs, from this master's copy of the
// service-discovery view (any master answers; a follower's is never older than the view's
// staleness bound while a leader answers). JSON by default; Marathon's text list with Accept:
// text/plain; with Accept: text/event-stream, a stream whose "services" events carry the whole
// JSON document, at once and again each time the services change — the leader's stream,
// which a follower forwards to while one is known.
func (a *apiHandler) getServices(w http.ResponseWriter, r *http.Request) {
	if a.m.services == nil {
		writeError(w, http.StatusNotFound, "this master serves no service-discovery view")
		return
	}
	if wantsStream(r) && !a.m.store.IsLeader() && r.Header.Get(HeaderForwardedBy) == "" && a.leaderHTTP() != "" {
		// A stream is the leader's, as Marathon's event stream is: its view follows the task
		// table at once (a task that starts, ends or changes health), a follower's every
		// refresh period. Without a leader, this master's own view streams.
		a.forward(w, r)
		return
	}
	doc, changed := a.m.services.Services(r.Context())
	if doc == nil {
		writeError(w, http.StatusServiceUnavailable, "this master has no service-discovery view yet: no leader has answered since it started")
		return
	}
	switch {
	case wantsStream(r):
		a.streamServices(w, r, doc, changed)
	case endpoints.WantsText(r):
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		endpoints.Write(w, discovery.Text(doc))
	default:
		writeJSON(w, http.StatusOK, doc)
	}
}

// wantsStream: the request asks for Server-Sent Events, as an EventSource does.
func wantsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "text/event-stream" {
				return true
			}
		}
	}
	return false
}

// streamServices writes the services document as an event, then again on each change, until
// the client goes or the master stops.
func (a *apiHandler) streamServices(w http.ResponseWriter, r *http.Request, doc *api.Services, changed <-chan struct{}) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "this server cannot stream")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	defer a.m.services.FollowServices()()
	keepalive := time.NewTicker(servicesKeepalive)
	defer keepalive.Stop()
	for {
		data, err := json.Marshal(doc)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "event: services\ndata: %s\n\n", data); err != nil {
			return
		}
		flusher.Flush()
	wait:
		for {
			select {
			case <-r.Context().Done():
				return
			case <-a.stopping:
				return
			case <-changed:
				doc, changed = a.m.services.Services(r.Context())
				break wait
			case <-keepalive.C:
				if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
					return
				}
				flusher.Flush()
			}
		}
	}
}
