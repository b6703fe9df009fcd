package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/master/clockcheck"
	"github.com/agora-sched/agora/master/discovery"
	"github.com/agora-sched/agora/master/dnsserver"
	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/master/quota"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/reservation"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/faultnet"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/httpmetrics"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/pkg/tlsconf"
	"github.com/agora-sched/agora/raft"
)

// Config configures a Master.
type Config struct {
	// DNS, when DNS.Addr is set (--dns), serves the cluster's names over DNS from this master's
	// service-discovery view (master/discovery, master/dnsserver).
	DNS DNSConfig
	// DataDir holds node-id, cluster-id and raft/ (the log, the stable store and snapshots).
	DataDir string
	// RaftAddr is the raft TCP address (--bind); GossipAddr the memberlist address, TCP and UDP
	// (--gossip, default the raft port + 1); HTTPAddr the API (--http).
	RaftAddr, GossipAddr, HTTPAddr string
	// Join lists gossip addresses of masters (or agents) already running.
	Join []string
	// BootstrapExpect is how many masters found a new cluster together: each waits until it
	// sees that many through gossip, then all bootstrap with the same list. 0 or 1 without
	// Join: bootstrap alone. 0 with Join: join the existing cluster.
	BootstrapExpect int
	// Role is "master" or "dev" in /v1/info.
	Role   string
	Logger *slog.Logger
	// Appliers of the namespaces other packages keep in the replicated store.
	Appliers map[string]raft.Applier
	// Timing and GossipTiming default to what ships; tests on loopback may shorten them.
	Timing       raft.Timing
	GossipTiming gossip.Timing
	// Info is extra to show in /v1/info (the containerd of a dev node).
	Info Info
	// Scheduler tunes offers, timeouts and how agents are reached.
	Scheduler SchedulerConfig
	// Tokens are the API's tokens with their roles (pkg/auth); none: the API is open. SetTokens
	// replaces them while the master runs.
	Tokens *auth.Tokens
	// ClusterSecret, when set, is what agents must show to register and report, what this
	// master shows agents, and the key of gossip's encryption.
	ClusterSecret string
	// ViewersReadLogs lets viewers' tokens read task logs (--viewers-read-logs); without it
	// logs need an operator, and viewers see tasks' metadata only.
	ViewersReadLogs bool
	// TLS, when set, serves the API over TLS, carries raft over mutual TLS, and makes every
	// call to agents and other masters a TLS one (pkg/tlsconf).
	TLS *tlsconf.TLS
	// Faults, when set, can cut this master off the other nodes (the chaos harness's
	// partitions; pkg/faultnet).
	Faults *faultnet.Switch
	// SecretsKeyring seals secrets' values before they are proposed (pkg/keyring): its first
	// key encrypts, every key decrypts. Every master of a cluster needs the same keys. Nil: the
	// keyring in DataDir/LocalKeyringFile, made with one random key on first start.
	SecretsKeyring *keyring.Keyring
	// Clock is the wall clock this master, its scheduler, its store's command times and the
	// frameworks it hosts decide with (default: the system's). The chaos harness shifts it.
	Clock clock.Clock
	// MaxClockSkew is how far this master's clock may be off a majority of the masters' before
	// it fires no cron run and, leading, hands leadership over (master/clockcheck). Default
	// DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// Master is one master of an Agora cluster: a raft server of the replicated store, a gossip
// member, and the HTTP API.
type Master struct {
	cfg        Config
	logger     *slog.Logger
	id         string
	store      *raft.Store
	gossip     *gossip.Gossip
	http       *httpapi.Server // the API (master/httpapi)
	leadership *leadership
	startedAt  time.Time
	sched      *scheduler.Scheduler // the leader's two-level scheduling (master/scheduler)
	registry   *prometheus.Registry // served at /metrics

	guard *auth.Guard     // who may call what on the API
	tr    *http.Transport // to other masters and agents (with Config.TLS when it is set)
	peers *http.Client    // tr with a short timeout, for other masters' raft state

	raftCommit  prometheus.Histogram // agora_raft_commit_seconds, fed by the store
	httpMetrics *httpmetrics.Metrics // the API's request durations

	secrets    *secrets.Store    // seals, keeps and opens secrets (master/secrets)
	clockGuard *clockcheck.Guard // compares this master's clock with the others'

	dns      *dnsserver.Server // nil without Config.DNS.Addr
	keeper   *discovery.Keeper // the service-discovery view the DNS server and GET /v1/services answer from
	feed     *discovery.Feed   // GET /v1/services of the keeper's view
	resolver hostResolver      // names of agents and masters, for the view

	servicesStreams atomic.Int32 // GET /v1/services streams open (viewRead)
	servicesReadAt  atomic.Int64 // the last read of GET /v1/services, unix nanoseconds

	describeMu sync.Mutex // guards describers and described
	describers map[string]func(context.Context) ([]api.ServiceInfo, error)
	described  map[string][]api.ServiceInfo // what each said last

	mu        sync.Mutex // guards clusterID
	clusterID string
}

// New opens the data dir and binds every port (raft, gossip, HTTP), so that a port in use or
// a damaged data dir fails here with one clear error. Run starts the work. New wires the parts
// (package doc): the store with the registries' and secrets' namespaces, the gossip pool, the
// clock guard, the scheduler and the API, and registers the leader services.
func New(cfg Config) (*Master, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	id, clusterID, err := openDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("master", id)
	m := &Master{cfg: cfg, logger: logger, id: id, clusterID: clusterID, startedAt: time.Now().UTC()}
	m.leadership = &leadership{logger: logger.With("component", "leadership"), stopTimeout: 30 * time.Second}
	keys := cfg.SecretsKeyring
	if keys == nil {
		if keys, err = secrets.LocalKeyring(cfg.DataDir, logger); err != nil {
			return nil, err
		}
	}
	m.newRegistry()
	m.tr = http.DefaultTransport.(*http.Transport).Clone()
	m.tr.TLSClientConfig = cfg.TLS.Client()
	if cfg.Faults != nil {
		m.tr.DialContext = cfg.Faults.DialContext
	}
	m.peers = &http.Client{Timeout: 500 * time.Millisecond, Transport: m.tr}
	m.guard = httpapi.NewGuard(cfg.ClusterSecret, cfg.ViewersReadLogs)
	m.guard.SetTokens(cfg.Tokens)
	if err := m.openStore(); err != nil {
		return nil, err
	}
	m.secrets = secrets.New(m.store, keys, logger)
	if err := m.joinGossip(); err != nil {
		m.store.Close()
		return nil, err
	}
	if err := m.startDiscovery(); err != nil {
		m.gossip.Shutdown()
		m.store.Close()
		return nil, err
	}
	if err := m.startParts(); err != nil {
		if m.dns != nil {
			m.dns.Close()
		}
		m.gossip.Shutdown()
		m.store.Close()
		return nil, err
	}
	m.leadership.register(LeaderServiceFunc{ServiceName: "membership", Func: m.reconcileMembers})
	m.leadership.register(m.sched)
	m.leadership.register(LeaderServiceFunc{ServiceName: "secrets", Func: m.secrets.Reseal})
	return m, nil
}

// defaults fills in what cfg leaves out and refuses what it gets wrong.
func (cfg *Config) defaults() error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Role == "" {
		cfg.Role = "master"
	}
	if cfg.DataDir == "" {
		return errors.New("master: --data-dir is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.MaxClockSkew < 0 {
		return fmt.Errorf("master: --max-clock-skew must be positive, got %s", cfg.MaxClockSkew)
	}
	if cfg.Scheduler.Clock == nil {
		cfg.Scheduler.Clock = cfg.Clock
	}
	if cfg.BootstrapExpect < 0 {
		return fmt.Errorf("master: --bootstrap-expect must be 0 or more, got %d", cfg.BootstrapExpect)
	}
	if cfg.GossipAddr == "" {
		g, err := nextPort(cfg.RaftAddr)
		if err != nil {
			return err
		}
		cfg.GossipAddr = g
	}
	return nil
}

// openStore opens the replicated store with the master's namespaces (the registries and the
// secrets) and the frameworks' (Config.Appliers).
func (m *Master) openStore() error {
	cfg := m.cfg
	appliers := map[string]raft.Applier{
		registry.NamespaceAgents: registry.AgentsApplier(), registry.NamespaceFrameworks: registry.FrameworksApplier(), secrets.Namespace: secrets.Applier(), quota.Namespace: quota.Applier(),
		reservation.Namespace: reservation.Applier(),
	}
	for ns, ap := range cfg.Appliers {
		if _, taken := appliers[ns]; taken {
			return fmt.Errorf("master: namespace %q is the master's own", ns)
		}
		appliers[ns] = ap
	}
	var err error
	m.store, err = raft.Open(raft.Config{
		ID:            m.id,
		Dir:           filepath.Join(cfg.DataDir, "raft"),
		BindAddr:      cfg.RaftAddr,
		Appliers:      appliers,
		Logger:        m.logger,
		Timing:        cfg.Timing,
		Now:           cfg.Clock.Now,
		ObserveCommit: m.observeCommit,
		TLSServer:     cfg.TLS.Server(true),
		TLSClient:     cfg.TLS.Client(),
		Faults:        cfg.Faults,
	})
	return err
}

// joinGossip binds the gossip pool's port; Run joins the pool.
func (m *Master) joinGossip() error {
	var err error
	m.gossip, err = gossip.New(gossip.Config{
		Name:      m.id,
		BindAddr:  m.cfg.GossipAddr,
		Meta:      m.meta(),
		Logger:    m.logger.With("component", "gossip"),
		Timing:    m.cfg.GossipTiming,
		SecretKey: auth.GossipKey(m.cfg.ClusterSecret),
		Faults:    m.cfg.Faults,
	})
	if err != nil {
		return fmt.Errorf("master: gossip: %w", err)
	}
	return nil
}

// startParts makes the parts that use the store and the gossip pool: the clock guard, the
// scheduler, and the API (which binds the HTTP port).
func (m *Master) startParts() error {
	cfg := m.cfg
	m.clockGuard = clockcheck.New(clockcheck.Config{ID: m.id, Store: m.store, Masters: m.gossip.Masters, Scheme: cfg.TLS.Scheme(), Client: m.peers,
		Clock: cfg.Clock, MaxSkew: cfg.MaxClockSkew, Logger: m.logger.With("component", "clock")})
	m.registry.MustRegister(m.clockGuard.Collectors()...)
	if cfg.Scheduler.Agents == nil {
		cfg.Scheduler.Agents = scheduler.HTTPAgents{Client: &http.Client{Timeout: 30 * time.Second, Transport: m.tr}, Secret: cfg.ClusterSecret, Scheme: cfg.TLS.Scheme()}
	}
	cfg.Scheduler.OnTaskChange = m.keeper.Poke // the view follows the task table at once, not at its next period
	var err error
	if m.sched, err = scheduler.New(cfg.Scheduler, m.id, m.store, m.gossip.Members, m.logger); err != nil {
		return err
	}
	m.registry.MustRegister(m.sched.Collectors()...)
	info := cfg.Info
	info.Role = cfg.Role
	info.DataDir = cfg.DataDir
	info.StartedAt = m.startedAt
	m.http, err = httpapi.New(httpapi.Config{HTTPAddr: cfg.HTTPAddr, Info: info, Logger: m.logger.With("component", "http"), TLS: cfg.TLS.Server(false), Cluster: &httpapi.Cluster{
		ID: m.id, ClusterID: m.ClusterID, Store: m.store, Gossip: m.gossip, Scheduler: m.sched, Secrets: m.secrets, Clock: m.clockGuard,
		WallClock: cfg.Clock, RemoveMaster: m.RemoveMaster, Guard: m.guard, Requests: m.httpMetrics, Metrics: m.registry,
		TLS: cfg.TLS, Transport: m.tr, Peers: m.peers, ClusterSecret: cfg.ClusterSecret, DiscoveryView: m.discoveryView, Services: m,
	}})
	return err
}

// ID is this master's id (its raft server id), kept in the data dir's node-id file.
func (m *Master) ID() string { return m.id }

// Store is the replicated store, for the packages that keep state in it.
func (m *Master) Store() *raft.Store { return m.store }

// HTTPAddr is the address the API listens on.
func (m *Master) HTTPAddr() string { return m.http.Addr().String() }

// SetTokens replaces the API's tokens (a reload of --tokens-file); the next request is checked
// against them. Passing none would open the API: the caller refuses that.
func (m *Master) SetTokens(t *auth.Tokens) { m.guard.SetTokens(t) }

// GossipAddr is the address the gossip layer listens on.
func (m *Master) GossipAddr() string { return m.gossip.LocalAddr() }

// RaftAddr is the raft address.
func (m *Master) RaftAddr() string { return m.store.Addr() }

// RegisterLeaderService adds work that runs only while this master leads.
func (m *Master) RegisterLeaderService(s LeaderService) { m.leadership.register(s) }

// ClusterID is the id of the cluster this master belongs to ("" until it knows).
func (m *Master) ClusterID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clusterID
}

// Run joins the cluster (or founds it), serves the API and runs leader services while this
// master leads, until ctx ends; then it leaves gracefully and closes everything.
func (m *Master) Run(ctx context.Context) error {
	if err := m.gossip.UpdateMeta(m.meta()); err != nil { // now with the bound HTTP address
		return fmt.Errorf("master: gossip: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); m.leadership.run(ctx, m.loggedLeaderEvents(ctx)) }()
	go func() {
		defer wg.Done()
		if err := m.runDiscovery(ctx); err != nil {
			cancel(err)
		}
	}()
	go func() { defer wg.Done(); m.clockGuard.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := m.http.Serve(ctx); err != nil {
			cancel(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := m.form(ctx); err != nil {
			cancel(err)
		}
	}()
	if len(m.cfg.Join) > 0 {
		joinCtx, joinCancel := context.WithTimeout(ctx, 60*time.Second)
		n, err := m.gossip.Join(joinCtx, m.cfg.Join)
		joinCancel()
		if err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("master: join %s: %w", strings.Join(m.cfg.Join, ", "), err))
		} else if err == nil {
			m.logger.Info("joined the cluster's gossip", "contacted", n)
		}
	}
	<-ctx.Done()
	cause := context.Cause(ctx)
	wg.Wait()
	m.shutdown()
	if errors.Is(cause, context.Canceled) {
		return nil
	}
	return cause
}

// shutdown leaves gossip gracefully (others see "left", not "failed") and closes the store.
func (m *Master) shutdown() {
	if err := m.gossip.Leave(2 * time.Second); err != nil && !errors.Is(err, gossip.ErrShutdown) {
		m.logger.Warn("gossip leave", "err", err)
	}
	if err := m.gossip.Shutdown(); err != nil {
		m.logger.Warn("gossip shutdown", "err", err)
	}
	if err := m.store.Close(); err != nil {
		m.logger.Warn("raft close", "err", err)
	}
}

// Kill stops the master abruptly, as if its process died: no graceful leave. For tests.
func (m *Master) Kill() {
	m.gossip.Shutdown()
	m.store.Close()
}
