package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/agora-sched/agora/master/ui"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/raft"
)

// Headers every master's answer carries, so a client reading from a follower knows how stale
// the answer may be (Consul and Nomad mark theirs alike).
const (
	HeaderLeader      = "X-Agora-Leader"       // id of the leader this master knows, "" if none
	HeaderKnownLeader = "X-Agora-Known-Leader" // "true" when this master knows a leader
	HeaderLastContact = "X-Agora-Last-Contact" // ms since this master heard from the leader; 0 on the leader
	HeaderIndex       = "X-Agora-Index"        // last raft index applied here
	HeaderForwardedBy = "X-Agora-Forwarded-By" // set by a follower that forwarded the request
)

type apiHandler struct {
	mux    *http.ServeMux // set by routes; frameworks add their endpoints to it
	info   Info
	m      *cluster // nil on a node without a cluster
	logger *slog.Logger

	proxyMu sync.Mutex
	proxies map[string]*httputil.ReverseProxy // by leader HTTP address

	stopping chan struct{} // closed when the server stops: streams end

	quotaMu sync.Mutex // a quota's capacity check and its commit, one quota write at a time
}

func (a *apiHandler) routes() http.Handler {
	mux := http.NewServeMux()
	a.mux = mux
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "pong")
	})
	mux.HandleFunc("GET /health", a.health)
	mux.HandleFunc("GET /v1/info", a.getInfo)
	if a.m != nil {
		// Routes wrapped in onLeader read the leader's memory (tasks, frameworks, agents' state);
		// reads wrapped in consistent read the replicated state. Both answer reads that are
		// linearizable unless asked ?stale (reads.go).
		mux.HandleFunc("GET /v1/cluster", a.getCluster)
		mux.HandleFunc("GET /v1/cluster/self", a.getSelf)
		mux.HandleFunc("GET /v1/cluster/leader", a.getLeader)
		mux.HandleFunc("DELETE /v1/cluster/masters/{id}", a.removeMaster)
		mux.HandleFunc("POST /v1/agents/register", a.registerAgent)
		mux.Handle("GET /v1/agents", a.consistent(http.HandlerFunc(a.listAgents)))
		mux.Handle("GET /v1/agents/{id}", a.onLeader(http.HandlerFunc(a.getAgent)))
		mux.Handle("POST /v1/agents/{id}/drain", a.onLeader(a.drainAgent(true)))
		mux.Handle("POST /v1/agents/{id}/reactivate", a.onLeader(a.drainAgent(false)))
		mux.Handle("GET /v1/tasks/{id}", a.onLeader(http.HandlerFunc(a.getTask)))
		mux.Handle("POST /v1/tasks/{id}/kill", a.onLeader(http.HandlerFunc(a.killTask)))
		mux.Handle("GET /v1/tasks/{id}/logs", a.onLeader(http.HandlerFunc(a.taskLogs)))
		mux.HandleFunc("POST /v1/agents/{id}/status", a.postStatus)
		mux.Handle("GET /v1/tasks", a.onLeader(http.HandlerFunc(a.listTasks)))
		mux.Handle("GET /v1/frameworks", a.onLeader(http.HandlerFunc(a.listFrameworks)))
		mux.Handle("GET /v1/state", a.onLeader(http.HandlerFunc(a.getState)))
		for _, p := range []string{"/master/state", "/master/state.json", "/state.json"} {
			mux.Handle("GET "+p, a.onLeader(http.HandlerFunc(a.getMesosState)))
		}
		mux.HandleFunc("POST /api/v1/scheduler", a.schedulerCall)
		mux.Handle("GET /metrics", a.m.metricsHandler())
		mux.Handle("GET /v1/secrets", a.consistent(http.HandlerFunc(a.listSecrets)))
		mux.HandleFunc("PUT /v1/secrets/{name...}", a.putSecret)
		mux.HandleFunc("DELETE /v1/secrets/{name...}", a.deleteSecret)
		mux.Handle("GET /ui/", ui.Handler())
		mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusFound))
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
		mux.HandleFunc("GET /v1/discovery/view", a.getDiscoveryView)
		mux.HandleFunc("GET /v1/services", a.getServices)
		mux.Handle("GET /v1/quota", a.onLeader(http.HandlerFunc(a.listQuotas)))
		mux.Handle("GET /v1/reservations", a.onLeader(http.HandlerFunc(a.listReservations)))
		mux.Handle("PUT /v1/quota/{role}", a.onLeader(http.HandlerFunc(a.putQuota)))
		mux.Handle("DELETE /v1/quota/{role}", a.onLeader(http.HandlerFunc(a.deleteQuota)))
		for _, p := range []string{"/quota", "/master/quota"} {
			mux.Handle("GET "+p, a.onLeader(http.HandlerFunc(a.getMesosQuota)))
			mux.Handle("POST "+p, a.onLeader(http.HandlerFunc(a.postMesosQuota)))
			mux.Handle("DELETE "+p+"/{role}", a.onLeader(http.HandlerFunc(a.deleteMesosQuota)))
		}
		mux.HandleFunc("GET /v2/leader", a.getLeaderMarathon)
		mux.HandleFunc("DELETE /v2/leader", a.abdicate)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	if a.m == nil {
		return mux
	}
	return a.m.httpMetrics.Wrap(httpjson.LimitBody(a.m.guard.Middleware(a.clusterMiddleware(mux))))
}

// clusterMiddleware marks every answer with the leader and staleness headers, and sends every
// write that reaches a follower on to the leader. It passes the request itself to the mux,
// which sets its Pattern for the request metrics (httpmetrics).
func (a *apiHandler) clusterMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := a.m.store.Stats()
		leaderID, _ := a.m.store.Leader()
		h := w.Header()
		h.Set(HeaderLeader, leaderID)
		h.Set(HeaderKnownLeader, strconv.FormatBool(leaderID != ""))
		h.Set(HeaderLastContact, strconv.FormatInt(max(st.LastContact.Milliseconds(), 0), 10))
		h.Set(HeaderIndex, strconv.FormatUint(st.AppliedIndex, 10))
		if isWrite(r.Method) && !a.m.store.IsLeader() {
			// A forwarded request never reaches the mux: name its route for the metrics here.
			_, r.Pattern = a.mux.Handler(r)
			a.forward(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// electionWait is how long a request that must reach the leader waits for one to be known.
const electionWait = 3 * time.Second

// forward proxies a write to the leader, which answers the client through us. Marathon does the
// same; a client never has to know which master leads.
func (a *apiHandler) forward(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(HeaderForwardedBy) != "" {
		// Forwarded to us by a master that thought we lead: do not bounce it on.
		writeError(w, http.StatusServiceUnavailable, "this master is not the leader any more; retry")
		return
	}
	// Where to send it: the leader, once one is known — and not this master while raft has
	// made it leader but it is not ready yet (its first barrier pending): sent to itself then,
	// it would only bounce back as "not the leader any more".
	target := func() string {
		if id, _ := a.m.store.Leader(); id == a.m.id && !a.m.store.IsLeader() {
			return ""
		}
		return a.leaderHTTP()
	}
	leader := target()
	// An election takes a moment (a master just started, or a leader just gone): hold the
	// request for it rather than refuse at once, as etcd does, but answer well inside a
	// client's usual 5 s timeout, so that a refusal stays a definite "not done".
	for wait := time.NewTimer(electionWait); leader == ""; leader = target() {
		select {
		case <-r.Context().Done():
			wait.Stop()
			return
		case <-wait.C:
			writeError(w, http.StatusServiceUnavailable, "no leader is elected yet; retry in a moment")
			return
		case <-time.After(25 * time.Millisecond):
		}
	}
	r.Header.Set(HeaderForwardedBy, a.m.id)
	a.proxy(leader).ServeHTTP(w, r)
}

func (a *apiHandler) proxy(leader string) *httputil.ReverseProxy {
	a.proxyMu.Lock()
	defer a.proxyMu.Unlock()
	if p, ok := a.proxies[leader]; ok {
		return p
	}
	if a.proxies == nil {
		a.proxies = map[string]*httputil.ReverseProxy{}
	}
	target := &url.URL{Scheme: a.m.tls.Scheme(), Host: leader}
	p := &httputil.ReverseProxy{
		Transport: a.m.transport(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.logger.Warn("forward to the leader failed", "leader", leader, "err", err)
			writeError(w, http.StatusBadGateway, fmt.Sprintf("forwarding to the leader at %s failed: %v; retry", leader, err))
		},
	}
	a.proxies[leader] = p
	return p
}

// leaderHTTP is the leader's HTTP address, from its gossip metadata ("" when unknown).
func (a *apiHandler) leaderHTTP() string {
	id, _ := a.m.store.Leader()
	if id == "" {
		return ""
	}
	if id == a.m.id {
		return a.m.HTTPAddr()
	}
	for _, mem := range a.m.gossip.Masters() {
		if mem.Meta.ID == id {
			return mem.Meta.HTTP
		}
	}
	return ""
}

// health answers 200 while this node is part of a cluster with a known leader, 503 otherwise.
func (a *apiHandler) health(w http.ResponseWriter, r *http.Request) {
	if a.m == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	st := a.m.store.Stats()
	leaderID, _ := a.m.store.Leader()
	body := map[string]any{"status": "ok", "state": st.State, "leader": leaderID}
	if leaderID == "" {
		body["status"] = "no leader"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *apiHandler) getInfo(w http.ResponseWriter, r *http.Request) {
	info := a.info
	if a.m != nil {
		info.ID = a.m.id
		info.ClusterID = a.m.ClusterID()
		info.Raft = a.m.RaftAddr()
		info.Gossip = a.m.GossipAddr()
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *apiHandler) self() api.SelfInfo {
	st := a.m.store.Stats()
	lc := st.LastContact.Milliseconds()
	if st.LastContact < 0 {
		lc = -1
	}
	return api.SelfInfo{ID: a.m.id, State: st.State, Term: st.Term, LastIndex: st.LastIndex, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex, LastContactMS: lc,
		TimeUnixNano: a.m.wallClock.Now().UnixNano()}
}

func (a *apiHandler) getSelf(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.self())
}

// getLeader is GET /v1/cluster/leader: who leads, as this master knows it (503 while none is
// elected). It is what every agent asks every --retry to notice a new leader: an answer of a
// few bytes from memory, where GET /v1/cluster lists every gossip member and asks the other
// masters.
func (a *apiHandler) getLeader(w http.ResponseWriter, r *http.Request) {
	id, addr := a.m.store.Leader()
	if id == "" {
		writeError(w, http.StatusServiceUnavailable, "no leader elected yet")
		return
	}
	writeJSON(w, http.StatusOK, api.LeaderInfo{ID: id, Address: addr, HTTP: a.leaderHTTP()})
}

func (a *apiHandler) getCluster(w http.ResponseWriter, r *http.Request) {
	view := api.ClusterView{ClusterID: a.m.ClusterID(), Self: a.self(), Masters: []api.MasterInfo{}, Members: []api.MemberInfo{},
		Clock: a.m.clockGuard.Status()}
	members := a.m.gossip.Members()
	byID := map[string]gossip.Member{}
	for _, mem := range members {
		view.Members = append(view.Members, api.MemberInfo{
			Name: mem.Name, Address: mem.Addr, Role: string(mem.Meta.Role), ID: mem.Meta.ID,
			HTTP: mem.Meta.HTTP, Cluster: mem.Meta.Cluster, Status: string(mem.Status),
		})
		if mem.Meta.Role == gossip.RoleMaster {
			byID[mem.Meta.ID] = mem
		}
	}
	if id, addr := a.m.store.Leader(); id != "" {
		view.Leader = &api.LeaderInfo{ID: id, Address: addr, HTTP: a.leaderHTTP()}
	}
	servers, err := a.m.store.Servers()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	view.Masters = make([]api.MasterInfo, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		mi := api.MasterInfo{ID: s.ID, Address: s.Address, Voter: s.Voter, Gossip: "unknown"}
		if mem, ok := byID[s.ID]; ok {
			mi.HTTP, mi.Gossip = mem.Meta.HTTP, string(mem.Status)
		}
		view.Masters[i] = mi
		if s.ID == a.m.id {
			self := view.Self
			view.Masters[i].HTTP = a.m.HTTPAddr()
			view.Masters[i].State, view.Masters[i].LastIndex, view.Masters[i].AppliedIndex = self.State, self.LastIndex, self.AppliedIndex
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.fillRemote(r.Context(), &view.Masters[i])
		}()
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, view)
}

// fillRemote asks another master for its own raft view.
func (a *apiHandler) fillRemote(ctx context.Context, mi *api.MasterInfo) {
	mi.State = "unreachable"
	if mi.HTTP == "" {
		mi.Error = "no HTTP address known through gossip"
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.m.tls.Scheme()+"://"+mi.HTTP+"/v1/cluster/self", nil)
	if err != nil {
		mi.Error = err.Error()
		return
	}
	resp, err := a.m.peers.Do(req)
	if err != nil {
		mi.Error = err.Error()
		return
	}
	defer resp.Body.Close()
	var s api.SelfInfo
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		mi.Error = fmt.Sprintf("bad answer: %v", err)
		return
	}
	mi.State, mi.LastIndex, mi.AppliedIndex = s.State, s.LastIndex, s.AppliedIndex
}

func (a *apiHandler) removeMaster(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == a.m.id {
		writeError(w, http.StatusConflict, fmt.Sprintf("master %s leads; to remove it, stop it (it leaves gracefully) or DELETE /v2/leader first", id))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := a.m.RemoveMaster(ctx, id)
	switch {
	case errors.Is(err, ErrNoSuchMaster):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, raft.ErrNotLeader):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"removed": id})
	}
}

// getLeaderMarathon is Marathon's GET /v2/leader: {"leader": "host:port"} of the leader's API.
func (a *apiHandler) getLeaderMarathon(w http.ResponseWriter, r *http.Request) {
	leader := a.leaderHTTP()
	if leader == "" {
		writeError(w, http.StatusNotFound, "there is no leader")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": leader})
}

// abdicate is Marathon's DELETE /v2/leader: the leader hands leadership to another master — one
// whose clock agrees with the others' when some master's does not (master/clockcheck), else the one
// raft picks — or with ?to=ID to the voting master of that id (GET /v1/cluster lists them),
// once it has caught up. It answers when the other master leads.
func (a *apiHandler) abdicate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("to") {
		if err := a.m.clockGuard.TransferLeadership(); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("could not hand over leadership: %v", err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"message": "Leadership abdicated"})
		return
	}
	to := q.Get("to")
	if to == a.m.id {
		writeJSON(w, http.StatusOK, map[string]string{"message": "master " + to + " leads already", "leader": to})
		return
	}
	servers, err := a.m.store.Servers()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	addr := ""
	for _, sv := range servers {
		if sv.ID == to && sv.Voter {
			addr = sv.Address
		}
	}
	if to == "" || addr == "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("to: no voting master %q in the cluster (GET /v1/cluster lists the masters)", to))
		return
	}
	if err := a.m.store.LeadershipTransferTo(to, addr); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("could not hand over leadership to %s: %v", to, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "Leadership abdicated", "leader": to})
}
