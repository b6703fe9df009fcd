package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/raft"
)

// Reads of the API are linearizable by default: an answer reflects every write acknowledged
// before the request was sent, whichever master it reaches. A follower may lag the leader, and
// a leader cut off from its peers, or paused, may no longer lead without knowing it yet; either
// would answer from an old state. So a read reaching a follower is forwarded to the leader, and
// the leader answers only once a barrier it proposed after the request arrived has committed
// (raft.Linearizable: a quorum still follows it, and it has applied everything committed
// before). Concurrent reads share one barrier.
//
// ?stale (Consul's name) opts out: the master asked answers from its own copy at once (reads
// of the leader's memory still go to the leader, without the barrier), and the staleness
// headers (HeaderLastContact, HeaderIndex) say how far behind it may be. BenchmarkRead
// measures what the barrier costs.

// readTimeout bounds how long a read waits for the leader to confirm it leads.
const readTimeout = 10 * time.Second

// staleAllowed reads ?stale: absent or "false" for a linearizable read; present, "true" or "1"
// for a stale one.
func staleAllowed(r *http.Request) (bool, error) {
	q := r.URL.Query()
	if !q.Has("stale") {
		return false, nil
	}
	v := q.Get("stale")
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q: want true or false (or no value: ?stale)", v)
	}
	return b, nil
}

// consistent is a read of the replicated state that any master can answer from its own copy:
// linearizable (on the leader, after its barrier; forwarded by the others) unless ?stale.
func (a *apiHandler) consistent(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stale, err := staleAllowed(r)
		if err != nil {
			httpjson.FieldError(w, http.StatusBadRequest, "stale", err.Error())
			return
		}
		if stale {
			h.ServeHTTP(w, r)
			return
		}
		if !a.m.store.IsLeader() {
			a.forward(w, r)
			return
		}
		if !a.confirmLeader(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readFresh is, for a read the leader answers, the leader's confirmation that it still leads
// (unless ?stale). It answers the request itself (400, 503) and returns false when it cannot.
func (a *apiHandler) readFresh(w http.ResponseWriter, r *http.Request) bool {
	stale, err := staleAllowed(r)
	if err != nil {
		httpjson.FieldError(w, http.StatusBadRequest, "stale", err.Error())
		return false
	}
	return stale || a.confirmLeader(w, r)
}

// confirmLeader waits for a barrier committed after the request arrived. It answers 503 and
// returns false when this master no longer leads or could not reach a quorum in time.
func (a *apiHandler) confirmLeader(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if _, err := a.m.store.View(ctx, raft.Linearizable); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("could not confirm that this master still leads, so as not to answer from an old state: %v; retry, or ask ?stale", err))
		return false
	}
	return true
}
