package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/raft"
)

// validateRegistration names the first field of a registration that is wrong.
func validateRegistration(r api.AgentRegistration) error {
	switch {
	case strings.TrimSpace(r.Hostname) == "":
		return &api.FieldError{Field: "hostname", Msg: "is required"}
	case r.HTTP == "":
		return &api.FieldError{Field: "http", Msg: "is required (the agent's API address, host:port)"}
	}
	if r.ID != "" {
		if err := id.AgentID(r.ID).Validate(); err != nil {
			return &api.FieldError{Field: "id", Msg: err.Error()}
		}
	}
	if err := r.Resources.Validate(); err != nil {
		return &api.FieldError{Field: "resources", Msg: err.Error()}
	}
	for i, t := range r.Tasks {
		if err := validateStatus(t.Status); err != nil {
			return &api.FieldError{Field: fmt.Sprintf("tasks[%d].status.%s", i, err.(*api.FieldError).Field), Msg: err.(*api.FieldError).Msg}
		}
		// What a task holds goes to the allocator's books: it must be a valid amount.
		if err := t.Info.Resources.Validate(); err != nil {
			return &api.FieldError{Field: fmt.Sprintf("tasks[%d].info.resources", i), Msg: err.Error()}
		}
		if t.Info.TaskID != t.Status.TaskID {
			return &api.FieldError{Field: fmt.Sprintf("tasks[%d].info.task_id", i), Msg: "differs from its status's task_id"}
		}
	}
	for k := range r.Attributes {
		if k == "" || strings.ContainsAny(k, ":; ") {
			return &api.FieldError{Field: "attributes", Msg: fmt.Sprintf("bad name %q", k)}
		}
	}
	return nil
}

// registerAgent is POST /v1/agents/register on the leader (followers forward it): a new agent
// gets an id; an agent that has one registers again under it.
func (a *apiHandler) registerAgent(w http.ResponseWriter, r *http.Request) {
	var reg api.AgentRegistration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reg); err != nil {
		code := http.StatusBadRequest
		if tooBig := new(http.MaxBytesError); errors.As(err, &tooBig) {
			code = http.StatusRequestEntityTooLarge
		}
		writeError(w, code, fmt.Sprintf("registration: %v", err))
		return
	}
	if err := validateRegistration(reg); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	agentID := reg.ID
	if agentID == "" {
		g, err := id.NewGenerator(rand.Reader)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		agentID = string(g.Agent())
	}
	agent := api.Agent{ID: agentID, Hostname: reg.Hostname, HTTP: reg.HTTP, Resources: reg.Resources, Attributes: reg.Attributes}
	if prev, ok := a.m.agent(r.Context(), agentID); ok && prev.RemovedAt == nil && sameAgent(prev, agent) {
		// Registering again unchanged (a new leader, an agent restart): the registry holds it
		// already, committed; only the leader's memory has to learn its tasks. This keeps a
		// failover with thousands of agents from queueing thousands of raft writes. (No other
		// agent of its host address can be in the registry: its own registration removed them.)
		a.m.sched.AgentsRegistered(scheduler.Registration{Registered: registry.Registered{Agent: prev}, Tasks: reg.Tasks})
		writeJSON(w, http.StatusOK, prev)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	reged, err := registry.RegisterAgent(ctx, a.m.store, agent)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	a.m.sched.AgentsRegistered(scheduler.Registration{Registered: reged, Tasks: reg.Tasks})
	writeJSON(w, http.StatusOK, reged.Agent)
}

// sameAgent says whether a registration changes nothing the registry keeps.
func sameAgent(a, b api.Agent) bool {
	return a.ID == b.ID && a.Hostname == b.Hostname && a.HTTP == b.HTTP && a.Resources.Equal(b.Resources) && maps.Equal(a.Attributes, b.Attributes)
}

// listAgents is GET /v1/agents: the registry with each agent's state and use, from the leader
// (a follower forwards); while no leader is known, the registry as this master has it (see the
// staleness headers), without states.
func (a *apiHandler) listAgents(w http.ResponseWriter, r *http.Request) {
	if !a.m.store.IsLeader() && r.Header.Get(HeaderForwardedBy) == "" && a.leaderHTTP() != "" {
		a.forward(w, r) // the leader knows each agent's state and use; without one, the registry
		return
	}
	agents, err := a.m.registeredAgents(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.agentViews(agents))
}

// agent reads one agent of the registry from this master's copy.
func (m *cluster) agent(ctx context.Context, agentID string) (api.Agent, bool) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return api.Agent{}, false
	}
	return registry.Agent(v, agentID)
}

// registeredAgents reads the agent registry, as this master has it.
func (m *cluster) registeredAgents(ctx context.Context) ([]api.Agent, error) {
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

// writeStoreError maps the store's errors to answers: no leader and unknown outcomes are 503
// (retry), anything else 500.
func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; retry")
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}
