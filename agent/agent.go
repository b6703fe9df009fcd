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
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/agent/fetcher"
	"github.com/agora-sched/agora/agent/statusupdate"
	"github.com/agora-sched/agora/agent/volumes"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/version"
)

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
	vols           *volumes.Store
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

// New prepares the agent: its data dir, its id if it has one, its resources, its gossip port.
// In steps: the configuration completed (Config.complete), who may call the API and what the
// agent allows tasks checked (Config.checkAccess), its parts made, its id read, then what it
// holds opened in turn — the checkpoint, the API's listener (listen), the gossip port
// (newGossip) — each step closing what came before when it fails.
func New(cfg Config) (*Agent, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	ids, err := id.NewGenerator(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := cfg.checkAccess(); err != nil {
		return nil, err
	}
	fetch, err := fetcher.New(cfg.Fetch)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{cfg: cfg, logger: cfg.Logger, exec: cfg.Executor, ids: ids, fetcher: fetch}
	a.metrics = newMetrics(a)
	if err := a.readID(); err != nil {
		return nil, err
	}
	store, err := checkpoint.Open(filepath.Join(cfg.DataDir, "checkpoint.db"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w (is another agent running on this data dir?)", err)
	}
	a.store = store
	vols, err := volumes.Open(volumes.Config{Dir: filepath.Join(cfg.DataDir, "volumes"), Book: store, Logger: cfg.Logger.With("component", "volumes")})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.vols = vols
	ln, err := a.listen()
	if err != nil {
		store.Close()
		return nil, err
	}
	g, err := a.newGossip()
	if err != nil {
		ln.Close()
		store.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.gossip = g
	return a, nil
}

// readID reads the id the agent got at its first registration, if it has one.
func (a *Agent) readID() error {
	if b, err := os.ReadFile(a.idPath()); err == nil {
		a.id = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// listen opens the API's listener (through Config.Faults and TLS when set, which also shape how
// the agent reaches masters) and keeps the address it got as the agent's HTTPAddr. It answers
// the plain listener, which New closes when a later step fails.
func (a *Agent) listen() (net.Listener, error) {
	cfg := a.cfg
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
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
	return ln, nil
}

// newGossip opens the agent's gossip port; its metadata carries the agent's id (if it has one
// yet) and API address.
func (a *Agent) newGossip() (*gossip.Gossip, error) {
	cfg := a.cfg
	return gossip.New(gossip.Config{
		Name:      "agent-" + cfg.Hostname + "-" + filepath.Base(cfg.DataDir),
		BindAddr:  cfg.GossipAddr,
		Meta:      gossip.Meta{Role: gossip.RoleAgent, ID: a.id, HTTP: cfg.HTTPAddr, Version: version.Get().Version},
		Logger:    cfg.Logger.With("component", "gossip"),
		Timing:    cfg.GossipTiming,
		Faults:    cfg.Faults,
		SecretKey: auth.GossipKey(cfg.ClusterSecret),
	})
}

// HTTPAddr is the address the agent's API listens on.
func (a *Agent) HTTPAddr() string { return a.cfg.HTTPAddr }

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
		fetcher: a.fetcher, vols: a.vols,
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
