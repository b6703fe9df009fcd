package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agora-sched/agora/master/clockcheck"
	"github.com/agora-sched/agora/master/discovery"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/httpmetrics"
	"github.com/agora-sched/agora/pkg/tlsconf"
	"github.com/agora-sched/agora/raft"
)

// Cluster is the master whose cluster endpoints a Server answers: its parts, as the master
// (package master) composes them. Every field is required.
type Cluster struct {
	ID        string        // this master's raft server id
	ClusterID func() string // the cluster's id, "" until this master knows it
	Store     *raft.Store
	Gossip    *gossip.Gossip
	Scheduler *scheduler.Scheduler
	Secrets   *secrets.Store
	Clock     *clockcheck.Guard
	// WallClock is the clock this master decides with (master.Config.Clock): GET
	// /v1/cluster/self tells the other masters' clock checks its time.
	WallClock clock.Clock
	// RemoveMaster takes a master out of the raft configuration; it fails with an error that
	// wraps ErrNoSuchMaster when no master has that id.
	RemoveMaster func(ctx context.Context, id string) error
	Guard        *auth.Guard          // who may call what (NewGuard)
	Requests     *httpmetrics.Metrics // the API's request durations
	Metrics      *prometheus.Registry // served at GET /metrics
	// TLS, when set, makes calls to other masters and agents TLS ones; Transport and Peers
	// (Transport with a short timeout, for other masters' raft state) make them.
	TLS           *tlsconf.TLS
	Transport     *http.Transport
	Peers         *http.Client
	ClusterSecret string // shown to agents (task logs), "" when there is none
	// DiscoveryView, when set, is the service-discovery view GET /v1/discovery/view hands the
	// other masters: built now on the leader, discovery.ErrNotLeader elsewhere.
	DiscoveryView func() (*discovery.View, error)
	// Services answers GET /v1/services (nil: 404).
	Services Services
}

// Services is where GET /v1/services reads: the document of this master's service-discovery
// view, refreshed first if nobody kept it fresh (nil when there is none: no leader answers),
// with a channel closed when the services next change; FollowServices keeps the view fresh for
// a stream until it calls release.
type Services interface {
	Services(ctx context.Context) (*api.Services, <-chan struct{})
	FollowServices() (release func())
}

// ErrNoSuchMaster: no master with that id is in the raft configuration.
var ErrNoSuchMaster = errors.New("master: no such master")

// cluster is Cluster as the handlers use it, with the address this server listens on.
type cluster struct {
	id            string
	clusterID     func() string
	store         *raft.Store
	gossip        *gossip.Gossip
	sched         *scheduler.Scheduler
	secrets       *secrets.Store
	clockGuard    *clockcheck.Guard
	wallClock     clock.Clock
	removeMaster  func(ctx context.Context, id string) error
	guard         *auth.Guard
	httpMetrics   *httpmetrics.Metrics
	metrics       *prometheus.Registry
	tls           *tlsconf.TLS
	tr            *http.Transport
	peers         *http.Client
	clusterSecret string
	discoveryView func() (*discovery.View, error)
	services      Services
	httpAddr      string
}

func newCluster(c *Cluster, httpAddr string) *cluster {
	if c == nil {
		return nil
	}
	return &cluster{
		id: c.ID, clusterID: c.ClusterID, store: c.Store, gossip: c.Gossip, sched: c.Scheduler, secrets: c.Secrets, clockGuard: c.Clock,
		wallClock: c.WallClock, removeMaster: c.RemoveMaster, guard: c.Guard, httpMetrics: c.Requests, metrics: c.Metrics,
		tls: c.TLS, tr: c.Transport, peers: c.Peers, clusterSecret: c.ClusterSecret, discoveryView: c.DiscoveryView, services: c.Services, httpAddr: httpAddr,
	}
}

// ClusterID is the id of the cluster this master belongs to ("" until it knows).
func (m *cluster) ClusterID() string { return m.clusterID() }

// HTTPAddr is the address the API listens on.
func (m *cluster) HTTPAddr() string { return m.httpAddr }

// RaftAddr is the raft address.
func (m *cluster) RaftAddr() string { return m.store.Addr() }

// GossipAddr is the address the gossip layer listens on.
func (m *cluster) GossipAddr() string { return m.gossip.LocalAddr() }

// RemoveMaster takes a master out of the raft configuration (leader only).
func (m *cluster) RemoveMaster(ctx context.Context, id string) error { return m.removeMaster(ctx, id) }

// transport is the HTTP transport to other nodes, with this master's TLS when it has one.
func (m *cluster) transport() *http.Transport { return m.tr }

// metricsHandler serves the registry in Prometheus's text format.
func (m *cluster) metricsHandler() http.Handler {
	return promhttp.HandlerFor(m.metrics, promhttp.HandlerOpts{})
}
