package api

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// The scheduler API: what a framework sends the leader (Call) and what the leader sends it
// (Event). It is shaped after Mesos's v1 scheduler API, with plain strings for ids. Over HTTP,
// every call is a POST to /api/v1/scheduler; SUBSCRIBE answers with a stream of events (see
// master/httpapi/scheduler.go for the framing); embedded frameworks use the same shapes in-process.

// FrameworkInfo describes a framework. A new framework leaves ID empty and gets one in its
// SUBSCRIBED event; to fail over, it subscribes again with that ID.
type FrameworkInfo struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// Role is the role the framework's resources count against in DRF; default "*".
	Role string `json:"role,omitempty"`
	// FailoverTimeout is how many seconds the master keeps the framework's tasks running after
	// it disconnects; past it, they are killed and the framework is removed. 0 (the default, as
	// in Mesos): at once.
	FailoverTimeout float64 `json:"failover_timeout,omitempty"`
	// Capabilities: PARTITION_AWARE (tasks of lost agents end as TASK_GONE rather than
	// TASK_LOST, as in Mesos).
	Capabilities []string          `json:"capabilities,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	// Principal is who registered the framework, as in Mesos: the master sets it from the
	// caller's token name ("anonymous" on an open API, "agora:embedded" for the frameworks
	// built into the master), and only that principal may subscribe again with the id or call
	// for the framework. A SUBSCRIBE may leave it out or name its caller's own.
	Principal    string    `json:"principal,omitempty"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
}

// CapabilityPartitionAware is Mesos's PARTITION_AWARE framework capability.
const CapabilityPartitionAware = "PARTITION_AWARE"

// DefaultRole is the role of a framework that names none.
const DefaultRole = "*"

// ValidateRole applies Mesos's rules for role names: at most 100 characters of letters, digits,
// '-', '_' and '.', not "." or "..", not starting with '-'.
func ValidateRole(r string) error {
	switch {
	case len(r) > 100:
		return fmt.Errorf("%.20q...: longer than 100 characters", r)
	case r == "." || r == ".." || strings.HasPrefix(r, "-"):
		return fmt.Errorf("%q is not a role name", r)
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// CallType names a call.
type CallType string

// The calls a framework makes.
const (
	CallSubscribe   CallType = "SUBSCRIBE"
	CallTeardown    CallType = "TEARDOWN"
	CallAccept      CallType = "ACCEPT"
	CallDecline     CallType = "DECLINE"
	CallRevive      CallType = "REVIVE"
	CallSuppress    CallType = "SUPPRESS"
	CallKill        CallType = "KILL"
	CallAcknowledge CallType = "ACKNOWLEDGE"
	CallReconcile   CallType = "RECONCILE"
)

// Call is one call of a framework: Type says which of the fields below it carries.
type Call struct {
	FrameworkID string     `json:"framework_id,omitempty"` // every call but a first SUBSCRIBE
	Type        CallType   `json:"type"`
	Subscribe   *Subscribe `json:"subscribe,omitempty"`
	Accept      *Accept    `json:"accept,omitempty"`
	Decline     *Decline   `json:"decline,omitempty"`
	Kill        *KillTask  `json:"kill,omitempty"`
	Acknowledge *AckUpdate `json:"acknowledge,omitempty"`
	Reconcile   *Reconcile `json:"reconcile,omitempty"`
}

// Subscribe registers a framework, or re-registers one with its ID.
type Subscribe struct {
	FrameworkInfo FrameworkInfo `json:"framework_info"`
}

// Filters come with a decline, or with the unused part of an accepted offer.
type Filters struct {
	// RefuseSeconds keeps the declined resources of the agent from this framework that long
	// (default 5): no offer of a subset of them is made to it meanwhile; a larger one is.
	RefuseSeconds *float64 `json:"refuse_seconds,omitempty"`
}

// Accept uses offers (all of one agent): their resources go to the operations, the rest is
// declined with Filters.
type Accept struct {
	OfferIDs   []string    `json:"offer_ids"`
	Operations []Operation `json:"operations"`
	Filters    *Filters    `json:"filters,omitempty"`
}

// OperationType names an operation of an Accept.
type OperationType string

// The operations.
const (
	OperationLaunch OperationType = "LAUNCH"
	OperationKill   OperationType = "KILL"
)

// Operation is one thing to do with accepted offers.
type Operation struct {
	Type      OperationType   `json:"type"`
	Launch    *Launch         `json:"launch,omitempty"`
	Kill      *KillTask       `json:"kill,omitempty"`
	Reserve   *Reserve        `json:"reserve,omitempty"`
	Unreserve *Reserve        `json:"unreserve,omitempty"`
	Create    *CreateVolumes  `json:"create,omitempty"`
	Destroy   *DestroyVolumes `json:"destroy,omitempty"`
}

// Launch starts tasks on the offers' agent; their resources must fit in the offers.
type Launch struct {
	TaskInfos []TaskInfo `json:"task_infos"`
}

// Decline gives offers back.
type Decline struct {
	OfferIDs []string `json:"offer_ids"`
	Filters  *Filters `json:"filters,omitempty"`
}

// KillTask kills one of the framework's tasks.
type KillTask struct {
	TaskID  string `json:"task_id"`
	AgentID string `json:"agent_id,omitempty"`
	// GracePeriodSeconds overrides the task's own grace between SIGTERM and SIGKILL.
	GracePeriodSeconds float64 `json:"grace_period_seconds,omitempty"`
}

// AckUpdate acknowledges a status update that carried a uuid.
type AckUpdate struct {
	AgentID string `json:"agent_id"`
	TaskID  string `json:"task_id"`
	UUID    string `json:"uuid"`
}

// Reconcile asks for the latest state of the given tasks, or of every task of the framework
// when Tasks is empty (implicit reconciliation). Answers come as UPDATE events without uuid.
type Reconcile struct {
	Tasks []ReconcileTask `json:"tasks,omitempty"`
}

// ReconcileTask names one task to reconcile.
type ReconcileTask struct {
	TaskID  string `json:"task_id"`
	AgentID string `json:"agent_id,omitempty"`
}

// EventType names an event.
type EventType string

// The events a framework receives.
const (
	EventSubscribed EventType = "SUBSCRIBED"
	EventOffers     EventType = "OFFERS"
	EventRescind    EventType = "RESCIND"
	EventUpdate     EventType = "UPDATE"
	EventFailure    EventType = "FAILURE" // an agent was lost for good
	EventError      EventType = "ERROR"   // the master ends the subscription
	EventHeartbeat  EventType = "HEARTBEAT"
)

// Event is one event for a framework: Type says which of the fields below it carries.
type Event struct {
	Type       EventType   `json:"type"`
	Subscribed *Subscribed `json:"subscribed,omitempty"`
	Offers     *Offers     `json:"offers,omitempty"`
	Rescind    *Rescind    `json:"rescind,omitempty"`
	Update     *Update     `json:"update,omitempty"`
	Failure    *Failure    `json:"failure,omitempty"`
	Error      *ErrorInfo  `json:"error,omitempty"`
}

// Subscribed answers SUBSCRIBE.
type Subscribed struct {
	FrameworkID              string  `json:"framework_id"`
	HeartbeatIntervalSeconds float64 `json:"heartbeat_interval_seconds"`
	// Reregistered is true when the framework was known (a failover, or a new leader).
	Reregistered bool   `json:"reregistered"`
	MasterID     string `json:"master_id"`
}

// Offers carries new offers.
type Offers struct {
	Offers []Offer `json:"offers"`
}

// Offer is free resources of one agent, for one framework, until it is used, declined,
// rescinded or times out.
type Offer struct {
	ID          string              `json:"id"`
	FrameworkID string              `json:"framework_id"`
	AgentID     string              `json:"agent_id"`
	Hostname    string              `json:"hostname"`
	Resources   resources.Resources `json:"resources"`
	Attributes  map[string]string   `json:"attributes,omitempty"`
	// Reserved is the part of Resources reserved for the framework's role on this agent (in
	// it, the disk no volume holds); Volumes are the role's persistent volumes there that no
	// task uses, ready to mount, their disk not in Resources.
	Reserved resources.Resources `json:"reserved,omitzero"`
	Volumes  []PersistentVolume  `json:"volumes,omitempty"`
}

// Rescind takes an offer back.
type Rescind struct {
	OfferID string `json:"offer_id"`
}

// Update is a task's status update. One with a UUID must be acknowledged (ACKNOWLEDGE) and is
// resent until it is; the master's own (reconciliation, lost agents, invalid launches) have none.
type Update struct {
	Status TaskStatus `json:"status"`
}

// Failure says an agent was removed: its tasks have ended as TASK_GONE or TASK_LOST.
type Failure struct {
	AgentID string `json:"agent_id"`
}

// ErrorInfo ends a subscription, saying why.
type ErrorInfo struct {
	Message string `json:"message"`
}

// FrameworkState is GET /v1/frameworks and part of GET /v1/state: the frameworks the leader knows.
type FrameworkState struct {
	Info      FrameworkInfo       `json:"info"`
	Connected bool                `json:"connected"`
	Active    bool                `json:"active"` // wants offers (connected and not suppressed)
	Allocated resources.Resources `json:"allocated"`
	Offered   resources.Resources `json:"offered"`
	Share     float64             `json:"dominant_share"`
	Tasks     int                 `json:"tasks"` // not ended
	// DisconnectedAt and FailoverDeadline are set while it is disconnected.
	DisconnectedAt   *time.Time `json:"disconnected_at,omitempty"`
	FailoverDeadline *time.Time `json:"failover_deadline,omitempty"`
}

// Session is one subscription of a framework to the scheduler, as the framework sees it: the
// events for it, and its calls. master/scheduler's Session is the in-process one the embedded
// frameworks get (frameworks.Host); over HTTP the same contract is POST /api/v1/scheduler, a
// stream of events and a POST per call. It is safe for concurrent use.
type Session interface {
	// FrameworkID is the framework's id: the one it subscribed with, or the one the master gave
	// it.
	FrameworkID() string
	// Events delivers the events, buffer of them queued ahead, until ctx ends; when the
	// subscription ends (the master says why in an ERROR event first), why comes on the second
	// channel.
	Events(ctx context.Context, buffer int) (<-chan Event, <-chan error)
	// Call makes a call (ACCEPT, DECLINE, KILL, RECONCILE, REVIVE, SUPPRESS, ...); Accept,
	// Decline and Acknowledge are the frequent ones spelled out.
	Call(c Call) error
	Accept(offerIDs []string, ops []Operation, f *Filters) error
	Decline(offerIDs []string, f *Filters) error
	Acknowledge(st TaskStatus) error
	// Close ends the subscription: the framework is disconnected, its tasks kept for its
	// failover timeout.
	Close()
}
