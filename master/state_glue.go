package master

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/raft"
)

// What state.go needs of the API, until it moves to master/httpapi in a commit of its own
// (another change edits it meanwhile): the master serves its endpoints as a framework's,
// through HandleLeader.

type apiHandler struct {
	m    *Master
	info Info
}

func (m *Master) serveState() {
	a := &apiHandler{m: m, info: Info{StartedAt: m.startedAt}}
	m.HandleLeader("GET /v1/state", http.HandlerFunc(a.getState))
	for _, p := range []string{"/master/state", "/master/state.json", "/state.json"} {
		m.HandleLeader("GET "+p, http.HandlerFunc(a.getMesosState))
	}
}

type taskView = scheduler.TaskView

func (a *apiHandler) agentViews(agents []api.Agent) []api.AgentView {
	return a.m.sched.AgentViews(agents)
}

func (m *Master) registeredAgents(ctx context.Context) ([]api.Agent, error) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	agents, err := registry.Agents(v)
	if err != nil {
		return nil, fmt.Errorf("master: agent registry: %w", err)
	}
	return agents, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) { httpjson.Write(w, code, v) }

func writeSchedulerError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotReady) {
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeStoreError(w, err)
}

func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded):
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error()+"; retry")
	default:
		httpjson.Error(w, http.StatusInternalServerError, err.Error())
	}
}
