package api

import (
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// AgentRegistration is what an agent sends to POST /v1/agents/register. A new agent leaves ID
// empty and gets one; an agent registering again (a restart, a new leader) sends its own.
type AgentRegistration struct {
	ID         string              `json:"id,omitempty"`
	Hostname   string              `json:"hostname"`
	HTTP       string              `json:"http"` // the agent's API, host:port
	Resources  resources.Resources `json:"resources"`
	Attributes map[string]string   `json:"attributes,omitempty"`
	// Tasks are the agent's tasks that have not ended or whose last update is not acknowledged
	// yet, with what they were launched with and their latest states, so that a new leader
	// learns them (and what they hold) at once.
	Tasks []Task `json:"tasks,omitempty"`
}

// HeaderAgentID names, on a master's call to an agent, the agent id the master means. An agent
// of another id (one that replaced it at its address) answers 421 Misdirected Request, so that a
// launch meant for a superseded agent never runs on its successor unknown to the masters.
const HeaderAgentID = "X-Agora-Agent-Id"

// Agent is one agent of the registry, as GET /v1/agents lists it.
type Agent struct {
	ID               string              `json:"id"`
	Hostname         string              `json:"hostname"`
	HTTP             string              `json:"http"`
	Resources        resources.Resources `json:"resources"`
	Attributes       map[string]string   `json:"attributes,omitempty"`
	RegisteredAt     time.Time           `json:"registered_at"`
	LastRegisteredAt time.Time           `json:"last_registered_at"` // when its registration last changed
	// RemovedAt is set when the master gave the agent up (unreachable for longer than
	// --agent-removal-timeout): its tasks were declared gone, so if it comes back, they are
	// killed.
	RemovedAt *time.Time `json:"removed_at,omitempty"`
	// DrainingSince is set while an operator has the agent drained (POST
	// /v1/agents/{id}/drain): it gets no offers and its tasks were killed, until it is
	// reactivated.
	DrainingSince *time.Time `json:"draining_since,omitempty"`
}

// AgentView is an agent as GET /v1/agents shows it: the registry's record, and where it stands
// with the leader (empty when no leader answered).
type AgentView struct {
	Agent
	// State is active, unavailable (registered, but it takes no tasks now: Unavailable says
	// why), unreachable, recovered (known, not registered with this leader yet), draining or
	// removed.
	State string `json:"state,omitempty"`
	// Unavailable is why the agent takes no tasks now (its container runtime does not answer);
	// it gets no offers meanwhile, and its tasks keep their states.
	Unavailable string              `json:"unavailable,omitempty"`
	Used        resources.Resources `json:"used"`  // held by its tasks that have not ended
	Tasks       int                 `json:"tasks"` // its tasks that have not ended
}

// FieldError says which field of a request is wrong; its text names the field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
