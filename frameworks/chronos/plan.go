package chronos

import (
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

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
				if since.After(now) {
					earliest(since) // its backoff ends: offers are wanted again
				}
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

// readyToRun says whether every parent of a job has succeeded since the job's last run began.
func readyToRun(st *leaderState, js *jobState) bool {
	for _, p := range js.job.Dependencies {
		pj := st.jobs[p]
		if pj == nil || pj.hist.LastSuccessAt == nil {
			return false
		}
		if n, ok := js.hist.ParentSuccesses[p]; ok {
			if pj.hist.SuccessCount <= n {
				return false
			}
			continue
		}
		if js.hist.LastRunAt != nil && !pj.hist.LastSuccessAt.After(*js.hist.LastRunAt) {
			return false
		}
	}
	return true
}

// parentSuccesses is the SuccessCount of each of the job's parents now (nil without parents).
func parentSuccesses(st *leaderState, js *jobState) map[string]int {
	var out map[string]int
	for _, p := range js.job.Dependencies {
		if pj := st.jobs[p]; pj != nil {
			if out == nil {
				out = map[string]int{}
			}
			out[p] = pj.hist.SuccessCount
		}
	}
	return out
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
	js.hist.ParentSuccesses = parentSuccesses(st, js)
	w.putRun(r)
	w.put(historyKey(js.job.ID), js.hist)
	return r
}

// newRunID is Metronome's shape: the time, then five random letters and digits.
func newRunID(now time.Time) string {
	return now.UTC().Format("20060102150405") + strings.ToLower(rand.Text()[:5])
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
