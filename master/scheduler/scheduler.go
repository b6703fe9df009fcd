package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agora-sched/agora/master/allocator"
	"github.com/agora-sched/agora/master/quota"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/reservation"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/raft"
)

// Errors of the scheduler API.
var (
	// ErrNotReady: this master does not lead, or has only just started to.
	ErrNotReady = errors.New("master: not the leader, or not ready yet; retry")
	// ErrUnknownFramework: no framework of that id is registered (never was, or torn down).
	ErrUnknownFramework = errors.New("master: unknown framework")
	// ErrNotSubscribed: the framework has no open subscription, or the call's stream is not it.
	ErrNotSubscribed = errors.New("master: framework not subscribed on this stream")
	// ErrSubscriptionEnded ends a session: superseded, torn down, or leadership lost.
	ErrSubscriptionEnded = errors.New("master: subscription ended")
)

// Config tunes the leader's two-level scheduling. Zero values take the defaults.
type Config struct {
	// AllocationInterval is how often an allocation cycle runs besides the ones events start
	// (an agent added, resources freed). Default 1 s, as Mesos's --allocation_interval.
	AllocationInterval time.Duration
	// OfferTimeout: an offer neither used nor declined by then is rescinded. Default 30 s.
	OfferTimeout time.Duration
	// AgentReregisterTimeout: after a leader change, agents that have not registered with the
	// new leader by then are unreachable. Default 60 s.
	AgentReregisterTimeout time.Duration
	// AgentRemovalTimeout: an agent unreachable for this long is removed, and its tasks end as
	// TASK_GONE (partition-aware frameworks) or TASK_LOST. Default 5 min.
	AgentRemovalTimeout time.Duration
	// AgentGossipGrace (--agent-gossip-grace): an active agent whose id no gossip member has
	// carried for this long is unreachable, and offered to nobody (its process is gone, a new
	// one may have taken its gossip name; or it was registered by hand over
	// /v1/agents/register and nothing backs it: gossip, whose members probe one another, is how
	// an agent proves it lives). It covers a new agent's first registration, before its gossip
	// metadata with the id reaches the leader. Default 10 s.
	AgentGossipGrace time.Duration
	// HeartbeatInterval: a HEARTBEAT event goes down each subscription this often. Default 15 s.
	HeartbeatInterval time.Duration
	// KeepEnded is how many ended tasks the leader still lists, the oldest forgotten first.
	// Default 10,000. Of the launches that failed (tasks that ended before TASK_RUNNING, other
	// than FINISHED or KILLED) it lists only the latest per framework and task name: an app or
	// a job whose launches all fail leaves one task in the list, not one per attempt.
	KeepEnded int
	// RoleWeights weighs roles in DRF (default 1): a role of weight 2 is offered until its
	// dominant share is twice that of a role of weight 1.
	RoleWeights map[string]float64
	// OnTaskChange, when set, is called (under the scheduler's lock: it must not block) when a
	// task starts or stops running or its health changes: what service discovery shows.
	OnTaskChange func()
	Agents       AgentConn   // default: HTTP to real agents
	Clock        clock.Clock // default: real time
	Seed         uint64      // the allocator's shuffle
}

func (c *Config) defaults() {
	if c.AllocationInterval <= 0 {
		c.AllocationInterval = time.Second
	}
	if c.OfferTimeout <= 0 {
		c.OfferTimeout = 30 * time.Second
	}
	if c.AgentReregisterTimeout <= 0 {
		c.AgentReregisterTimeout = time.Minute
	}
	if c.AgentRemovalTimeout <= 0 {
		c.AgentRemovalTimeout = 5 * time.Minute
	}
	if c.AgentGossipGrace <= 0 {
		c.AgentGossipGrace = 10 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 15 * time.Second
	}
	if c.KeepEnded <= 0 {
		c.KeepEnded = 10000
	}
	if c.Agents == nil {
		c.Agents = NewHTTPAgentConn()
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// Scheduler is the leader's half of two-level scheduling: it offers agents' free resources to
// frameworks (allocator/ decides who gets what), checks their launches against the offers,
// sends tasks to agents, routes status updates and their acknowledgements, follows agents'
// liveness, and answers reconciliation. Its state lives in memory and is rebuilt by each new
// leader: frameworks and agents from the replicated registries, tasks from agents registering.
//
// Lock rule: mu guards term and everything in it. Nothing blocking happens under it: calls to
// agents and raft proposals run in goroutines (go), and events are queued on sessions.
type Scheduler struct {
	cfg      Config
	masterID string
	store    *raft.Store
	members  func() []gossip.Member // nil: no gossip to follow
	metrics  *metrics
	logger   *slog.Logger
	ids      *id.Generator
	kick     chan struct{} // asks for an allocation cycle soon

	mu   sync.Mutex
	term *schedTerm // nil while this master does not lead
	// embedded are the names the embedded frameworks register under (RegisterEmbedded):
	// a framework of the registry with no principal and one of these names is theirs (ownerOf).
	embedded map[string]bool
}

// New makes the scheduler of the master masterID: it keeps its registries in store and follows
// agents' liveness through members (the gossip pool's; nil: none). It does nothing until Run,
// a leader service, starts a term. An AgentConn that reports to the scheduler in process
// (Attacher) is attached to it here.
func New(cfg Config, masterID string, store *raft.Store, members func() []gossip.Member, logger *slog.Logger) (*Scheduler, error) {
	cfg.defaults()
	ids, err := id.NewGenerator(rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, masterID: masterID, store: store, members: members, metrics: newMetrics(),
		logger: logger.With("component", "scheduler"), ids: ids, kick: make(chan struct{}, 1)}
	if a, ok := cfg.Agents.(Attacher); ok {
		a.Attach(s)
	}
	return s, nil
}

// Attacher is an optional ability of an AgentConn whose agents report to the scheduler in
// process rather than over the API (mastertest.SimulatedAgents): New attaches it.
type Attacher interface {
	Attach(*Scheduler)
}

// HeartbeatInterval is how often a HEARTBEAT event goes down each subscription.
func (s *Scheduler) HeartbeatInterval() time.Duration { return s.cfg.HeartbeatInterval }

// Name is the leader service's name.
func (s *Scheduler) Name() string { return "scheduler" }

// Run is the scheduler's leader service: it loads the registries, then runs allocation cycles,
// offer timeouts and agent liveness until the term ends.
func (s *Scheduler) Run(ctx context.Context) error {
	t, err := s.startTerm(ctx)
	if err != nil {
		return err
	}
	defer s.endTerm(t)
	tick := time.NewTicker(s.cfg.AllocationInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			// Events come in bursts (a failover's thousands of registrations, a framework's
			// accepts): let a burst gather so one cycle serves it.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(allocationBatch):
			}
			// While the last cycle's offers are being answered, wait for the others (up to
			// answerWait): a cycle run when only one framework has answered would count the
			// others' outstanding offers in full against their shares and hand what is free to
			// the one that answered first — DRF would then depend on who is quicker.
			for waited := time.Duration(0); waited < answerWait && s.freshOutstanding(); waited += allocationBatch {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(allocationBatch):
				}
			}
			s.allocate()
		case <-tick.C:
			s.Step()
		}
	}
}

// allocationBatch is how long an event-started allocation cycle waits for more events.
const allocationBatch = 5 * time.Millisecond

// answerWait bounds how long an event-started cycle waits for the offers of the cycle before
// to be answered (a framework slow to answer delays the others' next offers that long at most).
const answerWait = 100 * time.Millisecond

// freshOutstanding says whether an offer the last cycle made is still outstanding.
func (s *Scheduler) freshOutstanding() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return false
	}
	for _, id := range t.fresh {
		if t.offers[id] != nil {
			return true
		}
	}
	t.fresh = t.fresh[:0]
	return false
}

// allocate runs an allocation cycle now.
func (s *Scheduler) allocate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.term; t != nil {
		s.allocateLocked(t, s.cfg.Clock.Now())
	}
}

// startTerm builds the term's state from the registries: every framework starts disconnected
// (its failover timeout runs from now), every agent recovered (it has until the re-register
// timeout to register with this leader).
func (s *Scheduler) startTerm(ctx context.Context) (*schedTerm, error) {
	v, err := s.store.View(ctx, raft.Stale) // the leader's own copy is up to date after its barrier
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	t := &schedTerm{
		ctx: ctx, wg: &sync.WaitGroup{}, started: now,
		alloc:  allocator.New(allocator.Config{Seed: s.cfg.Seed}),
		agents: map[string]*agentEntry{}, frameworks: map[string]*fwEntry{}, offers: map[string]*offerEntry{},
		tasks: map[string]*taskEntry{}, byAgent: map[string]map[string]*taskEntry{}, waiting: map[string][]waitingQuery{},
		failedLaunch: map[launchKey]string{}, reservations: map[string]*api.AgentReservations{}, volOffer: map[string]string{},
		pendingKills: map[string]pendingKill{},
	}
	for role, w := range s.cfg.RoleWeights {
		if err := t.alloc.SetWeight(role, w); err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
	}
	quotas, err := quota.List(v)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	for _, q := range quotas {
		t.alloc.SetQuota(q.Role, allocator.Quota{Guarantee: q.Guarantee, Limit: q.Limit})
	}
	recs, err := reservation.List(v)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	for _, rec := range recs {
		t.reservations[rec.AgentID] = &rec
	}
	if err := t.alloc.AddFramework(unmanagedFramework, unmanagedFramework); err != nil {
		return nil, err
	}
	if err := t.alloc.DeactivateFramework(unmanagedFramework); err != nil {
		return nil, err
	}
	fws, err := registry.Frameworks(v)
	if err != nil {
		return nil, fmt.Errorf("scheduler: registry: %w", err)
	}
	for _, fw := range fws {
		t.frameworks[fw.ID] = &fwEntry{info: fw, disconnectedAt: now}
		if err := t.alloc.AddFramework(fw.ID, fw.Role); err != nil {
			return nil, fmt.Errorf("scheduler: registry: %w", err)
		}
		if err := t.alloc.DeactivateFramework(fw.ID); err != nil {
			return nil, fmt.Errorf("scheduler: registry: %w", err)
		}
	}
	agents, err := registry.Agents(v)
	if err != nil {
		return nil, fmt.Errorf("scheduler: registry: %w", err)
	}
	for _, ag := range agents {
		if ag.RemovedAt == nil {
			t.agents[ag.ID] = &agentEntry{info: ag, state: agentRecovered}
		}
	}
	for id := range t.reservations {
		if t.agents[id] == nil { // removed, and the last leader's forget did not commit
			s.forgetReservationsLocked(t, id)
		}
	}
	s.logger.Info("scheduler starting", "frameworks", len(t.frameworks), "agents", len(t.agents))
	s.mu.Lock()
	s.term = t
	s.mu.Unlock()
	return t, nil
}

// endTerm ends every subscription (frameworks subscribe again with the next leader) and waits
// for the term's calls to agents.
func (s *Scheduler) endTerm(t *schedTerm) {
	s.mu.Lock()
	for _, fw := range t.frameworks {
		if fw.session != nil {
			fw.session.end(fmt.Errorf("%w: this master stopped leading; subscribe again (any master forwards to the new leader)", ErrSubscriptionEnded))
			fw.session = nil
		}
	}
	s.term = nil
	s.mu.Unlock()
	t.wg.Wait()
}

// Step is the timer's turn of the loop: agents' liveness, framework failover timeouts, offer
// timeouts, then an allocation cycle. Events start only the allocation cycle. Run steps every
// AllocationInterval; tests that move a fake clock step at once rather than wait for the tick.
func (s *Scheduler) Step() {
	var members []gossip.Member
	if s.members != nil {
		members = s.members()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return
	}
	now := s.cfg.Clock.Now()
	s.livenessLocked(t, members, now)
	for _, fw := range t.frameworks {
		if fw.session == nil && !now.Before(fw.disconnectedAt.Add(failoverTimeout(fw.info))) {
			s.logger.Info("framework failover timeout passed; removing it and killing its tasks", "framework", fw.info.ID, "name", fw.info.Name)
			s.removeFrameworkLocked(t, fw, "its failover timeout passed")
		}
	}
	s.retryKillsLocked(t, now)
	for oid, o := range t.offers {
		if !now.Before(o.expires) {
			s.rescindLocked(t, oid, now)
		}
	}
	s.allocateLocked(t, now)
}
