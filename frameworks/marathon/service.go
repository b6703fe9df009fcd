package marathon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// Config configures the framework: the Host it runs in, a Logger, the Name and Role it
// registers with (default "marathon" and "*"), its FailoverTimeout (a week) and Tick (1 s).
type Config = frameworks.Config

// Service is the Marathon-like framework: a leader service of the masters that keeps apps'
// instances running through the scheduler contract, and serves Marathon's /v2 API.
type Service struct {
	cfg    Config
	m      frameworks.Host // the master it runs in
	store  raft.Namespace
	logger *slog.Logger
	ids    *id.Generator
	wake   chan struct{}
	bus    *eventBus

	writeMu sync.Mutex // serializes API writes: check, commit, apply

	mu sync.Mutex   // guards st
	st *leaderState // nil while this master does not lead, or has not subscribed yet
}

// leaderState is the framework's memory while it leads: apps and deployments as the store has
// them, instances with what their tasks last said.
type leaderState struct {
	ss          api.Session
	apps        map[string]*appState
	instances   map[string]*instance            // by instance id, which is its task id
	byApp       map[string]map[string]*instance // app id → its instances; kept by add and remove
	deployments map[string]*Deployment
	groups      map[string]groupRecord // explicit groups (with dependencies), by id
	// reservations are resident instances' reservations, by id (residency.go); a task of one
	// names it in its instance's record.
	reservations map[string]*ReservationRecord
	suppressed   bool
	// dirty apps are planned at the next step (every app is, on the timer); waiting are those
	// with instances to start now, which offers are used for.
	dirty   map[string]bool
	waiting map[string]bool
	// reconcileAsked is when the instances not reconciled yet were last asked about.
	reconcileAsked time.Time
}

// touch marks an app to be planned at the next step.
func (st *leaderState) touch(appID string) { st.dirty[appID] = true }

type appState struct {
	def         Definition
	app         App
	constraints []Constraint     // the app's, parsed once
	needs       hostaccess.Needs // what only some agents allow: privileged, root, host volumes
	configAt    string           // versionInfo.lastConfigChangeAt: instances of another are old
	deleted     bool             // DELETE: its instances are being killed; forgotten once none is left
	want        int              // instances to start now, from the plan
	// failures is how many instances in a row ended on their own (failed launches included):
	// the launch backoff's n. failedAt is when the latest did: only an instance launched after
	// it that then runs (healthy) for backoffResetAfter starts the backoff over.
	failures   int
	failedAt   time.Time
	delayUntil time.Time
	lastFail   *TaskFailure
	// offers says what the offers judged since the app began to wait for instances said (nil
	// while it waits for none): what /v2/queue and waitingReason show.
	offers *frameworks.OfferStats
}

// setWant sets how many instances the app waits for now; its offer stats start when it begins
// to wait and end when it waits no more (Marathon's launch attempt).
func (as *appState) setWant(n int, now time.Time) {
	as.want = n
	switch {
	case n == 0:
		as.offers = nil
	case as.offers == nil:
		as.offers = frameworks.NewOfferStats(now)
	}
}

type instance struct {
	rec   InstanceRecord
	state task.State
	// reconciled: a status of its task came since this leader loaded it, or this leader
	// launched it. Until then its state and health are unknown (what load sets is a
	// placeholder), and nothing is decided for its app.
	reconciled       bool
	healthy          *bool // nil: no health check result yet
	ready            bool  // its readiness checks passed (apps without any: never looked at)
	probing          bool  // a readiness probe runs for it
	message          string
	startedAt        *time.Time
	unreachableSince time.Time
	// killSent is when this leader last sent its task a kill (decide sends it again every
	// killRetry while the task runs on; a new leader sends it at once).
	killSent time.Time
}

// TaskFailure is Marathon's lastTaskFailure.
type TaskFailure struct {
	AppID     string    `json:"appId"`
	Host      string    `json:"host"`
	Message   string    `json:"message"`
	State     string    `json:"state"`
	TaskID    string    `json:"taskId"`
	Timestamp time.Time `json:"timestamp"`
	Version   string    `json:"version"`
	SlaveID   string    `json:"slaveId"`
}

// New makes the service. Register it with Register before the master runs.
func New(cfg Config) (*Service, error) {
	cfg, err := cfg.WithDefaults("marathon")
	if err != nil {
		return nil, err
	}
	ids, err := id.NewGenerator(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, m: cfg.Host, store: cfg.Host.Store(), logger: cfg.Logger.With("framework_name", cfg.Name),
		ids: ids, wake: make(chan struct{}, 1), bus: newEventBus(),
	}, nil
}

// Register adds the framework to its host: its lifecycle as the leader's work (frameworks.Driver),
// its /v2 endpoints, its metrics (served with the master's at /metrics) and what service
// discovery shows of its apps (describe.go).
func (s *Service) Register() {
	s.driver().Register()
	s.routes()
	s.m.Metrics().MustRegister(newMetrics(s))
	s.m.DescribeServices(s.cfg.Name, (&describer{store: s.store}).describe)
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// driver runs the framework while its master leads: it subscribes (as the same framework on
// every leader), loads the apps (begin), reconciles every instance it knows, then keeps apps at
// their wanted instances (step) until leadership ends.
func (s *Service) driver() *frameworks.Driver {
	return &frameworks.Driver{Config: s.cfg, Wake: s.wake, Begin: s.begin, End: s.end,
		Step: func(ctx context.Context, events []api.Event, tick bool) (time.Time, error) {
			for _, ev := range events {
				s.handle(ctx, ev)
			}
			s.step(ctx, tick)
			return time.Time{}, nil
		}}
}

// begin loads the apps, instances and deployments for the session and makes them the leader
// state; every instance is to be reconciled.
func (s *Service) begin(_ context.Context, ss api.Session) ([]api.ReconcileTask, error) {
	st, err := s.load(ss)
	if err != nil {
		return nil, err
	}
	// Every instance loaded is unknown until the master answers for its task: its app waits
	// for that (decide), and the question is asked again until it is answered.
	var known []api.ReconcileTask
	for _, in := range st.instances {
		known = append(known, api.ReconcileTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
	}
	if len(known) > 0 {
		st.reconcileAsked = s.cfg.Clock.Now()
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	s.logger.Info("service framework running", "framework", ss.FrameworkID(), "apps", len(st.apps), "instances", len(st.instances))
	return known, nil
}

// end forgets the leader state.
func (s *Service) end() {
	s.mu.Lock()
	s.st = nil
	s.mu.Unlock()
}

// load reads apps, instances and deployments from the store.
func (s *Service) load(ss api.Session) (*leaderState, error) {
	v, err := s.store.View(context.Background(), raft.Stale)
	if err != nil {
		return nil, err
	}
	return loadState(ss, v.List)
}

// loadState makes the leader state from the namespace's records, as list walks them by prefix.
func loadState(ss api.Session, list func(prefix string, fn func(key string, data []byte) bool)) (*leaderState, error) {
	st := newLeaderState(ss)
	var bad error
	list("app/", func(_ string, data []byte) bool {
		var as *appState
		if as, bad = appStateOf(data); bad == nil {
			st.apps[as.app.ID] = as
		}
		return bad == nil
	})
	list("instance/", func(_ string, data []byte) bool {
		var rec InstanceRecord
		if bad = json.Unmarshal(data, &rec); bad == nil {
			st.add(&instance{rec: rec, state: task.Staging}) // not reconciled: unknown until the master answers
			if st.apps[rec.AppID] == nil {
				// Its app was deleted before the last leader could stop it.
				st.apps[rec.AppID] = &appState{app: App{ID: rec.AppID}, deleted: true}
			}
		}
		return bad == nil
	})
	list("group/", func(_ string, data []byte) bool {
		var g groupRecord
		if bad = json.Unmarshal(data, &g); bad == nil {
			st.groups[g.ID] = g
		}
		return bad == nil
	})
	list("reservation/", func(_ string, data []byte) bool {
		var r ReservationRecord
		if bad = json.Unmarshal(data, &r); bad == nil {
			st.reservations[r.ID] = &r
		}
		return bad == nil
	})
	list("deployment/", func(_ string, data []byte) bool {
		var d Deployment
		if bad = json.Unmarshal(data, &d); bad == nil {
			st.deployments[d.ID] = &d
		}
		return bad == nil
	})
	if bad != nil {
		return nil, fmt.Errorf("marathon: load: %w", bad)
	}
	return st, nil
}

func newLeaderState(ss api.Session) *leaderState {
	return &leaderState{ss: ss, apps: map[string]*appState{}, instances: map[string]*instance{}, byApp: map[string]map[string]*instance{},
		deployments: map[string]*Deployment{}, groups: map[string]groupRecord{}, dirty: map[string]bool{}, waiting: map[string]bool{},
		reservations: map[string]*ReservationRecord{}}
}

func appStateOf(data []byte) (*appState, error) {
	def, err := Decode(data)
	if err != nil {
		return nil, err
	}
	a, err := def.App()
	if err != nil {
		return nil, err
	}
	return &appState{def: def, app: a, configAt: configVersion(def), constraints: parseConstraints(a), needs: a.Needs()}, nil
}

// configVersion is the version that tells old instances from new: the last config change.
func configVersion(def Definition) string {
	var vi struct {
		LastConfigChangeAt string `json:"lastConfigChangeAt"`
	}
	if raw, ok := def["versionInfo"]; ok {
		json.Unmarshal(raw, &vi)
	}
	return vi.LastConfigChangeAt
}

// handle takes one event from the master.
func (s *Service) handle(ctx context.Context, ev api.Event) {
	switch ev.Type {
	case api.EventOffers:
		for _, o := range ev.Offers.Offers {
			s.useOffer(ctx, o)
		}
	case api.EventUpdate:
		s.update(ctx, ev.Update.Status)
	case api.EventFailure:
		s.agentRemoved(ctx, ev.Failure.AgentID)
	case api.EventError:
		s.logger.Warn("the master ended the subscription", "message", ev.Error.Message)
	}
}

// update takes a task's status update into the state (observe), then, outside the lock,
// publishes its events, acknowledges it, kills a task no instance owns, and forgets an
// instance that ended.
func (s *Service) update(ctx context.Context, st api.TaskStatus) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	ss := state.ss
	o := state.observe(st, s.cfg.Clock.Now())
	s.mu.Unlock()
	s.announce(&o.actions)
	if o.killUnowned {
		s.logger.Warn("killing a task no instance owns", "task", st.TaskID)
		ss.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: st.TaskID, AgentID: st.AgentID}})
	}
	if st.UUID != "" {
		if err := ss.Acknowledge(st); err != nil {
			s.logger.Warn("acknowledge", "task", st.TaskID, "err", err)
		}
	}
	if o.forget {
		o.record.del(instanceKey(st.TaskID))
	}
	if !o.record.Empty() {
		// The instance's end (its record, and its reservation's: suspended, or to destroy) or
		// its reservation confirmed.
		if err := commit(ctx, s.store, o.record); err != nil {
			s.logger.Warn("record a task's update", "instance", st.TaskID, "err", err)
		}
	}
}

// agentRemoved forgets the reservations of an agent removed for good (its volumes are gone
// with it), recording that first; their instances start afresh elsewhere.
func (s *Service) agentRemoved(ctx context.Context, agentID string) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	a := actions{now: s.cfg.Clock.Now(), record: &change{}}
	state.dropReservations(agentID, "its agent was removed", &a)
	s.mu.Unlock()
	if !a.record.Empty() {
		if err := commit(ctx, s.store, a.record); err != nil {
			s.logger.Warn("forget the reservations of a removed agent", "agent", agentID, "err", err)
		}
	}
	s.announce(&a)
	s.poke()
}

// announce publishes the events a decision made and writes its log lines.
func (s *Service) announce(a *actions) {
	for _, l := range a.logs {
		s.logger.Log(context.Background(), l.level, l.msg, l.args...)
	}
	for _, e := range a.events {
		s.bus.publishAt(e.typ, e.fields, e.at)
	}
}

// step plans every app (decide) and does what it decided, outside the lock: records it, then
// publishes its events, sends the kills, revives or suppresses offers, asks about instances
// not reconciled and starts readiness probes. Starts happen when offers come (useOffer).
func (s *Service) step(ctx context.Context, full bool) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	a := state.decide(s.cfg.Clock.Now(), full, s.cfg.Role)
	s.mu.Unlock()
	if err := commit(ctx, s.store, a.record); err != nil {
		// Not recorded, so not sent: a kill a new leader did not know of would look to it like
		// an instance that failed. The next step decides again.
		s.logger.Warn("record kills and finished deployments; nothing killed", "err", err)
		s.mu.Lock()
		if s.st == state {
			for _, id := range a.killing {
				if in := state.instances[id]; in != nil {
					in.rec.Killing = false
					state.touch(in.rec.AppID)
				}
			}
		}
		s.mu.Unlock()
		a.kills = nil
	}
	s.announce(&a)
	for _, k := range a.kills {
		if err := state.ss.Call(api.Call{Type: api.CallKill, Kill: &k}); err != nil {
			s.logger.Warn("kill", "instance", k.TaskID, "err", err)
		}
	}
	switch {
	case a.revive:
		state.ss.Call(api.Call{Type: api.CallRevive})
	case a.suppress:
		state.ss.Call(api.Call{Type: api.CallSuppress})
	}
	if len(a.reconcile) > 0 {
		s.logger.Info("instances not reconciled yet; asking the master again", "instances", len(a.reconcile))
		if err := state.ss.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: a.reconcile}}); err != nil {
			s.logger.Warn("reconcile", "err", err)
		}
	}
	for _, p := range a.probes {
		s.probeReadiness(ctx, state, p)
	}
	if a.again {
		s.poke()
	}
}

// useOffer launches, into one offer, the instances apps wait for that fit it (placeOffer),
// recording them first; the rest of the offer is declined.
func (s *Service) useOffer(ctx context.Context, o api.Offer) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	ss := state.ss
	secrets := func(a App) (frameworks.Resolved, string) { return s.resolveSecrets(ctx, a) }
	u := state.placeOffer(o, s.cfg.Clock.Now(), secrets, func(appID string) string { return taskIDFor(appID, s.ids) })
	s.mu.Unlock()
	s.announce(&u.actions)
	refuse := 120.0 // nothing waits: keep these resources away for a while (revived on changes)
	if u.waiting {
		refuse = 5
	}
	if len(u.infos) == 0 && len(u.destroyed) == 0 {
		ss.Decline([]string{o.ID}, &api.Filters{RefuseSeconds: &refuse})
		return
	}
	if err := commit(ctx, s.store, u.record); err != nil {
		s.logger.Warn("could not record instances; declining the offer", "err", err)
		ss.Decline([]string{o.ID}, nil)
		s.mu.Lock()
		if s.st == state {
			for _, rec := range u.recs {
				state.apps[rec.AppID].want++
			}
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if s.st == state {
		state.launched(u.recs)
		state.offerRecorded(u)
	}
	s.mu.Unlock()
	ops := u.operations()
	if len(ops) == 0 { // only records forgotten
		ss.Decline([]string{o.ID}, &api.Filters{RefuseSeconds: &refuse})
		return
	}
	one := 1.0
	if err := ss.Accept([]string{o.ID}, ops, &api.Filters{RefuseSeconds: &one}); err != nil {
		s.logger.Warn("accept", "offer", o.ID, "err", err)
	}
	s.logger.Debug("launched", "instances", len(u.infos), "reserved", len(u.reserved), "destroyed", len(u.destroyed), "agent", o.AgentID)
}

// resolveSecrets reads the values of the app's secret env references and secret volumes from
// the master's secret store; it names the first one missing.
func (s *Service) resolveSecrets(ctx context.Context, a App) (frameworks.Resolved, string) {
	return frameworks.ResolveSecrets(ctx, s.m.Secret, a.Env, a.SecretVolumes(), a.Secrets)
}
