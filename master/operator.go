package master

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// The operator's endpoints on tasks and agents. The leader answers them (its memory holds the
// task table and where each agent stands); other masters forward.
//
//	GET  /v1/agents/{id}              one agent, with its state, what its tasks use, and its tasks
//	POST /v1/agents/{id}/drain        no more offers for it; its tasks are killed (frameworks
//	                                  get TASK_KILLED and place them elsewhere)
//	POST /v1/agents/{id}/reactivate   offered again
//	GET  /v1/tasks/{id}               a task's latest status and its agent
//	POST /v1/tasks/{id}/kill          kill a task on its agent ({"grace_period_seconds"} optional)
//	GET  /v1/tasks/{id}/logs          the task's stdout or stderr, from its agent (the agent's
//	                                  query: stream, offset, length, follow)

// errNoTask and errTaskEnded are the operator's misses: 404 and 409.
var (
	errNoTask    = errors.New("no such task")
	errTaskEnded = errors.New("the task has ended")
	errNoAgent   = errors.New("no such agent")
)

// agentLoad is what an agent's tasks hold, counted by the leader.
type agentLoad struct {
	state       string
	unavailable string
	used        resources.Resources
	tasks       int
}

// agentsLoad is every agent the leader knows: its state and its live tasks' resources.
func (s *scheduler) agentsLoad() (map[string]agentLoad, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make(map[string]agentLoad, len(t.agents))
	for id, e := range t.agents {
		l := agentLoad{state: e.state.String(), unavailable: e.unavailable}
		switch {
		case e.info.DrainingSince != nil && e.state == agentActive:
			l.state = "draining"
		case e.unavailable != "" && e.state == agentActive:
			l.state = "unavailable"
		}
		if e.info.RemovedAt != nil {
			l.state = "removed"
		}
		for _, te := range t.byAgent[id] {
			if te.status.State.IsTerminal() {
				continue
			}
			l.tasks++
			l.used = l.used.Add(te.info.Resources)
		}
		out[id] = l
	}
	return out, nil
}

// agentViews joins the registry with the leader's view, when this master leads.
func (a *apiHandler) agentViews(agents []api.Agent) []api.AgentView { return a.m.agentViews(agents) }

// agentViews joins the registry with the leader's view, when this master leads.
func (m *Master) agentViews(agents []api.Agent) []api.AgentView {
	out := make([]api.AgentView, len(agents))
	load, _ := m.sched.agentsLoad() // nil off the leader: registry only
	for i, ag := range agents {
		out[i] = api.AgentView{Agent: ag}
		if l, ok := load[ag.ID]; ok {
			out[i].State, out[i].Unavailable, out[i].Used, out[i].Tasks = l.state, l.unavailable, l.used, l.tasks
		} else if ag.RemovedAt != nil {
			out[i].State = "removed"
		}
	}
	return out
}

// onLeader is h answered by the leader, whose memory it reads: any other master forwards the
// request to it, as it does writes. A read is answered once the leader has confirmed it still
// leads, unless it asks ?stale (readFresh).
func (a *apiHandler) onLeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.m.store.IsLeader() {
			a.forward(w, r)
			return
		}
		if !isWrite(r.Method) && !a.readFresh(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *apiHandler) getAgent(w http.ResponseWriter, r *http.Request) {
	ag, ok := a.m.agent(r.Context(), r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no agent "+r.PathValue("id"))
		return
	}
	tasks, err := a.m.sched.tasksView()
	if err != nil {
		writeSchedulerError(w, err)
		return
	}
	var its []api.TaskStatus
	for _, t := range tasks {
		if t.AgentID == ag.ID {
			its = append(its, t)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		api.AgentView
		TaskList []api.TaskStatus `json:"task_list"`
	}{a.agentViews([]api.Agent{ag})[0], its})
}

// drainAgent is POST /v1/agents/{id}/drain and /reactivate: the mark is committed through raft
// (a new leader keeps the agent drained), then the leader acts on it.
func (a *apiHandler) drainAgent(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, ok := a.m.agent(r.Context(), id); !ok {
			writeError(w, http.StatusNotFound, "no agent "+id)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		ag, err := registry.DrainAgent(ctx, a.m.store, id, drain)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		killed := a.m.sched.setDraining(ag)
		a.logger.Info(map[bool]string{true: "agent drained", false: "agent reactivated"}[drain], "agent", id, "tasks_killed", killed)
		writeJSON(w, http.StatusOK, a.agentViews([]api.Agent{ag})[0])
	}
}

// setDraining applies an agent's drain mark to the leader's memory: a drained agent's offers
// are rescinded, it gets no more, and its live tasks are killed; a reactivated one is offered
// again. It answers how many tasks it asked the agent to kill.
func (s *scheduler) setDraining(ag api.Agent) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return 0
	}
	e := t.agents[ag.ID]
	if e == nil {
		return 0
	}
	e.info.DrainingSince = ag.DrainingSince
	return s.applyDrainLocked(t, e, s.cfg.Clock.Now())
}

// applyDrainLocked keeps an active agent's standing in the allocator as its drain mark says.
func (s *scheduler) applyDrainLocked(t *schedTerm, e *agentEntry, now time.Time) int {
	if e.state != agentActive || !e.inAlloc {
		return 0
	}
	if e.info.DrainingSince == nil {
		if e.unavailable != "" {
			return 0 // offered again when it takes tasks again (availabilityLocked)
		}
		if err := t.alloc.ActivateAgent(e.info.ID); err != nil {
			s.logger.Error("agent reactivated: allocator", "agent", e.info.ID, "err", err)
		}
		s.poke()
		return 0
	}
	for oid, o := range t.offers {
		if o.offer.AgentID == e.info.ID {
			s.rescindLocked(t, oid, now)
		}
	}
	if err := t.alloc.DeactivateAgent(e.info.ID); err != nil {
		s.logger.Error("agent drained: allocator", "agent", e.info.ID, "err", err)
	}
	killed := 0
	for _, te := range t.byAgent[e.info.ID] {
		if te.status.State.IsTerminal() {
			continue
		}
		killed++
		if te.status.State == task.Staging {
			te.killRequested = true
			continue
		}
		s.killOnAgentLocked(t, e.info, te.info.TaskID, graceOf(te.info))
	}
	return killed
}

func graceOf(ti api.TaskInfo) time.Duration {
	return time.Duration(ti.KillGracePeriodSeconds * float64(time.Second))
}

// taskAt is a task's latest status and the agent it is on.
func (s *scheduler) taskAt(taskID string) (api.TaskStatus, api.Agent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return api.TaskStatus{}, api.Agent{}, ErrNotReady
	}
	e := t.tasks[taskID]
	if e == nil {
		return api.TaskStatus{}, api.Agent{}, errNoTask
	}
	ag := t.agents[e.agentID]
	if ag == nil {
		return e.status, api.Agent{}, errNoAgent
	}
	return e.status, ag.info, nil
}

// operatorKill kills a task for an operator: its framework gets the agent's TASK_KILLED as for
// its own kill (a service framework then replaces it).
func (s *scheduler) operatorKill(taskID string, grace *time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return ErrNotReady
	}
	e := t.tasks[taskID]
	if e == nil {
		return errNoTask
	}
	if e.status.State.IsTerminal() {
		return errTaskEnded
	}
	ag := t.agents[e.agentID]
	if ag == nil || ag.state != agentActive {
		return fmt.Errorf("its agent %s is not reachable: %w", e.agentID, ErrNotReady)
	}
	g := graceOf(e.info)
	if grace != nil {
		g = *grace
	}
	if e.status.State == task.Staging {
		e.killRequested = true
		return nil
	}
	s.killOnAgentLocked(t, ag.info, taskID, g)
	return nil
}

func writeOperatorError(w http.ResponseWriter, taskID string, err error) {
	switch {
	case errors.Is(err, errNoTask):
		writeError(w, http.StatusNotFound, "no task "+taskID+" is known to the leader")
	case errors.Is(err, errTaskEnded):
		writeError(w, http.StatusConflict, "task "+taskID+" has ended already")
	case errors.Is(err, errNoAgent):
		writeError(w, http.StatusNotFound, "the agent of task "+taskID+" is not known any more")
	default:
		writeSchedulerError(w, err)
	}
}

func (a *apiHandler) getTask(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, ag, err := a.m.sched.taskAt(id)
	if err != nil && !errors.Is(err, errNoAgent) {
		writeOperatorError(w, id, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		api.TaskStatus
		Hostname string `json:"hostname,omitempty"`
		AgentAPI string `json:"agent_http,omitempty"`
	}{st, ag.Hostname, ag.HTTP})
}

// killRequest is the optional body of POST /v1/tasks/{id}/kill.
type killRequest struct {
	GracePeriodSeconds *float64 `json:"grace_period_seconds"`
}

func (a *apiHandler) killTask(w http.ResponseWriter, r *http.Request) {
	var req killRequest
	if r.ContentLength != 0 {
		if err := httpjson.Decode(r, &req); err != nil {
			httpjson.DecodeError(w, err)
			return
		}
	}
	var grace *time.Duration
	if g := req.GracePeriodSeconds; g != nil {
		if *g < 0 {
			httpjson.FieldError(w, http.StatusUnprocessableEntity, "grace_period_seconds", "must be ≥ 0")
			return
		}
		d := time.Duration(*g * float64(time.Second))
		grace = &d
	}
	id := r.PathValue("id")
	if err := a.m.sched.operatorKill(id, grace); err != nil {
		writeOperatorError(w, id, err)
		return
	}
	a.logger.Info("task kill requested by an operator", "task", id)
	writeJSON(w, http.StatusAccepted, map[string]string{"task_id": id, "state": string(task.Killing)})
}

// taskLogs passes GET /v1/tasks/{id}/logs on to the task's agent, streaming (follow=true) as
// the agent answers.
func (a *apiHandler) taskLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, ag, err := a.m.sched.taskAt(id)
	if err != nil {
		writeOperatorError(w, id, err)
		return
	}
	if ag.HTTP == "" {
		writeError(w, http.StatusServiceUnavailable, "agent "+ag.ID+" has no API address")
		return
	}
	target := &url.URL{Scheme: a.m.tls.Scheme(), Host: ag.HTTP}
	p := &httputil.ReverseProxy{
		Transport: a.m.transport(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = "/v1/tasks/" + url.PathEscape(id) + "/logs"
			pr.Out.URL.RawPath = ""
			q := pr.Out.URL.Query()
			q.Del("access_token") // the person's token stays here; the agent gets the cluster's
			pr.Out.URL.RawQuery = q.Encode()
			pr.Out.Header.Del("Authorization")
			if a.m.clusterSecret != "" {
				pr.Out.Header.Set("Authorization", "Bearer "+a.m.clusterSecret)
			}
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusBadGateway, fmt.Sprintf("agent %s at %s: %v", ag.ID, ag.HTTP, err))
		},
	}
	p.ServeHTTP(w, r)
}
