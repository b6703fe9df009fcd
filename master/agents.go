package master

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

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/raft"
)

// NamespaceAgents is the replicated store's namespace of the agent registry.
const NamespaceAgents = "agents"

// agentsApplier applies the agent registry's commands.
//
//	agent.register: store the api.Agent of the data (a re-registration keeps its first
//	                registration time and clears a removal), and remove every other agent
//	                of the same host address (sameHostAddress): it is superseded; answers a
//	                registered
//	agent.drain:    set or clear the drain mark of an agent (agentDrain); answers the api.Agent
//	agent.remove:   mark the agent whose id is the data as removed (a tombstone: if it comes
//	                back, the tasks it still runs were written off and are killed)
func agentsApplier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "agent.register":
			return applyAgentRegister(tx, cmd)
		case "agent.drain":
			return applyAgentDrain(tx, cmd)
		case "agent.remove":
			old, ok := tx.Get(string(cmd.Data))
			if !ok {
				return nil, nil
			}
			var a api.Agent
			if err := json.Unmarshal(old, &a); err != nil {
				return nil, fmt.Errorf("agents: remove: %w", err)
			}
			at := tx.Time()
			a.RemovedAt = &at
			data, err := json.Marshal(a)
			if err != nil {
				return nil, err
			}
			tx.Put(a.ID, data)
			return nil, nil
		}
		return nil, fmt.Errorf("agents: unknown command %q", cmd.Type)
	})
}

// registered is what agent.register answers.
type registered struct {
	Agent      api.Agent
	WasRemoved bool // the agent had been given up, and now it is back
	// Superseded are the agents of the same host address that this registration removed (in
	// the same command): their process is gone, since the new one serves their address.
	Superseded []api.Agent
}

// sameHostAddress says whether two agents are one agent's place: the same hostname (DNS names
// ignore case) and the same API address. The API address is what the masters reach an agent
// at, and only one process can listen on it, so a new agent registering with it proves that
// the old one no longer serves it — its data dir was lost (Mesos's agent with a lost
// checkpoint, which registers as a new agent). The hostname is part of it because an address
// need not name its host (a wildcard or a port forwarded in a container); the hostname alone
// is not enough: two agents may run on one host with different ports, and are two agents.
func sameHostAddress(a, b api.Agent) bool {
	return a.HTTP == b.HTTP && strings.EqualFold(a.Hostname, b.Hostname)
}

func applyAgentRegister(tx *raft.Txn, cmd raft.Command) (any, error) {
	var a api.Agent
	if err := json.Unmarshal(cmd.Data, &a); err != nil {
		return nil, fmt.Errorf("agents: register: %w", err)
	}
	a.RemovedAt = nil
	wasRemoved := false
	if old, ok := tx.Get(a.ID); ok {
		var prev api.Agent
		if json.Unmarshal(old, &prev) == nil {
			a.RegisteredAt = prev.RegisteredAt
			a.DrainingSince = prev.DrainingSince
			wasRemoved = prev.RemovedAt != nil
		}
	}
	a.LastRegisteredAt = tx.Time()
	if a.RegisteredAt.IsZero() {
		a.RegisteredAt = a.LastRegisteredAt
	}
	var superseded []api.Agent
	var bad error
	tx.List("", func(key string, data []byte) bool {
		if key == a.ID {
			return true
		}
		var other api.Agent
		if bad = json.Unmarshal(data, &other); bad != nil {
			return false
		}
		if other.RemovedAt == nil && sameHostAddress(other, a) {
			superseded = append(superseded, other)
		}
		return true
	})
	if bad != nil {
		return nil, fmt.Errorf("agents: register: %w", bad)
	}
	for i := range superseded {
		at := tx.Time()
		superseded[i].RemovedAt = &at
		data, err := json.Marshal(superseded[i])
		if err != nil {
			return nil, err
		}
		tx.Put(superseded[i].ID, data)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	tx.Put(a.ID, data)
	return registered{Agent: a, WasRemoved: wasRemoved, Superseded: superseded}, nil
}

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
		a.m.sched.agentRegistered(prev, reg.Tasks, false, nil)
		writeJSON(w, http.StatusOK, prev)
		return
	}
	data, err := json.Marshal(agent)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	res, err := a.m.store.Apply(ctx, raft.Command{Namespace: NamespaceAgents, Type: "agent.register", Data: data})
	if err != nil {
		writeStoreError(w, err)
		return
	}
	reged := res.Value.(registered)
	a.m.sched.agentRegistered(reged.Agent, reg.Tasks, reged.WasRemoved, reged.Superseded)
	writeJSON(w, http.StatusOK, reged.Agent)
}

// sameAgent says whether a registration changes nothing the registry keeps.
func sameAgent(a, b api.Agent) bool {
	return a.ID == b.ID && a.Hostname == b.Hostname && a.HTTP == b.HTTP && a.Resources.Equal(b.Resources) && maps.Equal(a.Attributes, b.Attributes)
}

// agent reads one agent of the registry from this master's copy.
func (m *Master) agent(ctx context.Context, agentID string) (api.Agent, bool) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return api.Agent{}, false
	}
	data, ok := v.Get(NamespaceAgents, agentID)
	if !ok {
		return api.Agent{}, false
	}
	var ag api.Agent
	if json.Unmarshal(data, &ag) != nil {
		return api.Agent{}, false
	}
	return ag, true
}

// Agents lists the agents of the registry that have not been removed, from this master's copy:
// frameworks check with it that some agent could ever run what they accept.
func (m *Master) Agents(ctx context.Context) ([]api.Agent, error) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	var out []api.Agent
	var bad error
	v.List(NamespaceAgents, "", func(_ string, data []byte) bool {
		var ag api.Agent
		if bad = json.Unmarshal(data, &ag); bad != nil {
			return false
		}
		if ag.RemovedAt == nil {
			out = append(out, ag)
		}
		return true
	})
	return out, bad
}

// AgentViews is Agents with where each stands with this master while it leads (its state, why
// it is unavailable, its use; elsewhere the registry's records only): frameworks say with it
// which agents make no offers, and why.
func (m *Master) AgentViews(ctx context.Context) ([]api.AgentView, error) {
	agents, err := m.Agents(ctx)
	if err != nil {
		return nil, err
	}
	return m.agentViews(agents), nil
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

// registeredAgents reads the agent registry, as this master has it.
func (m *Master) registeredAgents(ctx context.Context) ([]api.Agent, error) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	agents := []api.Agent{}
	var bad error
	v.List(NamespaceAgents, "", func(_ string, data []byte) bool {
		var ag api.Agent
		if err := json.Unmarshal(data, &ag); err != nil {
			bad = fmt.Errorf("master: agent registry: %w", err)
			return false
		}
		agents = append(agents, ag)
		return true
	})
	return agents, bad
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
