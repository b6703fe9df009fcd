package chronos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/raft"
)

// Config configures the framework: the Host it runs in, a Logger, the Name and Role it
// registers with (default "chronos" and "*"), its FailoverTimeout (a week) and Tick (1 s).
type Config = frameworks.Config

// Service is the batch framework: a leader service of the masters that starts job runs when
// their schedules or parents say, through the scheduler contract, and serves Metronome's /v1
// jobs API and Chronos's /scheduler aliases.
type Service struct {
	cfg     Config
	m       frameworks.Host // the master it runs in
	store   raft.Namespace
	logger  *slog.Logger
	wake    chan struct{}
	broken  chan error // a commit failed: the leader state is reloaded from the store
	metrics *metrics
	// checkClock says whether the master's clock may decide when runs are due
	// (Host.CheckClock; tests replace it).
	checkClock func() clock.Verdict

	writeMu sync.Mutex // serializes changes: build a batch, commit it, then act on it

	mu sync.Mutex   // guards st (and what it points to)
	st *leaderState // nil while this master does not lead, has not subscribed yet, or holds a change that failed to commit
}

// New makes the service. Register it before the master runs.
func New(cfg Config) (*Service, error) {
	cfg, err := cfg.WithDefaults("chronos")
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, m: cfg.Host, store: cfg.Host.Store(), logger: cfg.Logger.With("framework_name", cfg.Name),
		wake: make(chan struct{}, 1), broken: make(chan error, 1)}
	s.metrics = newMetrics(s)
	s.checkClock = s.m.CheckClock
	return s, nil
}

// Register adds the framework to its host: its lifecycle as the leader's work (frameworks.Driver),
// its HTTP endpoints and its metrics.
func (s *Service) Register() {
	s.driver().Register()
	s.routes()
	s.m.Metrics().MustRegister(s.metrics)
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// driver runs the framework while its master leads: it subscribes (as the same framework on
// every leader), loads the jobs and their runs (begin), reconciles the tasks of runs in flight,
// then starts runs as schedules and parents say (cycle) until leadership ends.
func (s *Service) driver() *frameworks.Driver {
	return &frameworks.Driver{Config: s.cfg, Begin: s.begin, Step: s.cycle, End: s.end,
		Wake: s.wake, Broken: s.broken,
		Buffer: 1024, Batch: 4096} // a cycle takes what has queued up
}

// begin loads the jobs and their runs for the session, commits the repairs the load needs,
// and makes them the leader state; the tasks of runs in flight are to be reconciled.
func (s *Service) begin(ctx context.Context, ss api.Session) ([]api.ReconcileTask, error) {
	select { // a failure of the last term is behind us: this load is the truth
	case <-s.broken:
	default:
	}
	l, err := load(ctx, s.store)
	if err != nil {
		return nil, err
	}
	st, fix := s.newLeaderState(ss, l)
	if err := s.store.Commit(ctx, fix); err != nil {
		return nil, err
	}
	var known []api.ReconcileTask
	for taskID, r := range st.byTask {
		known = append(known, api.ReconcileTask{TaskID: taskID, AgentID: r.task().AgentID})
	}
	s.logger.Info("batch framework running", "framework", ss.FrameworkID(), "jobs", len(st.jobs), "active_runs", len(st.active))
	s.mu.Lock() // from here on, st is read and changed under s.mu only
	s.st = st
	s.mu.Unlock()
	return known, nil
}

// end forgets the leader state.
func (s *Service) end() {
	s.mu.Lock()
	s.st = nil
	s.mu.Unlock()
}

// cycle takes a batch of events (status updates, then offers) and steps the state, in one
// change; it answers when the earliest schedule or retry is due.
func (s *Service) cycle(ctx context.Context, batch []api.Event, _ bool) (wakeAt time.Time, err error) {
	err = s.change(ctx, func(st *leaderState, w *work, now time.Time) error {
		for _, ev := range batch {
			if ev.Type == api.EventUpdate {
				s.onStatusLocked(st, ev.Update.Status, w, now)
			}
		}
		var waiting bool
		wakeAt, waiting = s.stepLocked(st, w, now)
		var queue []*Run // the waiting runs in order, worked out only when offers came
		sorted := false
		for _, ev := range batch {
			if ev.Type != api.EventOffers {
				continue
			}
			if st.clockPaused != "" {
				for _, o := range ev.Offers.Offers {
					w.declines = append(w.declines, decline{offerID: o.ID, refuse: 1})
				}
				continue
			}
			if !sorted {
				queue, sorted = st.waitingRuns(now), true
			}
			for _, o := range ev.Offers.Offers {
				queue = s.useOfferLocked(st, o, queue, w, now)
			}
			waiting = len(queue) > 0
		}
		s.offersWantedLocked(st, w, waiting)
		return nil
	})
	return wakeAt, err
}

// work is one change: the batch written to the store, then what is done once it is committed.
type work struct {
	b        raft.Batch
	launches []launch
	declines []decline
	kills    []api.KillTask
	acks     []api.TaskStatus
	calls    []api.Call
	lags     []time.Duration
}

type launch struct {
	offerID string
	infos   []api.TaskInfo
}

type decline struct {
	offerID string
	refuse  float64
}

func (w *work) put(key string, v any) {
	if i := slices.Index(w.b.Deletes, key); i >= 0 {
		w.b.Deletes = slices.Delete(w.b.Deletes, i, i+1)
	}
	w.b.Put(key, v)
}

func (w *work) del(key string) {
	delete(w.b.Puts, key)
	w.b.Delete(key)
}

func (w *work) putRun(r *Run) { w.put(runKey(r.JobID, r.ID), r) }

// errNotReady is answered (503) while this master's framework has not loaded its state.
var errNotReady = errors.New("chronos: the batch framework is not running on this master yet; retry")

// change runs fn on the leader state to build one change, commits it, then acts on it:
// launches, kills and acknowledgements happen only after their records are in the store. fn
// must check before it changes anything: an error from fn commits nothing. A failed commit
// has the state reloaded from the store.
func (s *Service) change(ctx context.Context, fn func(st *leaderState, w *work, now time.Time) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	st := s.st
	if st == nil {
		s.mu.Unlock()
		return errNotReady
	}
	w := &work{}
	v := s.checkClock()
	s.clockLocked(st, v)
	if err := fn(st, w, s.cfg.Clock.Now().Add(-v.Lag)); err != nil {
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	if err := s.store.Commit(ctx, &w.b); err != nil {
		// st holds what did not commit: nobody reads it from now on (reads wait on writeMu,
		// which is still held), and the service reloads the state from the store.
		s.mu.Lock()
		if s.st == st {
			s.st = nil
		}
		s.mu.Unlock()
		select {
		case s.broken <- err:
		default:
		}
		for _, l := range w.launches {
			st.ss.Decline([]string{l.offerID}, nil)
		}
		return fmt.Errorf("chronos: could not commit: %w", err)
	}
	s.act(st.ss, w)
	return nil
}

// clockLocked takes the master's clock verdict: while the clock is not trusted, no schedule
// fires (stepLocked) and no offer is used; the change is logged once each way.
func (s *Service) clockLocked(st *leaderState, v clock.Verdict) {
	paused := ""
	if !v.Trusted {
		paused = v.Reason
	}
	if (paused == "") == (st.clockPaused == "") {
		st.clockPaused = paused
		return
	}
	st.clockPaused = paused
	if paused != "" {
		s.logger.Warn("cron paused: no run fires while the leader's clock is not trusted", "reason", paused)
	} else {
		s.logger.Info("cron resumed: the leader's clock agrees with the other masters'")
		st.schedulesChanged = true
	}
}

// act does what a committed change decided.
func (s *Service) act(ss api.Session, w *work) {
	for _, c := range w.calls {
		ss.Call(c)
	}
	for _, k := range w.kills {
		if err := ss.Call(api.Call{Type: api.CallKill, Kill: &k}); err != nil {
			s.logger.Warn("kill", "task", k.TaskID, "err", err)
		}
	}
	one := 1.0
	for _, l := range w.launches {
		if err := ss.Accept([]string{l.offerID}, []api.Operation{{Type: api.OperationLaunch, Launch: &api.Launch{TaskInfos: l.infos}}}, &api.Filters{RefuseSeconds: &one}); err != nil {
			s.logger.Warn("accept", "offer", l.offerID, "err", err)
		}
	}
	for _, d := range w.declines {
		ss.Decline([]string{d.offerID}, &api.Filters{RefuseSeconds: &d.refuse})
	}
	for _, st := range w.acks {
		if err := ss.Acknowledge(st); err != nil {
			s.logger.Warn("acknowledge", "task", st.TaskID, "err", err)
		}
	}
	for _, l := range w.lags {
		s.metrics.lag.Observe(l.Seconds())
	}
}
