package master

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/master/clockcheck"
	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/faultnet"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/httpmetrics"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/pkg/tlsconf"
	"github.com/agora-sched/agora/pkg/version"
	"github.com/agora-sched/agora/raft"
)

// Errors of a master's life.
var (
	// ErrOtherCluster: the data dir belongs to another cluster than the masters it met.
	ErrOtherCluster = errors.New("master: data dir belongs to another cluster")
)

// Config configures a Master.
type Config struct {
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

	guard         *auth.Guard     // who may call what on the API
	clusterSecret string          // shown to agents (log proxying)
	tls           *tlsconf.TLS    // nil: plain HTTP and TCP
	tr            *http.Transport // to other masters and agents (TLS when tls is set)
	peers         *http.Client    // tr with a short timeout, for other masters' raft state

	raftCommit  prometheus.Histogram // agora_raft_commit_seconds, fed by the store
	httpMetrics *httpmetrics.Metrics // the API's request durations

	secrets    *secrets.Store    // seals, keeps and opens secrets (master/secrets)
	clockGuard *clockcheck.Guard // compares this master's clock with the others'

	mu        sync.Mutex // guards clusterID
	clusterID string
}

// New opens the data dir and binds every port (raft, gossip, HTTP), so that a port in use or
// a damaged data dir fails here with one clear error. Run starts the work.
func New(cfg Config) (*Master, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Role == "" {
		cfg.Role = "master"
	}
	if cfg.DataDir == "" {
		return nil, errors.New("master: --data-dir is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.MaxClockSkew < 0 {
		return nil, fmt.Errorf("master: --max-clock-skew must be positive, got %s", cfg.MaxClockSkew)
	}
	if cfg.Scheduler.Clock == nil {
		cfg.Scheduler.Clock = cfg.Clock
	}
	if cfg.BootstrapExpect < 0 {
		return nil, fmt.Errorf("master: --bootstrap-expect must be 0 or more, got %d", cfg.BootstrapExpect)
	}
	if cfg.GossipAddr == "" {
		g, err := nextPort(cfg.RaftAddr)
		if err != nil {
			return nil, err
		}
		cfg.GossipAddr = g
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("master: data dir: %w", err)
	}
	id, err := loadOrCreateID(filepath.Join(cfg.DataDir, "node-id"))
	if err != nil {
		return nil, err
	}
	clusterID, err := readTrimmed(filepath.Join(cfg.DataDir, "cluster-id"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("master: %w", err)
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
	m.tls = cfg.TLS
	m.tr = http.DefaultTransport.(*http.Transport).Clone()
	m.tr.TLSClientConfig = cfg.TLS.Client()
	if cfg.Faults != nil {
		m.tr.DialContext = cfg.Faults.DialContext
	}
	m.peers = &http.Client{Timeout: 500 * time.Millisecond, Transport: m.tr}
	if cfg.Scheduler.Agents == nil {
		cfg.Scheduler.Agents = scheduler.HTTPAgents{Client: &http.Client{Timeout: 30 * time.Second, Transport: m.tr}, Secret: cfg.ClusterSecret, Scheme: cfg.TLS.Scheme()}
	}
	m.guard = httpapi.NewGuard(cfg.ClusterSecret, cfg.ViewersReadLogs)
	m.guard.SetTokens(cfg.Tokens)
	m.clusterSecret = cfg.ClusterSecret
	appliers := map[string]raft.Applier{
		registry.NamespaceAgents: registry.AgentsApplier(), registry.NamespaceFrameworks: registry.FrameworksApplier(), secrets.Namespace: secrets.Applier(),
	}
	for ns, ap := range cfg.Appliers {
		if _, taken := appliers[ns]; taken {
			return nil, fmt.Errorf("master: namespace %q is the master's own", ns)
		}
		appliers[ns] = ap
	}
	m.store, err = raft.Open(raft.Config{
		ID:            id,
		Dir:           filepath.Join(cfg.DataDir, "raft"),
		BindAddr:      cfg.RaftAddr,
		Appliers:      appliers,
		Logger:        logger,
		Timing:        cfg.Timing,
		Now:           cfg.Clock.Now,
		ObserveCommit: m.observeCommit,
		TLSServer:     cfg.TLS.Server(true),
		TLSClient:     cfg.TLS.Client(),
		Faults:        cfg.Faults,
	})
	if err != nil {
		return nil, err
	}
	m.secrets = secrets.New(m.store, keys, logger)
	m.gossip, err = gossip.New(gossip.Config{
		Name:      id,
		BindAddr:  cfg.GossipAddr,
		Meta:      m.meta(),
		Logger:    logger.With("component", "gossip"),
		Timing:    cfg.GossipTiming,
		SecretKey: auth.GossipKey(cfg.ClusterSecret),
		Faults:    cfg.Faults,
	})
	if err != nil {
		m.store.Close()
		return nil, fmt.Errorf("master: gossip: %w", err)
	}
	m.clockGuard = clockcheck.New(clockcheck.Config{ID: id, Store: m.store, Masters: m.gossip.Masters, Scheme: cfg.TLS.Scheme(), Client: m.peers,
		Clock: cfg.Clock, MaxSkew: cfg.MaxClockSkew, Logger: logger.With("component", "clock")})
	m.registry.MustRegister(m.clockGuard.Collectors()...)
	if m.sched, err = scheduler.New(cfg.Scheduler, id, m.store, m.gossip.Members, logger); err != nil {
		m.gossip.Shutdown()
		m.store.Close()
		return nil, err
	}
	m.registry.MustRegister(m.sched.Collectors()...)
	info := cfg.Info
	info.Role = cfg.Role
	info.DataDir = cfg.DataDir
	info.StartedAt = m.startedAt
	m.http, err = httpapi.New(httpapi.Config{HTTPAddr: cfg.HTTPAddr, Info: info, Logger: logger.With("component", "http"), TLS: cfg.TLS.Server(false), Cluster: &httpapi.Cluster{
		ID: id, ClusterID: m.ClusterID, Store: m.store, Gossip: m.gossip, Scheduler: m.sched, Secrets: m.secrets, Clock: m.clockGuard,
		WallClock: cfg.Clock, RemoveMaster: m.RemoveMaster, Guard: m.guard, Requests: m.httpMetrics, Metrics: m.registry,
		TLS: cfg.TLS, Transport: m.tr, Peers: m.peers, ClusterSecret: cfg.ClusterSecret,
	}})
	if err != nil {
		m.gossip.Shutdown()
		m.store.Close()
		return nil, err
	}
	m.leadership.register(LeaderServiceFunc{ServiceName: "membership", Func: m.reconcileMembers})
	m.leadership.register(m.sched)
	m.leadership.register(LeaderServiceFunc{ServiceName: "secrets", Func: m.secrets.Reseal})
	return m, nil
}

// HandleLeader adds an endpoint that the leader answers (an embedded framework's API, which
// reads the leader's memory): any other master forwards the request to it, as it does writes.
// Patterns are net/http's ("GET /v2/apps/{id...}"). Call it before Run.
func (m *Master) HandleLeader(pattern string, h http.Handler) { m.http.HandleLeader(pattern, h) }

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

func (m *Master) meta() gossip.Meta {
	return gossip.Meta{
		Role:      gossip.RoleMaster,
		ID:        m.id,
		Cluster:   m.ClusterID(),
		Raft:      m.store.Addr(),
		HTTP:      m.httpAddrOrConfig(),
		Bootstrap: m.cfg.BootstrapExpect,
		Version:   version.Get().Version,
	}
}

func (m *Master) httpAddrOrConfig() string {
	if m.http != nil {
		return m.http.Addr().String()
	}
	return m.cfg.HTTPAddr
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
	wg.Add(4)
	go func() { defer wg.Done(); m.leadership.run(ctx, m.loggedLeaderEvents(ctx)) }()
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

// form founds the cluster or waits to be added to it, and keeps checking that the masters it
// meets belong to its cluster.
func (m *Master) form(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	bootstrapped := m.store.HasState()
	warned := map[string]bool{}
	for {
		if err := m.checkCluster(); err != nil {
			var foreign *foreignMasterError
			if !errors.As(err, &foreign) || foreign.stray {
				return err
			}
			if !warned[foreign.id] {
				warned[foreign.id] = true
				m.logger.Warn("a master of another cluster is in the gossip pool; ignoring it", "err", err)
			}
		}
		if !bootstrapped {
			done, err := m.tryBootstrap()
			if err != nil {
				return err
			}
			bootstrapped = done
		}
		m.adoptClusterID()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// tryBootstrap founds the cluster when this master should; it reports true once nothing is
// left to do (bootstrapped, or an existing cluster will add it).
func (m *Master) tryBootstrap() (bool, error) {
	expect := m.cfg.BootstrapExpect
	if len(m.cfg.Join) == 0 && expect <= 1 {
		return true, m.bootstrap([]gossip.Member{{Meta: m.meta()}})
	}
	if expect == 0 {
		return true, nil // join only: the leader adds us
	}
	var peers []gossip.Member
	for _, mem := range m.gossip.Masters() {
		if mem.Meta.Cluster != "" {
			return true, nil // a cluster exists already: its leader adds us
		}
		if mem.Meta.Bootstrap == expect {
			peers = append(peers, mem)
		}
	}
	if len(peers) < expect {
		return false, nil
	}
	return true, m.bootstrap(peers)
}

// bootstrap founds the cluster with these masters. Every founder computes the same list and so
// the same cluster id: a hash of the founders' ids.
func (m *Master) bootstrap(founders []gossip.Member) error {
	slices.SortFunc(founders, func(a, b gossip.Member) int { return strings.Compare(a.Meta.ID, b.Meta.ID) })
	var servers []raft.Server
	h := sha256.New()
	for _, f := range founders {
		servers = append(servers, raft.Server{ID: f.Meta.ID, Address: f.Meta.Raft, Voter: true})
		fmt.Fprintf(h, "%s\n", f.Meta.ID)
	}
	clusterID := hex.EncodeToString(h.Sum(nil))[:16]
	if err := m.setClusterID(clusterID); err != nil {
		return err
	}
	if err := m.store.Bootstrap(servers); err != nil && !errors.Is(err, raft.ErrAlreadyBootstrapped) {
		return fmt.Errorf("master: %w", err)
	}
	m.logger.Info("bootstrapped the cluster", "cluster", clusterID, "masters", len(servers))
	return nil
}

// adoptClusterID takes the cluster id from the leader once this master has joined a cluster
// that it did not found.
func (m *Master) adoptClusterID() {
	if m.ClusterID() != "" || m.store.Stats().LastIndex == 0 {
		return // known already, or not part of a cluster yet
	}
	leaderID, _ := m.store.Leader()
	for _, mem := range m.gossip.Masters() {
		if mem.Meta.ID == leaderID && mem.Meta.Cluster != "" {
			if err := m.setClusterID(mem.Meta.Cluster); err != nil {
				m.logger.Error("keep cluster id", "err", err)
			}
			return
		}
	}
}

// checkCluster reports a master of another cluster in the gossip pool. This master is the
// stray one (and must stop) when the other cluster shows more live masters than its own, or as
// many and this master came in through --join: a data dir made by one cluster is being used to
// join another. The other side only warns and never adds the stray to raft.
func (m *Master) checkCluster() error {
	ours := m.ClusterID()
	if ours == "" {
		return nil
	}
	counts := map[string]int{}
	var foreign *gossip.Member
	for _, mem := range m.gossip.Masters() {
		counts[mem.Meta.Cluster]++
		if mem.Meta.Cluster != "" && mem.Meta.Cluster != ours && foreign == nil {
			foreign = &mem
		}
	}
	if foreign == nil {
		return nil
	}
	theirs := counts[foreign.Meta.Cluster]
	return &foreignMasterError{
		msg: fmt.Sprintf("%s belongs to cluster %s, but master %s (%s) is of cluster %s; start this master with a fresh --data-dir to join that cluster",
			m.cfg.DataDir, ours, foreign.Meta.ID, foreign.Addr, foreign.Meta.Cluster),
		id:    foreign.Meta.ID,
		stray: theirs > counts[ours] || theirs == counts[ours] && len(m.cfg.Join) > 0,
	}
}

// foreignMasterError says a master of another cluster was met.
type foreignMasterError struct {
	msg   string
	id    string // the other master
	stray bool   // this master is the one that does not belong
}

func (e *foreignMasterError) Error() string { return ErrOtherCluster.Error() + ": " + e.msg }

// Unwrap makes errors.Is(err, ErrOtherCluster) true.
func (e *foreignMasterError) Unwrap() error { return ErrOtherCluster }

func (m *Master) setClusterID(id string) error {
	m.mu.Lock()
	m.clusterID = id
	m.mu.Unlock()
	if err := writeFileAtomic(filepath.Join(m.cfg.DataDir, "cluster-id"), []byte(id+"\n")); err != nil {
		return fmt.Errorf("master: %w", err)
	}
	return m.gossip.UpdateMeta(m.meta())
}

// reconcileMembers is the leader's membership service: new masters that gossip knows (of no
// cluster yet) are added as voters, and a known master that moved gets its new address. Nothing is removed
// automatically: a master that stops, gracefully or not, keeps its seat, so restarting masters
// one by one never shrinks the cluster. An operator removes a master for good with
// DELETE /v1/cluster/masters/{id} (agora cluster remove-master).
func (m *Master) reconcileMembers(ctx context.Context) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := m.reconcileOnce(ctx); err != nil {
			m.logger.Warn("membership", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (m *Master) reconcileOnce(ctx context.Context) error {
	servers, err := m.store.Servers()
	if err != nil {
		return err
	}
	inRaft := map[string]raft.Server{}
	for _, s := range servers {
		inRaft[s.ID] = s
	}
	ours := m.ClusterID()
	for _, mem := range m.gossip.Members() {
		if mem.Meta.Role != gossip.RoleMaster || mem.Meta.ID == m.id {
			continue
		}
		s, known := inRaft[mem.Meta.ID]
		// New masters (no cluster id yet) are added; a master of ours that is not in raft was
		// removed by an operator and stays out (it needs a fresh data dir to come back).
		newcomer := !known && mem.Meta.Cluster == ""
		moved := known && mem.Meta.Cluster == ours && s.Address != mem.Meta.Raft
		if mem.Status == gossip.StatusAlive && (newcomer || moved) {
			m.logger.Info("adding a master", "id", mem.Meta.ID, "raft", mem.Meta.Raft)
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := m.store.AddVoter(actx, mem.Meta.ID, mem.Meta.Raft)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// RemoveMaster takes a master out of the raft configuration (leader only).
func (m *Master) RemoveMaster(ctx context.Context, id string) error {
	servers, err := m.store.Servers()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == id }) {
		return fmt.Errorf("%w: %q", ErrNoSuchMaster, id)
	}
	return m.store.RemoveServer(ctx, id)
}

// ErrNoSuchMaster: no master with that id is in the raft configuration.
var ErrNoSuchMaster = httpapi.ErrNoSuchMaster

// nextPort is host:port+1 of a host:port.
func nextPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("master: --bind %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65534 {
		return "", fmt.Errorf("master: --bind %q: bad port", addr)
	}
	if p == 0 {
		return net.JoinHostPort(host, "0"), nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

func loadOrCreateID(path string) (string, error) {
	id, err := readTrimmed(path)
	if err == nil && id != "" {
		return id, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("master: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("master: node id: %w", err)
	}
	id = "m-" + hex.EncodeToString(b[:])
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("master: %w", err)
	}
	return id, nil
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// writeFileAtomic writes via a temporary file and a rename, so a crash leaves the old file or
// the new one, never half of one.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loggedLeaderEvents passes the store's leadership events on, with one log line for each
// change: the line operators grep for when they ask who led when.
func (m *Master) loggedLeaderEvents(ctx context.Context) <-chan bool {
	out := make(chan bool)
	go func() {
		defer close(out)
		leading := false
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-m.store.LeaderEvents():
				if !ok {
					return
				}
				if ev != leading {
					leading = ev
					if ev {
						m.logger.Info("leadership won", "term", m.store.Stats().Term)
					} else {
						m.logger.Warn("leadership lost", "term", m.store.Stats().Term)
					}
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
