package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/agora-sched/agora/master/allocator"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
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
	Agents      AgentConn   // default: HTTP to real agents
	Clock       clock.Clock // default: real time
	Seed        uint64      // the allocator's shuffle
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

// schedTerm is the scheduler's state for one leadership term.
type schedTerm struct {
	ctx        context.Context // ends with the term
	wg         *sync.WaitGroup // the term's goroutines
	started    time.Time
	alloc      *allocator.Allocator
	agents     map[string]*agentEntry
	frameworks map[string]*fwEntry
	offers     map[string]*offerEntry
	tasks      map[string]*taskEntry
	byAgent    map[string]map[string]*taskEntry // agent id → its tasks; kept by putTask and dropTask
	ended      []string                         // ids of ended tasks kept for listing, oldest first
	// failedLaunch is, per framework and task name (launchKey), the id of the latest failed
	// launch kept for listing: the next one of the same name takes its place.
	failedLaunch map[launchKey]string
	// waiting holds explicit reconciliation questions about, and kills of, tasks on agents that
	// have not registered with this leader yet ("" : on no agent named), answered (or sent)
	// when they do or when they are declared unreachable.
	waiting map[string][]waitingQuery
}

// agentState is where an agent stands with this leader.
//
//	recovered ──(registers)──► active ◄──(registers / gossip alive again)──┐
//	    │                        │                                          │
//	    └─(no registration in  ──┴─(gossip: dead or left, or no member  ──► unreachable ───┘
//	       --agent-reregister-timeout)  with its id for AgentGossipGrace)       │
//	                                       (--agent-removal-timeout)──► removed (tombstone)
//
//	recovered, active or unreachable ──(a new agent registers from its hostname and API
//	                                    address: sameHostAddress)──► removed at once (superseded)
//
// Apart from its state, an agent may say through gossip that it takes no tasks for now (its
// container runtime does not answer: agentEntry.unavailable): while active it then gets no
// offers, and shows as "unavailable"; its tasks keep their states.
type agentState int

const (
	agentRecovered   agentState = iota // known from the registry; not heard by this leader yet
	agentActive                        // registered with this leader and alive
	agentUnreachable                   // gone from gossip, or never came back
)

func (s agentState) String() string {
	return [...]string{"recovered", "active", "unreachable"}[s]
}

type agentEntry struct {
	info             api.Agent
	state            agentState
	inAlloc          bool      // added to the allocator (it registered with this leader once)
	unreachableSince time.Time // while unreachable
	missingSince     time.Time // while active and no gossip member carries its id
	fetching         bool      // asking it for its tasks after it came back
	// unavailable is why the agent says it takes no tasks now (gossip: its container runtime
	// does not answer), "" when it takes them: no offers of it meanwhile, its tasks as they are.
	unavailable string
}

type fwEntry struct {
	info           api.FrameworkInfo
	session        *Session  // nil while disconnected
	disconnectedAt time.Time // while disconnected
	suppressed     bool      // it asked for no offers
}

type offerEntry struct {
	offer   api.Offer
	expires time.Time
}

type taskEntry struct {
	info    api.TaskInfo // FrameworkID set; Resources what it holds
	agentID string
	status  api.TaskStatus // the latest, from the agent or the master
	agentTS time.Time      // timestamp of the latest update from the agent
	// unacked is the agent's update last sent to the framework and not acknowledged yet; it is
	// sent again when the framework subscribes again.
	unacked *api.TaskStatus
	// heldBy is the allocator framework its resources are held under: its own framework, or
	// unmanagedFramework for tasks no framework owns (any more); "" when not held.
	heldBy        string
	killRequested bool // a kill came while the launch was on its way
	ran           bool // it has been TASK_RUNNING
}

// launchKey names the launches that take one another's place when they fail: a framework's
// tasks of one name (an app's instances, a job's runs).
type launchKey struct{ fwID, name string }

// failedLaunch says whether a task ended without ever running, for a reason other than its
// own success or a kill: its launch failed (TASK_ERROR, TASK_DROPPED, TASK_FAILED before
// TASK_RUNNING, an agent that went away before it started, ...).
func (e *taskEntry) failedLaunch() bool {
	st := e.status.State
	return st.IsTerminal() && !e.ran && st != task.Finished && st != task.Killed && e.info.Name != ""
}

type waitingQuery struct {
	fwID, taskID, agentID string
	kill                  *api.KillTask // a kill, not a question
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

// RegisterEmbedded names a framework embedded in the masters (by the name it subscribes with).
// A framework of that name that an older build registered, with no principal, is then the
// embedded one's: no API caller can take its id before it subscribes again.
func (s *Scheduler) RegisterEmbedded(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.embedded == nil {
		s.embedded = map[string]bool{}
	}
	s.embedded[name] = true
}

// HeartbeatInterval is how often a HEARTBEAT event goes down each subscription.
func (s *Scheduler) HeartbeatInterval() time.Duration { return s.cfg.HeartbeatInterval }

// Size is how many agents are active with this leader and how many tasks its table holds, the
// ended ones it still lists included; ErrNotReady while it does not lead. It walks the agents
// only: tests and benchmarks wait on it.
func (s *Scheduler) Size() (agents, tasks int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return 0, 0, ErrNotReady
	}
	for _, e := range t.agents {
		if e.state == agentActive {
			agents++
		}
	}
	return agents, len(t.tasks), nil
}

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
			s.allocate()
		case <-tick.C:
			s.Step()
		}
	}
}

// allocationBatch is how long an event-started allocation cycle waits for more events.
const allocationBatch = 5 * time.Millisecond

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
		failedLaunch: map[launchKey]string{},
	}
	for role, w := range s.cfg.RoleWeights {
		if err := t.alloc.SetWeight(role, w); err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
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

// poke asks for an allocation cycle soon.
func (s *Scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// unmanagedFramework holds, in the allocator, the resources of tasks that run on agents but
// belong to no framework the leader knows: launched on an agent's own API, or of a framework
// removed while they are being killed. It is never offered anything; its id cannot be a
// framework's (generated ids have no ':').
const unmanagedFramework = "agora:unmanaged"

// holdLocked counts a running task's resources as allocated on its agent: under its framework,
// or under unmanagedFramework. An agent that does not have them (it registered with fewer
// resources than its tasks hold) is logged, not fatal: the agent is the truth.
func (s *Scheduler) holdLocked(t *schedTerm, e *taskEntry) {
	if e.heldBy != "" || e.status.State.IsTerminal() || e.info.Resources.IsEmpty() {
		return
	}
	if ag := t.agents[e.agentID]; ag == nil || !ag.inAlloc {
		return
	}
	holder := e.info.FrameworkID
	if _, ok := t.frameworks[holder]; !ok {
		holder = unmanagedFramework
	}
	if err := t.alloc.Allocate(holder, e.agentID, e.info.Resources); err != nil {
		s.logger.Warn("task's resources: allocator", "task", e.info.TaskID, "agent", e.agentID, "err", err)
		return
	}
	e.heldBy = holder
}

// putTask adds a task to the table (replacing an ended one of the same id).
func (t *schedTerm) putTask(e *taskEntry) {
	id := e.info.TaskID
	if old := t.tasks[id]; old != nil && old != e {
		delete(t.byAgent[old.agentID], id)
	}
	t.tasks[id] = e
	m := t.byAgent[e.agentID]
	if m == nil {
		m = map[string]*taskEntry{}
		t.byAgent[e.agentID] = m
	}
	m[id] = e
}

// dropTask takes a task out of the table.
func (t *schedTerm) dropTask(id string) {
	if e := t.tasks[id]; e != nil {
		delete(t.byAgent[e.agentID], id)
		if len(t.byAgent[e.agentID]) == 0 {
			delete(t.byAgent, e.agentID)
		}
		delete(t.tasks, id)
	}
}

// keepEndedLocked lists a task that has just ended among the ended ones, and forgets what falls
// out of the history: the failed launch of the same framework and name it follows, and the
// oldest ended tasks beyond keep. A failed launch whose update its framework has yet to
// acknowledge is forgotten only once it has been (forgetReplacedLocked): until then it is
// resent when the framework subscribes again.
func (t *schedTerm) keepEndedLocked(e *taskEntry, keep int) {
	id := e.info.TaskID
	if e.failedLaunch() {
		k := launchKey{e.info.FrameworkID, e.info.Name}
		prev, ok := t.failedLaunch[k]
		t.failedLaunch[k] = id
		if old := t.tasks[prev]; ok && old != nil && prev != id {
			t.forgetReplacedLocked(old)
		}
	}
	t.ended = append(t.ended, id)
	for len(t.ended) > keep {
		gone := t.ended[0]
		t.ended = t.ended[1:]
		old := t.tasks[gone]
		if old == nil || !old.status.State.IsTerminal() {
			continue // forgotten already, or the id was launched again
		}
		if k := (launchKey{old.info.FrameworkID, old.info.Name}); t.failedLaunch[k] == gone {
			delete(t.failedLaunch, k)
		}
		t.dropTask(gone)
	}
}

// forgetReplacedLocked forgets an ended failed launch that a later one of its framework and
// name has taken the place of, once its framework has acknowledged it.
func (t *schedTerm) forgetReplacedLocked(e *taskEntry) {
	id := e.info.TaskID
	if !e.failedLaunch() || e.unacked != nil || t.failedLaunch[launchKey{e.info.FrameworkID, e.info.Name}] == id {
		return
	}
	t.dropTask(id)
	for i := len(t.ended) - 1; i >= 0; i-- { // most likely among the last ended
		if t.ended[i] == id {
			t.ended = slices.Delete(t.ended, i, i+1)
			break
		}
	}
}

// goLocked runs fn in a goroutine of the term (calls to agents, raft proposals).
func (t *schedTerm) goLocked(fn func(ctx context.Context)) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn(t.ctx)
	}()
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
	for oid, o := range t.offers {
		if !now.Before(o.expires) {
			s.rescindLocked(t, oid, now)
		}
	}
	s.allocateLocked(t, now)
}

func failoverTimeout(fw api.FrameworkInfo) time.Duration {
	return time.Duration(fw.FailoverTimeout * float64(time.Second))
}

// allocateLocked runs one allocation cycle and sends each framework its new offers.
func (s *Scheduler) allocateLocked(t *schedTerm, now time.Time) {
	byFw := map[string][]api.Offer{}
	start := time.Now()
	made := t.alloc.Cycle(now)
	s.metrics.cycle.Observe(time.Since(start).Seconds())
	s.metrics.offers.WithLabelValues("made").Add(float64(len(made)))
	for _, o := range made {
		ag := t.agents[o.AgentID]
		offer := api.Offer{
			ID: string(s.ids.Offer()), FrameworkID: o.FrameworkID, AgentID: o.AgentID,
			Hostname: ag.info.Hostname, Resources: o.Resources, Attributes: ag.info.Attributes,
		}
		t.offers[offer.ID] = &offerEntry{offer: offer, expires: now.Add(s.cfg.OfferTimeout)}
		byFw[o.FrameworkID] = append(byFw[o.FrameworkID], offer)
	}
	for fwID, offers := range byFw {
		if fw := t.frameworks[fwID]; fw != nil && fw.session != nil {
			fw.session.push(api.Event{Type: api.EventOffers, Offers: &api.Offers{Offers: offers}})
		}
	}
}

// rescindLocked takes an outstanding offer back and gives its resources back to the allocator.
func (s *Scheduler) rescindLocked(t *schedTerm, offerID string, now time.Time) {
	o := t.offers[offerID]
	if o == nil {
		return
	}
	delete(t.offers, offerID)
	s.metrics.offers.WithLabelValues("rescinded").Inc()
	if err := t.alloc.Recover(o.offer.FrameworkID, o.offer.AgentID, o.offer.Resources, 0, now); err != nil {
		s.logger.Error("rescind: allocator", "offer", offerID, "err", err)
	}
	if fw := t.frameworks[o.offer.FrameworkID]; fw != nil && fw.session != nil {
		fw.session.push(api.Event{Type: api.EventRescind, Rescind: &api.Rescind{OfferID: offerID}})
	}
	s.poke()
}

// setStatusLocked records a task's new status; the first terminal one frees its resources. With
// forward, the framework is told (the master's own updates carry no uuid and need no ack).
func (s *Scheduler) setStatusLocked(t *schedTerm, e *taskEntry, st api.TaskStatus, forward bool, now time.Time) {
	wasTerminal := e.status.State.IsTerminal()
	st.AgentID = e.agentID
	st.FrameworkID = e.info.FrameworkID
	e.status = st
	if st.State == task.Running {
		e.ran = true
	}
	if st.State.IsTerminal() && !wasTerminal {
		if e.heldBy != "" {
			holder := e.heldBy
			e.heldBy = ""
			if err := t.alloc.Recover(holder, e.agentID, e.info.Resources, 0, now); err != nil {
				s.logger.Debug("task ended: allocator", "task", e.info.TaskID, "err", err)
			}
			s.poke()
		}
		t.keepEndedLocked(e, s.cfg.KeepEnded)
	}
	if forward {
		s.tellLocked(t, e.info.FrameworkID, st)
	}
}

// tellLocked sends a status update to a framework, if it is connected.
func (s *Scheduler) tellLocked(t *schedTerm, fwID string, st api.TaskStatus) {
	if fw := t.frameworks[fwID]; fw != nil && fw.session != nil {
		fw.session.push(api.Event{Type: api.EventUpdate, Update: &api.Update{Status: st}})
	}
}

// masterStatus is an update the master makes itself.
func masterStatus(e *taskEntry, state task.State, reason task.Reason, msg string, now time.Time) api.TaskStatus {
	return api.TaskStatus{
		TaskID: e.info.TaskID, FrameworkID: e.info.FrameworkID, AgentID: e.agentID, State: state,
		Reason: reason, Source: task.SourceMaster, Message: msg, Timestamp: now, Healthy: e.status.Healthy,
	}
}

// lostState is how a task that cannot be found ends for its framework: TASK_GONE for
// partition-aware frameworks, TASK_LOST for the others, as in Mesos.
func lostState(fw *fwEntry) task.State {
	if fw != nil && fw.partitionAware() {
		return task.Gone
	}
	return task.Lost
}

func (fw *fwEntry) partitionAware() bool {
	for _, c := range fw.info.Capabilities {
		if c == api.CapabilityPartitionAware {
			return true
		}
	}
	return false
}

// killOnAgentLocked asks the agent to kill a task, in the background.
func (s *Scheduler) killOnAgentLocked(t *schedTerm, ag api.Agent, taskID string, grace time.Duration) {
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.cfg.Agents.Kill(ctx, ag, taskID, grace); err != nil {
			s.logger.Warn("kill on agent", "agent", ag.ID, "task", taskID, "err", err)
		}
	})
}

// propose commits a registry change in the background (a change that must happen, and that a
// next leader would redo if this one is lost).
func (s *Scheduler) proposeLocked(t *schedTerm, cmd raft.Command) {
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := s.store.Apply(ctx, cmd); err != nil {
			s.logger.Warn("registry change not committed; the next leader redoes it", "type", cmd.Type, "err", err)
		}
	})
}

// TasksView lists the tasks the leader knows with their latest states.
func (s *Scheduler) TasksView() ([]api.TaskStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make([]api.TaskStatus, 0, len(t.tasks))
	for _, e := range t.tasks {
		out = append(out, e.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out, nil
}

// FrameworksView is what GET /v1/frameworks lists.
func (s *Scheduler) FrameworksView() ([]api.FrameworkState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	offered := map[string]resources.Resources{}
	for _, o := range t.offers {
		offered[o.offer.FrameworkID] = offered[o.offer.FrameworkID].Add(resources.Resources{CPUs: o.offer.Resources.CPUs, Mem: o.offer.Resources.Mem, Disk: o.offer.Resources.Disk})
	}
	running := map[string]int{}
	for _, e := range t.tasks {
		if !e.status.State.IsTerminal() {
			running[e.info.FrameworkID]++
		}
	}
	out := []api.FrameworkState{}
	for _, fw := range t.frameworks {
		st := api.FrameworkState{
			Info: fw.info, Connected: fw.session != nil, Allocated: t.alloc.Allocated(fw.info.ID),
			Offered: offered[fw.info.ID], Share: t.alloc.Share(fw.info.ID), Tasks: running[fw.info.ID],
		}
		st.Active = st.Connected && !fw.suppressed
		if fw.session == nil {
			at, deadline := fw.disconnectedAt, fw.disconnectedAt.Add(failoverTimeout(fw.info))
			st.DisconnectedAt, st.FailoverDeadline = &at, &deadline
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.ID < out[j].Info.ID })
	return out, nil
}

// TaskView is one task of the leader's table: what was launched, where, and its latest state.
type TaskView struct {
	Info    api.TaskInfo // secrets masked
	AgentID string
	Status  api.TaskStatus
}

// TasksFullView is every task of the leader's table with what was launched, by id.
func (s *Scheduler) TasksFullView() ([]TaskView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make([]TaskView, 0, len(t.tasks))
	for _, e := range t.tasks {
		out = append(out, TaskView{Info: e.info.Masked(), AgentID: e.agentID, Status: e.status})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out, nil
}
