package marathon

import (
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/httpjson"
)

func (s *Service) info(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fwID := ""
	if s.st != nil {
		fwID = s.st.ss.FrameworkID()
	}
	s.mu.Unlock()
	port := 0
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if tcp, ok := addr.(*net.TCPAddr); ok {
			port = tcp.Port
		}
	}
	httpjson.Write(w, http.StatusOK, s.infoWire(fwID, r.Host, port))
}

// queueItem is an entry of Marathon's /v2/queue; WaitingReason is Agora's: why the instances
// wait, in a line (see waitingReasonLocked).
type queueItem struct {
	Count                  int                               `json:"count"`
	Role                   string                            `json:"role"`
	Delay                  queueDelay                        `json:"delay"`
	Since                  frameworks.Timestamp              `json:"since"`
	ProcessedOffersSummary frameworks.ProcessedOffersSummary `json:"processedOffersSummary"`
	LastUnusedOffers       *[]frameworks.UnusedOffer         `json:"lastUnusedOffers,omitempty"`
	App                    map[string]any                    `json:"app"`
	WaitingReason          string                            `json:"waitingReason,omitempty"`
}

// queueDelay is Marathon's launch delay: overdue is true when nothing delays the launch.
type queueDelay struct {
	TimeLeftSeconds int  `json:"timeLeftSeconds"`
	Overdue         bool `json:"overdue"`
}

// queue is GET /v2/queue: the apps with instances waiting to launch, their launch delay and
// what the offers said (embed=lastUnusedOffers: the last unused offer of each agent).
func (s *Service) queue(w http.ResponseWriter, r *http.Request) {
	withOffers := false
	for _, v := range r.URL.Query()["embed"] {
		for _, e := range strings.Split(v, ",") {
			withOffers = withOffers || strings.TrimSpace(e) == "lastUnusedOffers"
		}
	}
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	now := s.cfg.Clock.Now()
	out := []queueItem{}
	for _, id := range sortedKeys(st.apps) {
		as := st.apps[id]
		if as.deleted || as.want == 0 {
			continue
		}
		out = append(out, s.queueItemLocked(st, as, now, withOffers, silent))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"queue": out})
}

// queueItemLocked is an app's entry of /v2/queue.
func (s *Service) queueItemLocked(st *leaderState, as *appState, now time.Time, withOffers bool, silent string) queueItem {
	offers := as.offers
	if offers == nil {
		offers = frameworks.NewOfferStats(now)
	}
	left := max(0, as.delayUntil.Sub(now).Seconds())
	item := queueItem{
		Count: as.want, Role: s.cfg.Role,
		Delay: queueDelay{TimeLeftSeconds: int(math.Ceil(left)), Overdue: left == 0},
		Since: frameworks.Timestamp(offers.Since()), ProcessedOffersSummary: offers.Summary(),
		App: s.appJSONLocked(st, as, nil, ""), WaitingReason: waitingReasonLocked(as, now, silent),
	}
	delete(item.App, "waitingReason") // said once, beside the app
	if withOffers {
		last := offers.LastUnusedOffers(s.cfg.Role)
		item.LastUnusedOffers = &last
	}
	return item
}

// resetDelay is DELETE /v2/queue/{app id}/delay: the app's launch backoff starts over.
func (s *Service) resetDelay(w http.ResponseWriter, r *http.Request) {
	p := "/" + strings.Trim(r.PathValue("path"), "/")
	if !strings.HasSuffix(p, "/delay") {
		marathonError(w, http.StatusNotFound, "no such endpoint: DELETE /v2/queue"+p)
		return
	}
	appID := strings.TrimSuffix(p, "/delay")
	s.mu.Lock()
	var as *appState
	if s.st != nil {
		as = s.st.apps[appID]
	}
	if as == nil || as.deleted {
		s.mu.Unlock()
		marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist")
		return
	}
	as.failures, as.delayUntil = 0, time.Time{}
	s.st.touch(appID)
	s.mu.Unlock()
	s.poke()
	w.WriteHeader(http.StatusNoContent)
}
