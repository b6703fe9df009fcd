package chronos

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
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
	store   *raft.Store
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

// leaderState is the framework's memory while it leads: the store's jobs, cursors, runs and
// histories, and which task belongs to which run.
type leaderState struct {
	ss         api.Session
	jobs       map[string]*jobState
	active     map[*Run]bool   // runs not ended
	byTask     map[string]*Run // live attempts by task id
	lastKill   map[string]time.Time
	suppressed bool
	// clockPaused says why no schedule fires now: the master's clock is not trusted (""
	// while it is).
	clockPaused string
	// nextDue is when the earliest schedule is next due; schedulesChanged makes the next step
	// look at every schedule again (a job was added, changed or removed).
	nextDue          time.Time
	schedulesChanged bool
	// children are the jobs that depend on each job, sorted; nil after a job change, built
	// again when next needed (a run's success must not walk every job).
	children map[string][]string
	// waits says, of each run waiting for an offer, what the offers judged for it said
	// (memory only, as Marathon's; a run launched, ended or retrying later has none).
	waits map[*Run]*frameworks.OfferStats
}

// offerStats are the run's offer stats, started for its present attempt when there are none.
func (st *leaderState) offerStats(r *Run) *frameworks.OfferStats {
	ws := st.waits[r]
	if ws == nil {
		ws = frameworks.NewOfferStats(r.waitingSince())
		st.waits[r] = ws
	}
	return ws
}

// jobsChanged is called after a job is added, changed or removed: what is derived from the
// set of jobs is worked out again.
func (st *leaderState) jobsChanged() {
	st.schedulesChanged = true
	st.children = nil
}

// dependants lists the jobs that depend on id, sorted.
func (st *leaderState) dependants(id string) []string {
	if st.children == nil {
		st.children = map[string][]string{}
		for _, child := range slices.Sorted(maps.Keys(st.jobs)) {
			for _, p := range st.jobs[child].job.Dependencies {
				st.children[p] = append(st.children[p], child)
			}
		}
	}
	return st.children[id]
}

type jobState struct {
	job         *Job
	plans       map[string]Plan      // by schedule id
	next        map[string]time.Time // when each schedule is next due (zero: never)
	cursors     map[string]time.Time
	runs        map[string]*Run
	hist        *History
	constraints []compiled
	needs       hostaccess.Needs // of its runs: root, host volumes (what only some agents allow)
	// done are due times (unix ns, by schedule) after the cursor that already have a run: a
	// cursor found beyond the clock was moved back, and these must not run a second time.
	done map[string]map[int64]bool
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
	return &frameworks.Driver{Config: s.cfg, Namespace: Namespace, Begin: s.begin, Step: s.cycle, End: s.end,
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
	if err := s.store.CommitBatch(ctx, Namespace, fix); err != nil {
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

// newLeaderState builds the memory from what was loaded; fix holds repairs (cursors a job
// lacks, runs of jobs that are gone).
func (s *Service) newLeaderState(ss api.Session, l *loaded) (*leaderState, *raft.Batch) {
	now := s.cfg.Clock.Now()
	st := &leaderState{ss: ss, jobs: map[string]*jobState{}, active: map[*Run]bool{}, byTask: map[string]*Run{}, lastKill: map[string]time.Time{},
		waits: map[*Run]*frameworks.OfferStats{}, schedulesChanged: true}
	fix := &raft.Batch{}
	for id, j := range l.jobs {
		h := l.histories[id]
		if h == nil {
			h = &History{}
		}
		js := newJobState(j, h)
		for _, sc := range j.Schedules {
			c, ok := l.cursors[id][sc.ID]
			if !ok {
				c = now
				fix.Put(cursorKey(id, sc.ID), c)
			}
			js.setCursor(sc.ID, c)
		}
		st.jobs[id] = js
	}
	for job, runs := range l.runs {
		js := st.jobs[job]
		for _, r := range runs {
			if js == nil {
				fix.Delete(runKey(job, r.ID))
				continue
			}
			js.runs[r.ID] = r
			if r.ScheduledAt != nil && r.ScheduledAt.After(js.cursors[r.ScheduleID]) {
				// Due after its schedule's cursor yet run already: left by a cursor moved back
				// (distrustCursorLocked) in an earlier term. It must not run again.
				if js.done[r.ScheduleID] == nil {
					js.done[r.ScheduleID] = map[int64]bool{}
				}
				js.done[r.ScheduleID][r.ScheduledAt.UnixNano()] = true
			}
			if r.Active() {
				st.active[r] = true
				if t := r.liveTask(); t != nil {
					st.byTask[t.ID] = r
				}
			}
		}
	}
	return st, fix
}

// distrustCursorLocked moves back a schedule's cursor found beyond this leader's clock by more than
// the masters' clocks may disagree: written by a leader whose clock ran ahead (or before every
// clock stepped back), it would hold every run until the clock reaches it. The cursor becomes
// now; the missed records of due times still to come are withdrawn (nothing can have been
// missed before it was due), and the due times to come that already have a run are kept in
// done, so that they do not run a second time. It is called only while the clock is trusted
// (stepLocked): a leader whose own clock is behind must not take the others' cursors for
// future ones.
func (s *Service) distrustCursorLocked(js *jobState, sid string, now time.Time, w *work) {
	c := js.cursors[sid]
	kept := js.hist.MissedRuns[:0:0]
	withdrawn := 0
	for _, m := range js.hist.MissedRuns {
		if m.ScheduleID == sid && m.ScheduledAt.After(now) {
			withdrawn++
			continue
		}
		kept = append(kept, m)
	}
	if withdrawn > 0 {
		js.hist.MissedRuns = kept
		js.hist.MissedCount = max(js.hist.MissedCount-withdrawn, 0)
		w.put(historyKey(js.job.ID), js.hist)
	}
	ran := 0
	for _, r := range js.runs {
		if r.ScheduleID == sid && r.ScheduledAt != nil && r.ScheduledAt.After(now) {
			if js.done[sid] == nil {
				js.done[sid] = map[int64]bool{}
			}
			js.done[sid][r.ScheduledAt.UnixNano()] = true
			ran++
		}
	}
	s.logger.Warn("a schedule's cursor is ahead of this leader's clock beyond --max-clock-skew (a leader's clock ran ahead); moved back to now",
		"job", js.job.ID, "schedule", sid, "cursor", c.Format(time.RFC3339Nano), "now", now.Format(time.RFC3339Nano),
		"missed_records_withdrawn", withdrawn, "future_runs_kept", ran)
	js.setCursor(sid, now)
	w.put(cursorKey(js.job.ID, sid), now)
}

func newJobState(j *Job, h *History) *jobState {
	js := &jobState{job: j, plans: map[string]Plan{}, next: map[string]time.Time{}, cursors: map[string]time.Time{}, runs: map[string]*Run{}, hist: h,
		needs: j.Run.Needs(), done: map[string]map[int64]bool{}}
	for _, sc := range j.Schedules {
		if p, err := ParseSchedule(sc); err == nil {
			js.plans[sc.ID] = p
		}
	}
	if j.Run.Placement != nil {
		for _, c := range j.Run.Placement.Constraints {
			if cc, err := c.compile(); err == nil {
				js.constraints = append(js.constraints, cc)
			}
		}
	}
	return js
}

// setCursor moves a schedule's cursor and when it is next due.
func (js *jobState) setCursor(sid string, c time.Time) {
	js.cursors[sid] = c
	p, ok := js.plans[sid]
	if !ok || !*p.Schedule.Enabled {
		js.next[sid] = time.Time{}
		return
	}
	js.next[sid] = p.Next(c)
}

// activeRuns lists the job's runs that have not ended, oldest first.
func (js *jobState) activeRuns() []*Run {
	var out []*Run
	for _, r := range js.runs {
		if r.Active() {
			out = append(out, r)
		}
	}
	sortRuns(out)
	return out
}

func sortRuns(runs []*Run) {
	sort.Slice(runs, func(i, j int) bool {
		if !runs[i].CreatedAt.Equal(runs[j].CreatedAt) {
			return runs[i].CreatedAt.Before(runs[j].CreatedAt)
		}
		return runs[i].ID < runs[j].ID
	})
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
	if err := s.store.CommitBatch(ctx, Namespace, &w.b); err != nil {
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

// onStatusLocked takes a task's status update.
func (s *Service) onStatusLocked(st *leaderState, ts api.TaskStatus, w *work, now time.Time) {
	if ts.UUID != "" {
		w.acks = append(w.acks, ts)
	}
	r := st.byTask[ts.TaskID]
	if r == nil {
		if !ts.State.IsTerminal() && ts.State != task.Unknown && ts.State != task.Unreachable {
			s.logger.Warn("killing a task no run owns", "task", ts.TaskID)
			w.kills = append(w.kills, api.KillTask{TaskID: ts.TaskID, AgentID: ts.AgentID})
		}
		return
	}
	js := st.jobs[r.JobID]
	switch r.onStatus(ts, js.job.Run.Restart, now) {
	case unchanged:
		return
	case changed:
		if r.Status == RunInitial {
			delete(st.byTask, ts.TaskID)
			if r.NextAttemptAt != nil {
				s.logger.Info("run failed; retrying", "job", r.JobID, "run", r.ID, "task", ts.TaskID, "state", ts.State, "retry", r.Retries, "at", r.NextAttemptAt.Format(time.RFC3339))
			}
		}
		w.putRun(r)
	case ended:
		delete(st.byTask, ts.TaskID)
		s.finishLocked(st, js, r, w, now)
	}
}

// finishLocked records an ended run in its job's history (dropping runs over the limits) and
// starts the dependants it completes.
func (s *Service) finishLocked(st *leaderState, js *jobState, r *Run, w *work, now time.Time) {
	delete(st.active, r)
	if t := r.task(); t != nil {
		delete(st.byTask, t.ID)
		delete(st.lastKill, t.ID)
	}
	keepOK, keepFailed := js.job.historyLimits()
	dropped := js.hist.finished(r, keepOK, keepFailed)
	w.putRun(r)
	for _, id := range dropped {
		delete(js.runs, id)
		w.del(runKey(js.job.ID, id))
	}
	w.put(historyKey(js.job.ID), js.hist)
	s.metrics.finished.WithLabelValues(r.Status).Inc()
	if r.Status == RunSuccess {
		s.logger.Info("run succeeded", "job", r.JobID, "run", r.ID)
		s.dependantsLocked(st, js.job.ID, w, now)
	} else {
		s.logger.Info("run failed", "job", r.JobID, "run", r.ID, "reason", r.Reason)
	}
}

// dependantsLocked starts each job that depends on parent once every one of its parents has
// succeeded since its own last run.
func (s *Service) dependantsLocked(st *leaderState, parent string, w *work, now time.Time) {
	for _, id := range st.dependants(parent) {
		js := st.jobs[id]
		if readyToRun(st, js) {
			r := s.newRunLocked(st, js, TriggerDependency, "", nil, w, now)
			s.logger.Info("dependencies succeeded; run created", "job", id, "run", r.ID, "parents", strings.Join(js.job.Dependencies, ","))
		}
	}
}

// readyToRun says whether every parent of a job has succeeded after the job's last run began.
func readyToRun(st *leaderState, js *jobState) bool {
	for _, p := range js.job.Dependencies {
		pj := st.jobs[p]
		if pj == nil || pj.hist.LastSuccessAt == nil {
			return false
		}
		if js.hist.LastRunAt != nil && !pj.hist.LastSuccessAt.After(*js.hist.LastRunAt) {
			return false
		}
	}
	return true
}

// newRunLocked creates a run (INITIAL: waiting for an offer).
func (s *Service) newRunLocked(st *leaderState, js *jobState, trigger, scheduleID string, scheduledAt *time.Time, w *work, now time.Time) *Run {
	r := &Run{ID: newRunID(now), JobID: js.job.ID, Status: RunInitial, CreatedAt: now, Trigger: trigger, ScheduleID: scheduleID, ScheduledAt: scheduledAt, Tasks: []RunTask{}}
	for js.runs[r.ID] != nil {
		r.ID = newRunID(now)
	}
	js.runs[r.ID] = r
	st.active[r] = true
	js.hist.LastRunAt = &now
	w.putRun(r)
	w.put(historyKey(js.job.ID), js.hist)
	return r
}

// newRunID is Metronome's shape: the time, then five random letters and digits.
func newRunID(now time.Time) string {
	return now.UTC().Format("20060102150405") + strings.ToLower(rand.Text()[:5])
}

// stepLocked starts the runs schedules say are due (recording the missed ones), fails runs past
// their deadlines, and resends kills; it returns when to look again and whether runs wait for
// offers.
func (s *Service) stepLocked(st *leaderState, w *work, now time.Time) (wakeAt time.Time, waiting bool) {
	earliest := func(t time.Time) {
		if !t.IsZero() && (wakeAt.IsZero() || t.Before(wakeAt)) {
			wakeAt = t
		}
	}
	if st.clockPaused != "" {
		// Nothing that hangs on the time fires: no due run, no missed record, no deadline.
		return time.Time{}, false
	}
	if st.schedulesChanged || !st.nextDue.IsZero() && !now.Before(st.nextDue) {
		// Some schedule is due (or a job changed): walk them all; otherwise nothing is due
		// before nextDue and the walk is skipped.
		st.schedulesChanged, st.nextDue = false, time.Time{}
		for _, id := range slices.Sorted(maps.Keys(st.jobs)) {
			js := st.jobs[id]
			for _, sc := range js.job.Schedules {
				if js.cursors[sc.ID].After(now.Add(s.m.MaxClockSkew())) {
					s.distrustCursorLocked(js, sc.ID, now, w)
				}
				if next := js.next[sc.ID]; !next.IsZero() && !next.After(now) {
					s.dueLocked(st, js, js.plans[sc.ID], w, now)
				}
				if n := js.next[sc.ID]; !n.IsZero() && (st.nextDue.IsZero() || n.Before(st.nextDue)) {
					st.nextDue = n
				}
			}
		}
	}
	earliest(st.nextDue)
	for r := range st.waits {
		if !st.active[r] || !r.waiting(now) {
			delete(st.waits, r) // launched, ended, or waiting for its retry: this attempt is over
		}
	}
	for r := range st.active {
		js := st.jobs[r.JobID]
		rs := js.job.Run
		if r.Status == RunInitial && !r.Stopping {
			since := r.CreatedAt
			if r.NextAttemptAt != nil {
				since = *r.NextAttemptAt
				earliest(since)
			}
			if now.Sub(since) > time.Duration(rs.MaxLaunchDelay)*time.Second {
				why := fmt.Sprintf("no offer had cpus %g, mem %g, disk %g and the placement it needs", rs.CPUs, rs.Mem, rs.Disk)
				if ws := st.waits[r]; ws != nil && ws.Declined() != "" {
					why = ws.Declined()
				}
				r.fail(now, fmt.Sprintf("not launched within maxLaunchDelay (%d s): %s", rs.MaxLaunchDelay, why))
				s.finishLocked(st, js, r, w, now)
				continue
			}
		}
		if d := rs.Restart.ActiveDeadlineSeconds; d > 0 && !r.Stopping {
			deadline := r.CreatedAt.Add(time.Duration(d) * time.Second)
			if now.After(deadline) {
				s.stopLocked(st, js, r, fmt.Sprintf("activeDeadlineSeconds (%d s) passed", d), w, now)
				continue
			}
			earliest(deadline)
		}
		if t := r.liveTask(); t != nil && r.Stopping && now.Sub(st.lastKill[t.ID]) >= 10*time.Second {
			s.killLocked(st, js, t, w, now) // the kill may have been lost with an agent; say it again
		}
		waiting = waiting || r.waiting(now)
	}
	return wakeAt, waiting
}

// dueLocked acts on a schedule that is due: at most one run starts, the rest are recorded
// missed, and the cursor moves past them, all in one batch.
func (s *Service) dueLocked(st *leaderState, js *jobState, p Plan, w *work, now time.Time) {
	sid := p.Schedule.ID
	d, err := p.Due(js.cursors[sid], now)
	if err != nil {
		js.next[sid] = time.Time{}
		return
	}
	cursor := js.cursors[sid]
	var ranAlready *time.Time // the latest due time has a run already (done)
	if done := js.done[sid]; len(done) > 0 {
		if n := len(d.Missed); d.Start == nil && n > 0 && done[d.Missed[n-1].UnixNano()] {
			at := d.Missed[n-1] // the latest, past its deadline, ran already
			ranAlready = &at
		}
		d.Missed = slices.DeleteFunc(d.Missed, func(t time.Time) bool { return done[t.UnixNano()] })
		if d.Start != nil && done[d.Start.UnixNano()] {
			ranAlready, d.Start = d.Start, nil
		}
		for t := range done {
			if t <= now.UnixNano() {
				delete(done, t)
			}
		}
	}
	older, late := d.Missed, []time.Time(nil)
	if d.Start == nil && ranAlready == nil && len(d.Missed) > 0 {
		// The latest due time is missed too: its deadline passed before it could start.
		older, late = d.Missed[:len(d.Missed)-1], d.Missed[len(d.Missed)-1:]
	}
	if len(older) > 0 || d.MoreMissed > 0 {
		js.hist.missed(sid, older, d.MoreMissed, "the scheduler did not get to it in time (downtime, a leader change, or a cycle that ran late); only the latest due run starts", now)
	}
	if late != nil {
		js.hist.missed(sid, late, 0, fmt.Sprintf("startingDeadlineSeconds (%d s) passed before it could start", p.Schedule.StartingDeadlineSeconds), now)
	}
	if len(d.Missed) > 0 {
		cursor = d.Missed[len(d.Missed)-1]
	}
	if ranAlready != nil {
		cursor = *ranAlready
	}
	if d.Start != nil {
		cursor = *d.Start
		c := p.OnActive(runIDs(js.activeRuns()))
		if !c.Start {
			js.hist.missed(sid, []time.Time{*d.Start}, 0, c.Skip, now)
			s.logger.Info("run missed", "job", js.job.ID, "schedule", sid, "scheduled", d.Start.Format(time.RFC3339), "reason", c.Skip)
		} else {
			for _, id := range c.Stop {
				s.stopLocked(st, js, js.runs[id], "concurrencyPolicy REPLACE: a newer scheduled run replaces it", w, now)
			}
			at := *d.Start
			r := s.newRunLocked(st, js, TriggerSchedule, sid, &at, w, now)
			s.logger.Debug("scheduled run created", "job", js.job.ID, "run", r.ID, "scheduled", at.Format(time.RFC3339))
		}
	}
	if n := len(d.Missed) + d.MoreMissed; n > 0 {
		s.metrics.missed.Add(float64(n))
		s.logger.Info("runs missed", "job", js.job.ID, "schedule", sid, "count", n)
	}
	js.setCursor(sid, cursor)
	if !d.Next.IsZero() && d.Next.After(now) {
		js.next[sid] = d.Next
	}
	w.put(cursorKey(js.job.ID, sid), cursor)
	w.put(historyKey(js.job.ID), js.hist)
}

func runIDs(runs []*Run) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

// stopLocked ends a run: at once when no task of it runs, else by killing its task.
func (s *Service) stopLocked(st *leaderState, js *jobState, r *Run, reason string, w *work, now time.Time) {
	if r == nil || !r.Active() {
		return
	}
	if r.stop(reason, now) {
		s.finishLocked(st, js, r, w, now)
		return
	}
	w.putRun(r)
	s.killLocked(st, js, r.liveTask(), w, now)
}

func (s *Service) killLocked(st *leaderState, js *jobState, t *RunTask, w *work, now time.Time) {
	st.lastKill[t.ID] = now
	w.kills = append(w.kills, killOf(js, t))
}

// killOf is the kill of an attempt's task, with the job's grace period.
func killOf(js *jobState, t *RunTask) api.KillTask {
	k := api.KillTask{TaskID: t.ID, AgentID: t.AgentID}
	if g := js.job.Run.TaskKillGracePeriodSeconds; g > 0 {
		k.GracePeriodSeconds = g
	}
	return k
}

// waitingRuns lists the runs waiting for an offer, oldest first.
func (st *leaderState) waitingRuns(now time.Time) []*Run {
	var out []*Run
	for r := range st.active {
		if r.waiting(now) {
			out = append(out, r)
		}
	}
	sortRuns(out)
	return out
}

// useOfferLocked launches, into one offer, the waiting runs that fit it (resources, placement),
// recording each attempt first; it returns the runs still waiting.
func (s *Service) useOfferLocked(st *leaderState, o api.Offer, queue []*Run, w *work, now time.Time) []*Run {
	left := o.Resources
	var infos []api.TaskInfo
	rest := queue[:0]
	for i, r := range queue {
		js := st.jobs[r.JobID]
		rs := js.job.Run
		need := resources.Resources{CPUs: rs.CPUs, Mem: rs.Mem, Disk: rs.Disk}
		if why := fitRun(js, need, left, o); len(why) > 0 {
			st.offerStats(r).NotUsed(o, why, now)
			rest = append(rest, r)
			if left.CPUs < 0.01 || left.Mem < 1 {
				rest = append(rest, queue[i+1:]...) // nothing more fits
				break
			}
			continue
		}
		secrets, missing := frameworks.ResolveSecrets(context.Background(), s.m.Secret, rs.Env, rs.secretVolumes(), rs.Secrets)
		if missing != "" {
			// Nothing can run without its secrets: the run fails now, saying which is missing.
			r.fail(now, missing)
			s.finishLocked(st, js, r, w, now)
			continue
		}
		left, _ = left.Subtract(need)
		delete(st.waits, r)
		taskID := fmt.Sprintf("%s_%s.%d", r.JobID, r.ID, r.nextAttempt())
		r.launch(taskID, o, now)
		st.byTask[taskID] = r
		w.putRun(r)
		ti := taskInfo(js.job, r, taskID, need)
		ti.SecretEnv, ti.SecretFiles = secrets.Env, secrets.Files
		infos = append(infos, ti)
		if r.ScheduledAt != nil && r.Attempts == 1 {
			w.lags = append(w.lags, now.Sub(*r.ScheduledAt))
		}
	}
	if len(infos) == 0 {
		refuse := 120.0 // nothing waits that fits: keep this agent away for a while (revived on changes)
		if len(rest) > 0 {
			refuse = 5
		}
		w.declines = append(w.declines, decline{offerID: o.ID, refuse: refuse})
		return rest
	}
	w.launches = append(w.launches, launch{offerID: o.ID, infos: infos})
	return rest
}

// fitRun says why a run's task, which needs need, does not fit what is left of an offer (none:
// it fits): every reason, in Marathon's names and Agora's words.
func fitRun(js *jobState, need, left resources.Resources, o api.Offer) []frameworks.Mismatch {
	var why []frameworks.Mismatch
	for _, c := range js.constraints {
		if !c.allows(o.Hostname, o.Attributes) {
			why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: c.why(o.Hostname, o.Attributes)})
		}
	}
	for _, u := range js.needs.Unmet(o.Attributes) {
		why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: frameworks.UnmetDetail(js.needs, u, o.Hostname)})
	}
	return append(why, frameworks.ShortOf(need, left, o.Hostname)...)
}

// offersWantedLocked revives offers when runs wait and suppresses them when none does.
func (s *Service) offersWantedLocked(st *leaderState, w *work, waiting bool) {
	switch {
	case waiting && st.suppressed:
		st.suppressed = false
		w.calls = append(w.calls, api.Call{Type: api.CallRevive})
	case !waiting && !st.suppressed:
		st.suppressed = true
		w.calls = append(w.calls, api.Call{Type: api.CallSuppress})
	}
}

// taskInfo is the launch of one attempt.
func taskInfo(j *Job, r *Run, taskID string, res resources.Resources) api.TaskInfo {
	rs := j.Run
	env := frameworks.PlainEnv(rs.Env)
	env["AGORA_JOB_ID"] = j.ID
	env["AGORA_RUN_ID"] = r.ID
	if r.ScheduledAt != nil {
		env["AGORA_SCHEDULED_AT"] = r.ScheduledAt.UTC().Format(time.RFC3339)
	}
	dockerEnv, dockerLabels := rs.dockerEnvAndLabels()
	for k, v := range dockerEnv {
		env[k] = v
	}
	labels := j.Labels
	if len(dockerLabels) > 0 {
		labels = maps.Clone(dockerLabels)
		maps.Copy(labels, j.Labels)
	}
	needs := rs.Needs()
	ti := api.TaskInfo{TaskID: taskID, Name: j.ID, Resources: res, Cmd: rs.Cmd, Args: rs.Args, Env: env, Labels: labels,
		KillGracePeriodSeconds: rs.TaskKillGracePeriodSeconds, User: needs.User, Volumes: needs.Volumes, Artifacts: rs.artifacts()}
	if rs.Docker != nil {
		ti.Image, ti.ForcePull = rs.Docker.Image, rs.Docker.ForcePullImage
	}
	return ti
}
