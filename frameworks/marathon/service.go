package marathon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// Config configures the framework: the Master it runs on, a Logger, the Name and Role it
// registers with (default "marathon" and "*"), its FailoverTimeout (a week) and Tick (1 s).
type Config = frameworks.Config

// Service is the Marathon-like framework: a leader service of the masters that keeps apps'
// instances running through the scheduler contract, and serves Marathon's /v2 API.
type Service struct {
	cfg    Config
	m      *master.Master
	store  *raft.Store
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
	ss          *master.Session
	apps        map[string]*appState
	instances   map[string]*instance            // by instance id, which is its task id
	byApp       map[string]map[string]*instance // app id → its instances; kept by add and remove
	deployments map[string]*Deployment
	groups      map[string]groupRecord // explicit groups (with dependencies), by id
	suppressed  bool
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
		cfg: cfg, m: cfg.Master, store: cfg.Master.Store(), logger: cfg.Logger.With("framework_name", cfg.Name),
		ids: ids, wake: make(chan struct{}, 1), bus: newEventBus(),
	}, nil
}

// Register adds the service's leader service, its /v2 endpoints and its metrics (served with the
// master's at /metrics) to the master, and tells it the name the framework registers under
// (master.RegisterEmbedded).
func (s *Service) Register() {
	s.m.RegisterLeaderService(s)
	s.m.RegisterEmbedded(s.cfg.Name)
	s.routes()
	s.m.Metrics().MustRegister(newMetrics(s))
}

// Name is the leader service's name.
func (s *Service) Name() string { return "marathon" }

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run subscribes with the master (as the same framework on every leader), loads the apps,
// reconciles every instance it knows, then keeps apps at their wanted instances until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // ends the event reader however Run returns
	defer cancel()
	v, err := s.store.View(ctx, raft.Stale)
	if err != nil {
		return err
	}
	fwID := ""
	if b, ok := v.Get(Namespace, frameworkIDKey); ok {
		json.Unmarshal(b, &fwID)
	}
	ss, err := s.cfg.Subscribe(ctx, fwID)
	if err != nil {
		return err
	}
	defer ss.Close()
	if fwID != ss.FrameworkID() {
		c := &change{}
		c.put(frameworkIDKey, ss.FrameworkID())
		if err := commit(ctx, s.store, c); err != nil {
			return err
		}
	}
	st, err := s.load(ss)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.st = nil
		s.mu.Unlock()
	}()
	// Every instance loaded is unknown until the master answers for its task: its app waits
	// for that (planLocked), and the question is asked again until it is answered.
	var known []api.ReconcileTask
	for _, in := range st.instances {
		known = append(known, api.ReconcileTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
	}
	if len(known) > 0 {
		st.reconcileAsked = s.cfg.Clock.Now()
		if err := ss.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: known}}); err != nil {
			return err
		}
	}
	s.logger.Info("service framework running", "framework", ss.FrameworkID(), "apps", len(st.apps), "instances", len(st.instances))
	s.step(ctx, true)

	events, ended := ss.Events(ctx, 0)
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-ended:
			return fmt.Errorf("marathon: subscription ended: %w", err)
		case ev := <-events:
			s.handle(ctx, ev)
		case <-s.wake:
		case <-tick.C:
			s.step(ctx, true)
			continue
		}
		s.step(ctx, false)
	}
}

// load reads apps, instances and deployments from the store.
func (s *Service) load(ss *master.Session) (*leaderState, error) {
	v, err := s.store.View(context.Background(), raft.Stale)
	if err != nil {
		return nil, err
	}
	st := newLeaderState(ss)
	var bad error
	v.List(Namespace, "app/", func(_ string, data []byte) bool {
		var as *appState
		if as, bad = appStateOf(data); bad == nil {
			st.apps[as.app.ID] = as
		}
		return bad == nil
	})
	v.List(Namespace, "instance/", func(_ string, data []byte) bool {
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
	v.List(Namespace, "group/", func(_ string, data []byte) bool {
		var g groupRecord
		if bad = json.Unmarshal(data, &g); bad == nil {
			st.groups[g.ID] = g
		}
		return bad == nil
	})
	v.List(Namespace, "deployment/", func(_ string, data []byte) bool {
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

func newLeaderState(ss *master.Session) *leaderState {
	return &leaderState{ss: ss, apps: map[string]*appState{}, instances: map[string]*instance{}, byApp: map[string]map[string]*instance{},
		deployments: map[string]*Deployment{}, groups: map[string]groupRecord{}, dirty: map[string]bool{}, waiting: map[string]bool{}}
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
	case api.EventError:
		s.logger.Warn("the master ended the subscription", "message", ev.Error.Message)
	}
}

// update takes a task's status update (observeLocked), then acknowledges it, kills a task no
// instance owns, and forgets an instance that ended.
func (s *Service) update(ctx context.Context, st api.TaskStatus) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	ss := state.ss
	o := s.observeLocked(state, st)
	s.mu.Unlock()
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
		forget := &change{}
		forget.del(instanceKey(st.TaskID))
		if err := commit(ctx, s.store, forget); err != nil {
			s.logger.Warn("forget an ended instance", "instance", st.TaskID, "err", err)
		}
	}
}

// observed is what a status update leaves to do outside the lock.
type observed struct {
	killUnowned bool // no instance owns the task, which has not ended: kill it
	forget      bool // the instance ended: delete its record
}

// observeLocked takes a status update into the state, without I/O: the instance's state and
// health change, and it is reconciled; an ended instance is forgotten (and replaced, with
// backoff, if nobody asked it to stop).
func (s *Service) observeLocked(state *leaderState, st api.TaskStatus) observed {
	in := state.instances[st.TaskID]
	if in == nil {
		return observed{killUnowned: !st.State.IsTerminal() && st.State != task.Unknown}
	}
	s.publishUpdateLocked(in, st)
	state.touch(in.rec.AppID)
	if st.State.IsTerminal() || st.State == task.Unknown {
		state.remove(st.TaskID)
		if as := state.apps[in.rec.AppID]; as != nil && !in.rec.Killing {
			s.failedLocked(as, in, st)
		}
		return observed{forget: true}
	}
	in.state, in.message, in.reconciled = st.State, st.Message, true
	if st.Healthy != nil {
		h := *st.Healthy
		if in.healthy == nil || *in.healthy != h {
			s.bus.publish(EventHealthChanged, map[string]any{"appId": in.rec.AppID, "taskId": in.rec.ID, "instanceId": in.rec.ID, "version": in.rec.Version, "alive": h})
		}
		in.healthy = &h
	}
	switch st.State {
	case task.Running:
		if in.startedAt == nil {
			t := st.Timestamp
			in.startedAt = &t
		}
		in.unreachableSince = time.Time{}
	case task.Unreachable:
		if in.unreachableSince.IsZero() {
			in.unreachableSince = s.cfg.Clock.Now()
		}
	}
	return observed{}
}

// publishUpdateLocked sends status_update_event and instance_changed_event for an update.
func (s *Service) publishUpdateLocked(in *instance, st api.TaskStatus) {
	s.bus.publish(EventStatusUpdate, map[string]any{
		"slaveId": in.rec.AgentID, "taskId": in.rec.ID, "taskStatus": string(st.State), "message": st.Message,
		"appId": in.rec.AppID, "host": in.rec.Host, "ports": in.rec.Ports, "version": in.rec.Version, "instanceId": in.rec.ID,
	})
	if in.state != st.State {
		s.bus.publish(EventInstanceChanged, map[string]any{
			"instanceId": in.rec.ID, "condition": condition(st.State), "runSpecId": in.rec.AppID, "agentId": in.rec.AgentID,
			"host": in.rec.Host, "runSpecVersion": in.rec.Version,
		})
	}
}

// condition is Marathon's name of an instance's condition for a task state.
func condition(s task.State) string {
	name := strings.TrimPrefix(string(s), "TASK_")
	if name == "" {
		return ""
	}
	return name[:1] + strings.ToLower(name[1:])
}

// failedLocked records an instance that ended on its own — whether it ran or its launch failed
// (TASK_ERROR, TASK_FAILED before TASK_RUNNING, TASK_DROPPED, an agent's refusal): the app's
// launches wait backoffSeconds × backoffFactor^(failures-1), at most maxLaunchDelaySeconds.
func (s *Service) failedLocked(as *appState, in *instance, st api.TaskStatus) {
	now := s.cfg.Clock.Now()
	as.failures++
	delay := LaunchDelay(as.app, as.failures)
	as.failedAt, as.delayUntil = now, now.Add(delay)
	as.lastFail = &TaskFailure{AppID: as.app.ID, Host: in.rec.Host, Message: st.Message, State: string(st.State), TaskID: in.rec.ID,
		Timestamp: st.Timestamp, Version: in.rec.Version, SlaveID: in.rec.AgentID}
	s.logger.Info("instance ended; replacing it", "app", as.app.ID, "instance", in.rec.ID, "state", st.State, "message", st.Message, "delay", delay)
}

// backoffResetAfter is how long an instance launched after the app's latest failure must run
// (healthy, if the app checks health) before the app's launch backoff starts over: a command
// that runs and fails a moment later keeps backing off, and so does a launch that fails again
// and again beside instances that have long been running (they prove nothing about it).
const backoffResetAfter = 10 * time.Second

// probeReadiness runs an instance's readiness checks from the leader, as Marathon does, until
// they all pass, the instance is gone, or the service stops leading.
func (s *Service) probeReadiness(ctx context.Context, state *leaderState, a App, in *instance) {
	names := a.PortNames()
	rec := in.rec // the caller holds s.mu; the loop reads where the instance is without it
	go func() {
		client := &http.Client{}
		for {
			ready := true
			for _, rc := range a.ReadinessChecks {
				if !readinessPasses(ctx, client, rc, rec, names) {
					ready = false
					break
				}
			}
			s.mu.Lock()
			current := s.st == state && state.instances[in.rec.ID] == in
			if ready && current {
				in.ready, in.probing = true, false
				state.touch(in.rec.AppID)
				s.bus.publish(EventInstanceChanged, map[string]any{"instanceId": in.rec.ID, "condition": "Ready", "runSpecId": in.rec.AppID,
					"agentId": in.rec.AgentID, "host": in.rec.Host, "runSpecVersion": in.rec.Version})
			}
			s.mu.Unlock()
			if ready || !current {
				s.poke()
				return
			}
			interval := 30 * time.Second
			if n := a.ReadinessChecks[0].IntervalSeconds; n > 0 {
				interval = time.Duration(n) * time.Second
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
}

// readinessPasses makes one readiness request.
func readinessPasses(ctx context.Context, client *http.Client, rc ReadinessCheck, rec InstanceRecord, portNames []string) bool {
	i := slices.Index(portNames, rc.PortName)
	if i < 0 || i >= len(rec.Ports) {
		return false
	}
	scheme := "http"
	if rc.Protocol == "HTTPS" {
		scheme = "https"
	}
	path := rc.Path
	if path == "" {
		path = "/"
	}
	timeout := 10 * time.Second
	if rc.TimeoutSeconds > 0 {
		timeout = time.Duration(rc.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(rec.Host, strconv.Itoa(rec.Ports[i])), path), nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	codes := rc.HTTPStatusCodesForReady
	if len(codes) == 0 {
		codes = []int{http.StatusOK}
	}
	return slices.Contains(codes, resp.StatusCode)
}

// LaunchDelay is the wait before launching again after the n-th failure in a row.
func LaunchDelay(a App, failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := a.BackoffSeconds * math.Pow(a.BackoffFactor, float64(failures-1))
	d = math.Min(d, a.MaxLaunchDelaySeconds)
	return time.Duration(d * float64(time.Second))
}

// reconcileRetry is how long instances may stay unreconciled before they are asked about
// again (an answer lost with a subscription, a master that held the question).
const reconcileRetry = 10 * time.Second

// stepMoves is what a planning step decided to do outside the lock, in this order: record (the
// kills decided, deployments advanced or finished) through raft, then send the kills — so a
// new leader knows of every kill sent — then revive or suppress offers, and ask again about
// instances still not reconciled.
type stepMoves struct {
	record           *change
	kills            []api.KillTask
	killing          []string // instances this step marked Killing (unmarked if the record fails)
	revive, suppress bool
	reconcile        []api.ReconcileTask
}

// step plans every app (planLocked) and does what it decided: kills now, starts when offers
// come.
func (s *Service) step(ctx context.Context, full bool) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	mv := s.planLocked(ctx, state, s.cfg.Clock.Now(), full)
	s.mu.Unlock()
	if err := commit(ctx, s.store, mv.record); err != nil {
		// Not recorded, so not sent: a kill a new leader did not know of would look to it like
		// an instance that failed. The next step decides again.
		s.logger.Warn("record kills and finished deployments; nothing killed", "err", err)
		s.mu.Lock()
		if s.st == state {
			for _, id := range mv.killing {
				if in := state.instances[id]; in != nil {
					in.rec.Killing = false
					state.touch(in.rec.AppID)
				}
			}
		}
		s.mu.Unlock()
		mv.kills = nil
	}
	for _, k := range mv.kills {
		if err := state.ss.Call(api.Call{Type: api.CallKill, Kill: &k}); err != nil {
			s.logger.Warn("kill", "instance", k.TaskID, "err", err)
		}
	}
	switch {
	case mv.revive:
		state.ss.Call(api.Call{Type: api.CallRevive})
	case mv.suppress:
		state.ss.Call(api.Call{Type: api.CallSuppress})
	}
	if len(mv.reconcile) > 0 {
		s.logger.Info("instances not reconciled yet; asking the master again", "instances", len(mv.reconcile))
		if err := state.ss.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: mv.reconcile}}); err != nil {
			s.logger.Warn("reconcile", "err", err)
		}
	}
}

// planLocked plans every app (all of them when full, else those touched since): decides the
// kills and how many instances each app waits for (as.want, started into offers by useOffer),
// advances and finishes deployments, and says whether offers are wanted. It changes only the
// state in memory; what to record and send is in the moves it answers. An app with an
// instance not reconciled yet gets no move at all: after a failover an instance loads with its
// state and health unknown, and neither a kill (is it healthy?) nor a launch (does it still
// run?) can respect the upgrade strategy's bounds until the master has answered for it.
func (s *Service) planLocked(ctx context.Context, state *leaderState, now time.Time, full bool) stepMoves {
	mv := stepMoves{record: &change{}}
	done := mv.record
	apps := sortedKeys(state.dirty)
	if full {
		apps = sortedKeys(state.apps)
	}
	clear(state.dirty)
	newlyWaiting := false
	for _, appID := range apps {
		as := state.apps[appID]
		if as == nil {
			delete(state.waiting, appID)
			continue
		}
		if state.heldByStep(appID) {
			// Its deployment has not reached its step: what runs stays as it is.
			as.setWant(0, now)
			delete(state.waiting, appID)
			continue
		}
		insts := state.appInstances(appID)
		target := as.app.Instances
		if as.deleted {
			target = 0
			if len(insts) == 0 {
				delete(state.apps, appID)
				delete(state.waiting, appID)
				s.bus.publish(EventAppTerminated, map[string]any{"appId": appID})
				continue
			}
		}
		var view []PlanInstance
		for _, in := range insts {
			if !in.unreachableSince.IsZero() && now.Sub(in.unreachableSince) >= time.Duration(as.app.UnreachableStrategy.InactiveAfterSeconds*float64(time.Second)) {
				if now.Sub(in.unreachableSince) >= time.Duration(as.app.UnreachableStrategy.ExpungeAfterSeconds*float64(time.Second)) {
					// Expunged: forgotten; its task is killed should its agent come back.
					state.remove(in.rec.ID)
					done.del(instanceKey(in.rec.ID))
					mv.kills = append(mv.kills, api.KillTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
				}
				continue // inactive: it does not count, a replacement is started
			}
			isNew := in.rec.Version == as.configAt && !as.deleted
			running := in.state == task.Running
			checked := len(as.app.HealthChecks) > 0
			healthy := running && (!checked || in.healthy != nil && *in.healthy)
			if isNew && healthy && len(as.app.ReadinessChecks) > 0 && !in.ready {
				if !in.probing && !in.rec.Killing {
					in.probing = true
					s.probeReadiness(ctx, state, as.app, in)
				}
				healthy = false // a new instance counts once it is ready
			}
			view = append(view, PlanInstance{
				ID: in.rec.ID, New: isNew, Running: running, Healthy: healthy,
				HealthUnknown: running && checked && in.healthy == nil, Unreconciled: !in.reconciled,
				Killing: in.rec.Killing, StagedAt: in.rec.StagedAt,
			})
			if !in.reconciled && !now.Before(state.reconcileAsked.Add(reconcileRetry)) {
				mv.reconcile = append(mv.reconcile, api.ReconcileTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
			}
		}
		if as.failures > 0 {
			for _, in := range insts {
				if in.state == task.Running && in.startedAt != nil && now.Sub(*in.startedAt) >= backoffResetAfter &&
					!in.rec.StagedAt.Before(as.failedAt) &&
					(len(as.app.HealthChecks) == 0 || in.healthy != nil && *in.healthy) {
					as.failures, as.delayUntil = 0, time.Time{} // it runs (healthy) again: the backoff starts over
					break
				}
			}
		}
		p := PlanApp(target, as.app.UpgradeStrategy, as.app.KillSelection, view)
		for _, id := range p.Kill {
			in := state.instances[id]
			in.rec.Killing = true
			done.put(instanceKey(id), in.rec)
			kill := api.KillTask{TaskID: id, AgentID: in.rec.AgentID}
			if g := as.app.TaskKillGracePeriodSeconds; g != nil {
				kill.GracePeriodSeconds = *g
			}
			mv.kills = append(mv.kills, kill)
			mv.killing = append(mv.killing, id)
		}
		as.setWant(p.Start, now)
		if as.want > 0 && !now.Before(as.delayUntil) {
			if !state.waiting[appID] {
				newlyWaiting = true
			}
			state.waiting[appID] = true
		} else {
			delete(state.waiting, appID)
		}
	}
	if len(mv.reconcile) > 0 {
		state.reconcileAsked = now
	}
	planned := map[string]bool{}
	for _, id := range apps {
		planned[id] = true
	}
	for id, d := range state.deployments {
		if !full && !affects(d, planned) {
			continue
		}
		for state.stepSettled(d) {
			s.bus.publish(EventDeploymentStepOK, map[string]any{"plan": planWire(d, s.cfg.Role), "currentStep": d.Steps[min(d.CurrentStep, len(d.Steps))-1]})
			if d.CurrentStep >= d.TotalSteps {
				delete(state.deployments, id)
				done.del(deploymentKey(id))
				s.bus.publish(EventDeploymentSuccess, map[string]any{"id": d.ID, "plan": planWire(d, s.cfg.Role)})
				s.logger.Info("deployment finished", "deployment", id, "apps", strings.Join(d.AffectedApps, ","))
				break
			}
			d.CurrentStep++
			d.CurrentActions = d.Steps[d.CurrentStep-1].Actions
			done.put(deploymentKey(id), d)
			for _, a := range d.CurrentActions {
				state.touch(a.App)
			}
			s.poke() // plan the next step's apps now
		}
	}
	waiting := len(state.waiting) > 0
	switch {
	case waiting && (state.suppressed || newlyWaiting):
		// Something new waits: offers declined while nothing did (refused for a while) come
		// back at once.
		state.suppressed = false
		mv.revive = true
	case !waiting && !state.suppressed:
		state.suppressed = true
		mv.suppress = true
	}
	return mv
}

// add puts an instance in the state.
func (st *leaderState) add(in *instance) {
	st.instances[in.rec.ID] = in
	m := st.byApp[in.rec.AppID]
	if m == nil {
		m = map[string]*instance{}
		st.byApp[in.rec.AppID] = m
	}
	m[in.rec.ID] = in
}

// remove takes an instance out of the state.
func (st *leaderState) remove(id string) {
	in := st.instances[id]
	if in == nil {
		return
	}
	delete(st.instances, id)
	delete(st.byApp[in.rec.AppID], id)
	if len(st.byApp[in.rec.AppID]) == 0 {
		delete(st.byApp, in.rec.AppID)
	}
}

// affects says whether a deployment changes one of the apps.
func affects(d *Deployment, apps map[string]bool) bool {
	for _, a := range d.AffectedApps {
		if apps[a] {
			return true
		}
	}
	return false
}

// appInstances lists an app's instances, oldest first.
func (st *leaderState) appInstances(appID string) []*instance {
	out := make([]*instance, 0, len(st.byApp[appID]))
	for _, in := range st.byApp[appID] {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].rec.StagedAt.Equal(out[j].rec.StagedAt) {
			return out[i].rec.StagedAt.Before(out[j].rec.StagedAt)
		}
		return out[i].rec.ID < out[j].rec.ID
	})
	return out
}

// appSettled says whether an app has reached what its definition asks: only instances of its
// version, as many as wanted, running and healthy (or, deleted, none left).
func (st *leaderState) appSettled(appID string) bool {
	as := st.apps[appID]
	insts := st.appInstances(appID)
	if as == nil || as.deleted {
		return len(insts) == 0
	}
	for _, in := range insts {
		if in.rec.Killing || in.rec.Version != as.configAt {
			return false
		}
		if in.state != task.Running || len(as.app.HealthChecks) > 0 && (in.healthy == nil || !*in.healthy) {
			return false
		}
		if len(as.app.ReadinessChecks) > 0 && !in.ready {
			return false
		}
	}
	return len(insts) == as.app.Instances
}

// useOffer launches, into one offer, the instances apps wait for that fit it (resources, ports,
// constraints), recording them first; the rest of the offer is declined.
func (s *Service) useOffer(ctx context.Context, o api.Offer) {
	s.mu.Lock()
	state := s.st
	if state == nil {
		s.mu.Unlock()
		return
	}
	ss := state.ss
	now := s.cfg.Clock.Now()
	left := o.Resources
	place := Place{Hostname: o.Hostname, Attributes: o.Attributes}
	c := &change{}
	var infos []api.TaskInfo
	var recs []InstanceRecord
	waiting := false
	for _, appID := range sortedKeys(state.waiting) {
		as := state.apps[appID]
		if as == nil || as.deleted || as.want == 0 || now.Before(as.delayUntil) {
			continue
		}
		waiting = true
		state.touch(appID)
		secrets, missing := s.resolveSecrets(ctx, as.app)
		if missing != "" {
			// Nothing can run without its secrets: wait, and say why in lastTaskFailure.
			as.delayUntil = now.Add(5 * time.Second)
			as.lastFail = &TaskFailure{AppID: as.app.ID, Message: missing, State: string(task.Error), Timestamp: now, Version: as.configAt}
			s.logger.Warn("app cannot launch", "app", as.app.ID, "why", missing)
			continue
		}
		var placed []Place
		for _, in := range state.appInstances(appID) {
			placed = append(placed, Place{Hostname: in.rec.Host, Attributes: in.rec.Attributes})
		}
		launched := 0
		var why []frameworks.Mismatch
		for as.want > 0 {
			var ports pickedPorts
			if ports, why = fit(as, left, o, placed); len(why) > 0 {
				break
			}
			need := resources.Resources{CPUs: as.app.CPUs, Mem: as.app.Mem, Disk: as.app.Disk, Ports: ports.ranges}
			left, _ = left.Subtract(need)
			rec := InstanceRecord{
				ID: taskIDFor(as.app.ID, s.ids), AppID: as.app.ID, Version: as.configAt, AgentID: o.AgentID,
				Host: o.Hostname, Attributes: o.Attributes, Ports: ports.list, StagedAt: now,
			}
			c.put(instanceKey(rec.ID), rec)
			recs = append(recs, rec)
			ti := taskInfo(as, rec, need)
			ti.SecretEnv, ti.SecretFiles = secrets.Env, secrets.Files
			infos = append(infos, ti)
			placed = append(placed, place)
			as.want--
			launched++
		}
		if as.offers != nil {
			if launched > 0 {
				as.offers.Used(o, now)
			} else {
				as.offers.NotUsed(o, why, now)
			}
		}
	}
	s.mu.Unlock()
	refuse := 120.0 // nothing waits: keep this agent away for a while (revived on changes)
	if waiting {
		refuse = 5
	}
	if len(infos) == 0 {
		ss.Decline([]string{o.ID}, &api.Filters{RefuseSeconds: &refuse})
		return
	}
	if err := commit(ctx, s.store, c); err != nil {
		s.logger.Warn("could not record instances; declining the offer", "err", err)
		ss.Decline([]string{o.ID}, nil)
		s.mu.Lock()
		if s.st == state {
			for _, rec := range recs {
				state.apps[rec.AppID].want++
			}
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if s.st == state {
		for _, rec := range recs {
			state.add(&instance{rec: rec, state: task.Staging, reconciled: true}) // launched by this leader: the master knows it
		}
	}
	s.mu.Unlock()
	one := 1.0
	if err := ss.Accept([]string{o.ID}, []api.Operation{{Type: api.OperationLaunch, Launch: &api.Launch{TaskInfos: infos}}}, &api.Filters{RefuseSeconds: &one}); err != nil {
		s.logger.Warn("accept", "offer", o.ID, "err", err)
	}
	s.logger.Debug("launched", "instances", len(infos), "agent", o.AgentID)
}

// fit says whether one more instance of an app fits what is left of an offer, given where its
// instances are (placed), with the host ports it would take; if not, every reason why, in
// Marathon's names and Agora's words.
func fit(as *appState, left resources.Resources, o api.Offer, placed []Place) (pickedPorts, []frameworks.Mismatch) {
	var why []frameworks.Mismatch
	place := Place{Hostname: o.Hostname, Attributes: o.Attributes}
	for _, c := range as.constraints {
		if !c.Allows(place, placed) {
			why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: c.why(place, placed)})
		}
	}
	for _, u := range as.needs.Unmet(o.Attributes) {
		why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: frameworks.UnmetDetail(as.needs, u, o.Hostname)})
	}
	a := as.app
	why = append(why, frameworks.ShortOf(resources.Resources{CPUs: a.CPUs, Mem: a.Mem, Disk: a.Disk}, left, o.Hostname)...)
	want := a.RequiredPorts()
	ports, ok := pickPorts(left.Ports, want)
	if !ok {
		why = append(why, frameworks.Mismatch{Reason: frameworks.InsufficientPorts, Detail: portsDetail(want, left.Ports, o.Hostname)})
	}
	return ports, why
}

// portsDetail says which host ports an instance needs that an offer lacks.
func portsDetail(want []int, free resources.Ranges, host string) string {
	var fixed []string
	for _, p := range want {
		if p != 0 {
			fixed = append(fixed, strconv.Itoa(p))
		}
	}
	offered := free.String()
	if len(free) == 0 {
		offered = "none"
	}
	if len(fixed) > 0 {
		return fmt.Sprintf("needs %d ports, fixed %s; %s offers %s", len(want), strings.Join(fixed, ","), host, offered)
	}
	return fmt.Sprintf("needs %d ports, %s offers %s", len(want), host, offered)
}

// resolveSecrets reads the values of the app's secret env references and secret volumes from
// the master's secret store; it names the first one missing.
func (s *Service) resolveSecrets(ctx context.Context, a App) (frameworks.Resolved, string) {
	return frameworks.ResolveSecrets(ctx, s.m.Secret, a.Env, a.SecretVolumes(), a.Secrets)
}

func parseConstraints(a App) []Constraint {
	var out []Constraint
	for _, raw := range a.Constraints {
		if c, err := ParseConstraint(raw); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// taskIDFor makes a task id as Marathon does: the app's path with '_' for '/', a dot, a uuid.
func taskIDFor(appID string, ids *id.Generator) string {
	u, err := ids.UUID()
	if err != nil {
		u = fmt.Sprint(time.Now().UnixNano())
	}
	return strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_") + "." + u
}

// taskInfo is the launch of one instance.
func taskInfo(as *appState, rec InstanceRecord, res resources.Resources) api.TaskInfo {
	a := as.app
	env := frameworks.PlainEnv(a.Env)
	env["MARATHON_APP_ID"] = a.ID
	env["MARATHON_APP_VERSION"] = rec.Version
	if img := a.Image(); img != "" {
		env["MARATHON_APP_DOCKER_IMAGE"] = img
	}
	ti := api.TaskInfo{
		TaskID: rec.ID, Name: a.ID, Resources: res, Image: a.Image(), Cmd: a.Cmd, Args: a.Args, Env: env,
		Labels: a.Labels, PortNames: a.PortNames(), PortProtocols: a.PortProtocols(), HealthChecks: a.HealthChecks,
		Privileged: as.needs.Privileged, User: as.needs.User, Volumes: as.needs.Volumes,
		Artifacts: a.Artifacts(),
	}
	if a.Container != nil && a.Container.Docker != nil {
		ti.ForcePull = a.Container.Docker.ForcePullImage
	}
	if ti.Image == "" && ti.Cmd == "" && len(a.Args) > 0 {
		ti.Cmd, ti.Args = shellJoin(a.Args), nil // no image: the args are the command
	}
	if g := a.TaskKillGracePeriodSeconds; g != nil {
		ti.KillGracePeriodSeconds = *g
	}
	return ti
}

// shellJoin quotes words for sh -c.
func shellJoin(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("'" + strings.ReplaceAll(w, "'", `'\''`) + "'")
	}
	return b.String()
}

// pickedPorts are the host ports chosen for an instance.
type pickedPorts struct {
	list   []int
	ranges resources.Ranges
}

// pickPorts chooses host ports from what an offer has: each wanted port that is fixed must be
// free in the offer; each 0 takes the lowest free one.
func pickPorts(free resources.Ranges, want []int) (pickedPorts, bool) {
	var out pickedPorts
	taken := map[uint64]bool{}
	inOffer := func(p uint64) bool {
		for _, r := range free {
			if p >= r.Begin && p <= r.End {
				return true
			}
		}
		return false
	}
	for _, w := range want {
		if w == 0 {
			continue
		}
		p := uint64(w)
		if !inOffer(p) || taken[p] {
			return out, false
		}
		taken[p] = true
	}
	for _, w := range want {
		p := uint64(w)
		if w == 0 {
			found := false
			for _, r := range free {
				for q := r.Begin; q <= r.End && !found; q++ {
					if !taken[q] {
						p, found = q, true
					}
				}
				if found {
					break
				}
			}
			if !found {
				return out, false
			}
			taken[p] = true
		}
		out.list = append(out.list, int(p))
		out.ranges = out.ranges.Add(resources.Ranges{{Begin: p, End: p}})
	}
	return out, true
}
