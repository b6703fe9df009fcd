package frameworks

import (
	"context"
	"net/http"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Host is all an embedded framework needs of the node it runs in: a master, whose
// FrameworkHost implements it. The frameworks import no master package; the scheduling itself
// goes through api.Session, the contract an external framework speaks over POST
// /api/v1/scheduler.
type Host interface {
	// Subscribe registers the framework with the leader's scheduler, or again as the framework
	// of info.ID, waiting (until ctx ends) while this node is not a ready leader. Its principal
	// is the embedded one, which no API caller can have.
	Subscribe(ctx context.Context, info api.FrameworkInfo) (api.Session, error)
	// Agents lists the registered agents not removed, from this node's copy of the registry;
	// AgentViews adds where each stands with the leader (its state, why it makes no offers).
	Agents(ctx context.Context) ([]api.Agent, error)
	AgentViews(ctx context.Context) ([]api.AgentView, error)

	// Store is the framework's own namespace of the replicated store: it reads and writes
	// nothing else. Its applier the node was given when it was made (cmd/agora's list of
	// frameworks).
	Store() raft.Namespace

	// Embed, before the node runs, registers the framework as embedded under its name (no API
	// caller may take its framework id) and run as work of the leader: started when the node
	// becomes a leader that has caught up, its ctx ended when it stops leading (and waited
	// for), started again after a pause should it return before.
	Embed(framework string, run func(ctx context.Context) error)
	// HandleLeader adds an endpoint of the framework's API, before the node runs. The leader
	// answers it; other nodes forward the request to the leader. Patterns are net/http's.
	HandleLeader(pattern string, h http.Handler)
	// Metrics registers collectors served with the node's own at GET /metrics.
	Metrics() prometheus.Registerer
	// DescribeServices, before the node runs, gives service discovery what the framework (by
	// its name) says of its services beyond their tasks: labels and service ports, read from
	// the node's copy of the store (so a new leader has them before the framework starts).
	// The leader calls describe each time it reads the view.
	DescribeServices(framework string, describe func(ctx context.Context) ([]api.ServiceInfo, error))

	// Secret reads a secret's value from this node's copy of the store: an error that is
	// api.ErrNoSecret when there is none, another when this node's keys do not open it.
	Secret(ctx context.Context, name string) (string, error)

	// Clock is the wall clock the node decides with. CheckClock says whether it may be trusted
	// for what is due when (the masters compare their clocks), and MaxClockSkew is how far it
	// may be off the other masters' while trusted.
	Clock() clock.Clock
	CheckClock() clock.Verdict
	MaxClockSkew() time.Duration
}
