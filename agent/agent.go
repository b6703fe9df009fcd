package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/agent/fetcher"
	"github.com/agora-sched/agora/agent/statusupdate"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/client"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/faultnet"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/tlsconf"
	"github.com/agora-sched/agora/pkg/version"
)

// Config configures an Agent.
type Config struct {
	DataDir    string
	Join       []string // gossip addresses of masters (or other agents)
	GossipAddr string   // this agent's gossip address
	HTTPAddr   string   // this agent's API address, as masters should reach it
	Hostname   string
	Resources  resources.Resources // zero: detected
	Attributes map[string]string
	Logger     *slog.Logger
	// GossipTiming defaults to the LAN profile; tests on loopback use the local one.
	GossipTiming gossip.Timing
	// RetryEvery is how often registration is retried and the leader checked (default 1 s).
	RetryEvery time.Duration
	// Executor runs the tasks (agent/containerd's, in production).
	Executor Executor
	// Drain: when Run's context ends, kill every task (each with its grace period) and wait
	// until their last updates are acknowledged, up to DrainTimeout, before stopping. Without
	// it tasks keep running while the agent is away, and it re-attaches when it is back.
	Drain        bool
	DrainTimeout time.Duration // default 2 minutes
	Clock        clock.Clock   // default clock.Real
	// ClusterSecret, when set, is what this agent shows masters and what it asks of every
	// caller of its API (but /ping, /health and /metrics), and the key of gossip's encryption.
	ClusterSecret string
	// AllowPrivileged lets tasks run privileged containers; the agent then has the attribute
	// api.PrivilegedAttribute, by which frameworks place them.
	AllowPrivileged bool
	// AllowRootTasks lets tasks run as uid 0 (the executor must allow it too); the agent then
	// has the attribute hostaccess.RootAttribute, by which frameworks place them.
	AllowRootTasks bool
	// HostVolumes are the host directories tasks may mount (nothing else of the host is); each
	// is an attribute (hostaccess.AttributePrefix + name) by which frameworks place them.
	HostVolumes []hostaccess.Volume
	// Protected are host paths that may never be a host volume, besides the data dir and
	// hostaccess.AlwaysProtected: key and secret files, a master's data dir on the same host.
	Protected []string
	// TLS, when set, serves the agent's API over TLS, asking every caller for a certificate the
	// CA signed (only masters call it), and reaches masters over TLS with its own.
	TLS *tlsconf.TLS
	// Faults, when set, can cut this agent off the masters (the chaos harness's partitions):
	// gossip, its calls to masters and masters' calls to it.
	Faults *faultnet.Switch
	// Fetch configures the fetching of tasks' artifacts; its cache defaults to
	// DataDir/fetch-cache.
	Fetch fetcher.Config
	// RuntimeCheckEvery is how often the agent asks an executor that can say so (Available)
	// whether it can run tasks (default 500 ms).
	RuntimeCheckEvery time.Duration
}

// runtimeChecker is an executor that can say whether it can run tasks now (agent/containerd's:
// containerd answers, and every task is attached): nil, or an error saying why not.
type runtimeChecker interface {
	Available(ctx context.Context) error
}

// Agent is the agent daemon's registration with the cluster: it finds the masters through
// gossip, registers with the leader (any master forwards), keeps the id it got in its data dir,
// and registers again whenever the leader changes, so a new leader learns of it at once.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	gossip *gossip.Gossip
	ln     net.Listener
	// tlsClient is how the agent reaches masters with TLS (one configuration, so that its
	// connections are reused); nil without TLS.
	tlsClient *tls.Config
	// faultTransport carries the agent's calls to masters when Config.Faults is set.
	faultTransport *http.Transport
	store          *checkpoint.Store
	exec           Executor
	fetcher        *fetcher.Fetcher
	ids            *id.Generator
	// metrics are served at GET /metrics.
	metrics *metrics

	// Set by Run before the API serves.
	updates *statusupdate.Manager
	tasks   *taskSet

	mu         sync.Mutex // guards id, leader, leaderHTTP and attempts
	id         string
	leader     string // id of the master last registered with
	leaderHTTP string // its API address
	attempts   int

	// metaMu orders the changes of the agent's gossip metadata (meta), so that the last one
	// sent is the latest state.
	metaMu sync.Mutex
}

// ParseAttributes reads "rack:r1;zone:a".
func ParseAttributes(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("agent: attribute %q: want name:value", part)
		}
		if strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("agent: attribute name %q has a space (masters refuse it)", k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("agent: attribute %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// DetectResources reads the machine: every cpu, memory less what the system keeps (1 GiB, or
// half of a small machine), the data dir's disk less 5 GiB (or half), and ports 31000-32000.
func DetectResources(dataDir string) (resources.Resources, error) {
	r := resources.Resources{CPUs: float64(runtime.NumCPU()), Ports: resources.Ranges{{Begin: 31000, End: 32000}}}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return r, fmt.Errorf("agent: memory: %w", err)
	}
	memMiB := float64(si.Totalram) * float64(si.Unit) / (1 << 20)
	r.Mem = memMiB - min(1024, memMiB/2)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dataDir, &fs); err != nil {
		return r, fmt.Errorf("agent: disk of %s: %w", dataDir, err)
	}
	diskMiB := float64(fs.Blocks) * float64(fs.Bsize) / (1 << 20)
	r.Disk = diskMiB - min(5120, diskMiB/2)
	return r.Add(resources.Resources{}), nil // rounds to Mesos's precision
}

// New prepares the agent: its data dir, its id if it has one, its resources, its gossip port.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryEvery == 0 {
		cfg.RetryEvery = time.Second
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: --data-dir is required")
	}
	if cfg.Executor == nil {
		return nil, errors.New("agent: no executor")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Minute
	}
	if cfg.RuntimeCheckEvery == 0 {
		cfg.RuntimeCheckEvery = 500 * time.Millisecond
	}
	if len(cfg.Join) == 0 {
		return nil, errors.New("agent: --join is required (a master's gossip address)")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: hostname: %w", err)
		}
		cfg.Hostname = h
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	if cfg.Resources.IsEmpty() {
		r, err := DetectResources(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		cfg.Resources = r
	}
	if err := cfg.Resources.Validate(); err != nil {
		return nil, fmt.Errorf("agent: --resources: %w", err)
	}
	ids, err := id.NewGenerator(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if _, err := AccessLine(cfg.HTTPAddr, cfg.ClusterSecret, cfg.TLS); err != nil {
		return nil, err
	}
	attrs, err := cfg.attributes()
	if err != nil {
		return nil, err
	}
	cfg.Attributes = attrs
	if cfg.Fetch.CacheDir == "" {
		cfg.Fetch.CacheDir = filepath.Join(cfg.DataDir, "fetch-cache")
	}
	if cfg.Fetch.Logger == nil {
		cfg.Fetch.Logger = cfg.Logger.With("component", "fetcher")
	}
	fetch, err := fetcher.New(cfg.Fetch)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{cfg: cfg, logger: cfg.Logger, exec: cfg.Executor, ids: ids, fetcher: fetch}
	a.metrics = newMetrics(a)
	if b, err := os.ReadFile(a.idPath()); err == nil {
		a.id = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: %w", err)
	}
	store, err := checkpoint.Open(filepath.Join(cfg.DataDir, "checkpoint.db"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w (is another agent running on this data dir?)", err)
	}
	a.store = store
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("agent: listen on %s (--http): %w", cfg.HTTPAddr, err)
	}
	a.ln = ln
	if cfg.Faults != nil {
		a.ln = cfg.Faults.Listener(ln)
		a.faultTransport = http.DefaultTransport.(*http.Transport).Clone()
		a.faultTransport.DialContext = cfg.Faults.DialContext
	}
	if cfg.TLS != nil {
		a.ln = tls.NewListener(a.ln, cfg.TLS.Server(true))
		a.tlsClient = cfg.TLS.Client()
		if a.faultTransport != nil {
			a.faultTransport.TLSClientConfig = a.tlsClient
		}
	}
	a.cfg.HTTPAddr = ln.Addr().String()
	cfg.HTTPAddr = a.cfg.HTTPAddr
	g, err := gossip.New(gossip.Config{
		Name:      "agent-" + cfg.Hostname + "-" + filepath.Base(cfg.DataDir),
		BindAddr:  cfg.GossipAddr,
		Meta:      gossip.Meta{Role: gossip.RoleAgent, ID: a.id, HTTP: cfg.HTTPAddr, Version: version.Get().Version},
		Logger:    cfg.Logger.With("component", "gossip"),
		Timing:    cfg.GossipTiming,
		Faults:    cfg.Faults,
		SecretKey: auth.GossipKey(cfg.ClusterSecret),
	})
	if err != nil {
		ln.Close()
		store.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.gossip = g
	return a, nil
}

// HTTPAddr is the address the agent's API listens on.
func (a *Agent) HTTPAddr() string { return a.cfg.HTTPAddr }

// serve answers the agent's API (see routes) until ctx ends.
func (a *Agent) serve(ctx context.Context) {
	srv := &http.Server{Handler: a.metrics.http.Wrap(httpjson.LimitBody(a.guard().Middleware(a.meant(a.routes())))), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.logger.Error("agent API", "err", err)
	}
}

// meant answers 421 to a call that names another agent id than this agent's (api.HeaderAgentID):
// the caller means an agent that this one replaced at its address.
func (a *Agent) meant(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := r.Header.Get(api.HeaderAgentID); want != "" && want != a.ID() {
			self := "agent " + a.ID()
			if a.ID() == "" {
				self = "an agent that has not registered yet"
			}
			httpjson.Error(w, http.StatusMisdirectedRequest, fmt.Sprintf("%s is %s, not agent %s: that agent is gone from this address (its data dir was lost?)", a.cfg.HTTPAddr, self, want))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (a *Agent) idPath() string { return filepath.Join(a.cfg.DataDir, "agent-id") }

// ID is the agent id ("" until the first registration).
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Resources are what the agent offers.
func (a *Agent) Resources() resources.Resources { return a.cfg.Resources }

// GossipAddr is the agent's gossip address.
func (a *Agent) GossipAddr() string { return a.gossip.LocalAddr() }

// Run recovers the agent's tasks, serves its API, joins, registers, registers again with every
// new leader and delivers status updates, until ctx ends. Then, with Drain, it first kills its
// tasks and waits for their last updates to be acknowledged.
func (a *Agent) Run(ctx context.Context) error {
	// Three lifetimes, ended in this order when ctx ends: the tasks' (after a drain, if asked:
	// from then on the agent lets its tasks be), the API's and the updates' (so that a drain's
	// last updates go out), then the store's.
	taskCtx, stopTasks := context.WithCancel(context.WithoutCancel(ctx))
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	a.updates = statusupdate.New(statusupdate.Config{Store: a.store, Sender: sender{a}, Clock: a.cfg.Clock, Logger: a.logger.With("component", "status-updates")})
	a.tasks = newTaskSet(taskCtx, taskSetConfig{
		exec: a.exec, store: a.store, updates: a.updates, total: a.cfg.Resources, host: a.cfg.Hostname,
		agentID: a.ID, clock: a.cfg.Clock, logger: a.logger, ids: a.ids, observeStart: a.metrics.observeStart,
		allowPrivileged: a.cfg.AllowPrivileged, allowRoot: a.cfg.AllowRootTasks, volumes: a.cfg.HostVolumes,
		fetcher: a.fetcher,
	})
	defer func() {
		stopTasks()
		a.tasks.wg.Wait()
		stop()
		wg.Wait()
		a.gossip.Shutdown()
		a.store.Close()
	}()
	if err := a.tasks.recover(ctx); err != nil {
		return err
	}
	wg.Add(3)
	go func() { defer wg.Done(); a.serve(life) }()
	go func() { defer wg.Done(); a.watchRuntime(life) }()
	go func() {
		defer wg.Done()
		if err := a.updates.Run(life); err != nil {
			a.logger.Error("status updates stopped", "err", err)
		}
	}()

	joinCtx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err := a.gossip.Join(joinCtx, a.cfg.Join)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("agent: %w", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.registerLoop(life) }()
	<-ctx.Done()
	if a.cfg.Drain {
		dctx, cancel := context.WithTimeout(life, a.cfg.DrainTimeout)
		a.logger.Info("draining: killing every task before stopping")
		if err := a.tasks.drain(dctx); err != nil {
			a.logger.Warn("drain", "err", err)
		}
		cancel()
	}
	stopTasks()
	if err := a.gossip.Leave(2 * time.Second); err != nil && !errors.Is(err, gossip.ErrShutdown) {
		a.logger.Warn("gossip leave", "err", err)
	}
	return nil
}

// registerLoop registers, and registers again whenever the leader changes, until ctx ends.
// When the masters answer again after a time they did not (a partition, a network outage), the
// unacknowledged status updates go out at once rather than when their backoff ends.
func (a *Agent) registerLoop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.RetryEvery)
	defer tick.Stop()
	lost := false
	for {
		err := a.registerIfNeeded(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			a.logger.Warn("registration", "err", err)
			lost = true
		case err == nil && lost:
			lost = false
			a.logger.Info("masters reachable again: resending unacknowledged status updates now")
			a.updates.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sender delivers status updates to the leader through the master the agent registered with
// (any master forwards); the leader's answer is the acknowledgement.
type sender struct{ a *Agent }

func (s sender) Send(ctx context.Context, u checkpoint.Update) error {
	a := s.a
	a.mu.Lock()
	agentID, addr := a.id, a.leaderHTTP
	a.mu.Unlock()
	if agentID == "" || addr == "" {
		return errors.New("not registered with a master yet")
	}
	c, err := a.client(addr)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := c.SendStatus(sctx, agentID, u)
	if err != nil {
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			// The leader does not know this agent (a new cluster?): register again.
			a.mu.Lock()
			a.leader = ""
			a.mu.Unlock()
		}
		return err
	}
	if ack.Acknowledged {
		return a.tasks.acknowledge(u.TaskID, ack.UUID)
	}
	return nil
}

// registerIfNeeded asks a master who leads, and registers when that leader has not heard from
// this agent yet.
func (a *Agent) registerIfNeeded(ctx context.Context) error {
	masters := a.gossip.Masters()
	if len(masters) == 0 {
		return errors.New("no master known through gossip yet")
	}
	var lastErr error
	for _, m := range masters {
		if m.Meta.HTTP == "" {
			continue
		}
		c, err := a.client(m.Meta.HTTP)
		if err != nil {
			lastErr = err
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		view, err := c.Cluster(rctx)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if view.Leader == nil {
			lastErr = errors.New("no leader elected yet")
			continue
		}
		a.mu.Lock()
		same := view.Leader.ID == a.leader
		a.mu.Unlock()
		if same {
			return nil
		}
		return a.register(ctx, c, view.Leader.ID, view.Leader.HTTP)
	}
	return lastErr
}

func (a *Agent) register(ctx context.Context, c *client.Client, leader, leaderHTTP string) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := c.RegisterAgent(rctx, api.AgentRegistration{
		ID:         a.ID(),
		Hostname:   a.cfg.Hostname,
		HTTP:       a.cfg.HTTPAddr,
		Resources:  a.cfg.Resources,
		Attributes: a.cfg.Attributes,
		Tasks:      a.tasks.registration(),
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	first := a.id == ""
	a.id, a.leader, a.leaderHTTP = got.ID, leader, leaderHTTP
	if a.leaderHTTP == "" {
		a.leaderHTTP = c.Addr()
	}
	a.attempts++
	a.mu.Unlock()
	if first {
		if err := os.WriteFile(a.idPath(), []byte(got.ID+"\n"), 0o600); err != nil {
			return fmt.Errorf("agent: keep id: %w", err)
		}
		if err := a.updateMeta(); err != nil {
			return err
		}
	}
	a.logger.Info("registered", "agent", got.ID, "leader", leader, "resources", a.cfg.Resources.String())
	a.updates.Flush() // the new leader gets what the old one did not acknowledge, now
	return nil
}

// updateMeta tells the cluster, through gossip, the agent's id and whether it takes tasks.
func (a *Agent) updateMeta() error {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	why := a.tasks.runtimeUnavailable()
	if len(why) > 200 { // gossip metadata is small (512 bytes in all)
		why = why[:200] + "..."
	}
	return a.gossip.UpdateMeta(gossip.Meta{Role: gossip.RoleAgent, ID: a.ID(), HTTP: a.cfg.HTTPAddr, Version: version.Get().Version, Unavailable: why})
}

// watchRuntime asks the executor, every RuntimeCheckEvery, whether it can run tasks, until
// ctx ends. When it cannot (containerd does not answer, or has not been re-attached to every
// task since it came back), the agent refuses launches, answers /health with 503 and the
// reason, pauses health checks and tells the masters, through gossip, to offer none of it;
// its tasks keep their states. When it can again, all of that is undone.
func (a *Agent) watchRuntime(ctx context.Context) {
	rc, ok := a.exec.(runtimeChecker)
	if !ok {
		return
	}
	var since time.Time
	for {
		err := rc.Available(ctx)
		if ctx.Err() != nil {
			return
		}
		why := ""
		if err != nil {
			why = err.Error()
		}
		if was := a.tasks.runtimeUnavailable(); why != was {
			a.tasks.runtimeChanged(why)
			switch {
			case was == "":
				since = a.cfg.Clock.Now()
				a.logger.Warn("container runtime unavailable: refusing launches, tasks kept as they are", "why", why)
			case why == "":
				a.logger.Info("container runtime available again: tasks re-attached, taking launches", "after", a.cfg.Clock.Now().Sub(since).Round(time.Millisecond))
			}
			if err := a.updateMeta(); err != nil {
				a.logger.Warn("tell the masters whether this agent takes tasks", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Clock.After(a.cfg.RuntimeCheckEvery):
		}
	}
}

// Registrations is how many times the agent registered (first time and again).
func (a *Agent) Registrations() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attempts
}

// client talks to a master, showing the cluster secret when there is one.
func (a *Agent) client(addr string) (*client.Client, error) {
	c, err := client.New(addr)
	if err != nil {
		return nil, err
	}
	c = c.WithToken(a.cfg.ClusterSecret)
	if a.tlsClient != nil {
		c = c.WithTLS(a.tlsClient)
	}
	if a.faultTransport != nil {
		c = c.WithTransport(a.faultTransport)
	}
	return c, nil
}

// guard lets callers of the agent's API in: only masters (the cluster secret) may launch,
// kill, acknowledge and read tasks; liveness and metrics are open.
func (a *Agent) guard() *auth.Guard {
	return &auth.Guard{ClusterSecret: a.cfg.ClusterSecret, Need: func(r *http.Request) auth.Role {
		switch r.URL.Path {
		case "/ping", "/health", "/metrics":
			return auth.Open
		}
		return auth.Cluster
	}}
}

// ErrOpenAPI: the agent's API would listen beyond loopback with nobody asked who calls it.
var ErrOpenAPI = errors.New("agent: an API open to the network")

// AccessLine says who may call an agent's API on httpAddr, for the line the agent prints at
// start; beyond loopback it refuses to run without the cluster secret or mutual TLS, since
// whoever reaches the API may launch tasks.
func AccessLine(httpAddr, secret string, t *tlsconf.TLS) (string, error) {
	switch {
	case secret != "" && t.Mutual():
		return "masters only: callers show the cluster secret and a certificate the cluster's CA signed", nil
	case secret != "":
		return "masters only: callers show the cluster secret", nil
	case t.Mutual():
		return "masters only: callers show a certificate the cluster's CA signed", nil
	case auth.Loopback(httpAddr):
		return "OPEN to this machine: no --cluster-secret-file, anyone on this host may launch tasks (it listens on loopback only)", nil
	}
	return "", fmt.Errorf("%w: --http %s is reachable beyond this machine, and whoever reaches it could run tasks on it: give --cluster-secret-file (the masters' too) or --tls-cert, --tls-key and --tls-ca", ErrOpenAPI, httpAddr)
}

// attributes are the agent's own attributes and those that tell frameworks what it allows:
// privileged containers, root tasks, its host volumes (each checked against the paths tasks
// must never see).
func (cfg Config) attributes() (map[string]string, error) {
	attrs := make(map[string]string, len(cfg.Attributes)+len(cfg.HostVolumes)+2)
	for k, v := range cfg.Attributes {
		if k == api.PrivilegedAttribute || k == hostaccess.RootAttribute || strings.HasPrefix(k, hostaccess.AttributePrefix) {
			return nil, fmt.Errorf("agent: attribute %s is the agent's own: use --allow-privileged, --allow-root-tasks or --host-volume", k)
		}
		attrs[k] = v
	}
	if cfg.AllowPrivileged {
		attrs[api.PrivilegedAttribute] = "true"
	}
	if cfg.AllowRootTasks {
		attrs[hostaccess.RootAttribute] = "true"
	}
	if err := CheckHostVolumes(cfg.HostVolumes, append([]string{cfg.DataDir}, cfg.Protected...)); err != nil {
		return nil, err
	}
	for _, v := range cfg.HostVolumes {
		k, val := v.Attribute()
		attrs[k] = val
	}
	return attrs, nil
}

// CheckHostVolumes refuses host volumes an agent may not declare: a name given twice, a path
// that does not exist, or one that is, holds or lies in a protected path (the agent's data dir,
// its key and secret files, hostaccess.AlwaysProtected) or is a system dir asked read-write.
func CheckHostVolumes(vols []hostaccess.Volume, protected []string) error {
	never := append(slices.Clone(protected), hostaccess.AlwaysProtected...)
	names := map[string]bool{}
	for _, v := range vols {
		if names[v.Name] {
			return fmt.Errorf("agent: --host-volume %s given twice", v.Name)
		}
		names[v.Name] = true
		if err := hostaccess.Protected(v.Path, v.ReadOnly, never); err != nil {
			return fmt.Errorf("agent: --host-volume %s: %w", v, err)
		}
		if _, err := os.Stat(v.Path); err != nil {
			return fmt.Errorf("agent: --host-volume %s: %w", v, err)
		}
	}
	return nil
}
