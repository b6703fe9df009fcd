package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
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

// agentViews joins the registry with the leader's view, when this master leads.
func (a *apiHandler) agentViews(agents []api.Agent) []api.AgentView {
	return a.m.sched.AgentViews(agents)
}

// taskView is state.go's name for a task of the leader's table.
type taskView = scheduler.TaskView

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
	tasks, err := a.m.sched.TasksView()
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
		killed := a.m.sched.SetDraining(ag)
		a.logger.Info(map[bool]string{true: "agent drained", false: "agent reactivated"}[drain], "agent", id, "tasks_killed", killed)
		writeJSON(w, http.StatusOK, a.agentViews([]api.Agent{ag})[0])
	}
}

func writeOperatorError(w http.ResponseWriter, taskID string, err error) {
	switch {
	case errors.Is(err, scheduler.ErrNoTask):
		writeError(w, http.StatusNotFound, "no task "+taskID+" is known to the leader")
	case errors.Is(err, scheduler.ErrTaskEnded):
		writeError(w, http.StatusConflict, "task "+taskID+" has ended already")
	case errors.Is(err, scheduler.ErrNoAgent):
		writeError(w, http.StatusNotFound, "the agent of task "+taskID+" is not known any more")
	default:
		writeSchedulerError(w, err)
	}
}

func (a *apiHandler) getTask(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, ag, err := a.m.sched.TaskAt(id)
	if err != nil && !errors.Is(err, scheduler.ErrNoAgent) {
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
	if err := a.m.sched.OperatorKill(id, grace); err != nil {
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
	_, ag, err := a.m.sched.TaskAt(id)
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
