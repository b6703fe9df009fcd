package chronos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/raft"
)

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

func runIDs(runs []*Run) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

// putJobLocked checks a job against the others and stores it (create: it must be new). A
// schedule keeps its cursor when its timing did not change; a new or changed one starts from
// now (it does not catch up on times before it existed).
func (s *Service) putJobLocked(st *leaderState, j *Job, create bool, wk *work, now time.Time) error {
	old := st.jobs[j.ID]
	if create && old != nil {
		return &FieldError{Field: "id", Msg: fmt.Sprintf("job %q already exists (PUT /v1/jobs/%s changes it)", j.ID, j.ID)}
	}
	if len(j.Schedules) > 0 && len(j.Dependencies) > 0 {
		return &FieldError{Field: "dependencies", Msg: "a job with dependencies runs when its parents succeed; it has no schedules of its own"}
	}
	lookup := func(id string) *Job {
		if id == j.ID {
			return j
		}
		if js := st.jobs[id]; js != nil {
			return js.job
		}
		return nil
	}
	if err := checkGraph(j, lookup); err != nil {
		return err
	}
	if err := s.agentsCanRun(j); err != nil {
		return err
	}
	js := newJobState(j, &History{})
	if old != nil {
		js.runs, js.hist = old.runs, old.hist
		for id := range old.cursors {
			if !slices.ContainsFunc(j.Schedules, func(sc Schedule) bool { return sc.ID == id }) {
				wk.del(cursorKey(j.ID, id))
			}
		}
	} else {
		wk.put(historyKey(j.ID), js.hist)
	}
	for _, sc := range j.Schedules {
		c, kept := now, false
		if old != nil {
			if op, ok := old.plans[sc.ID]; ok && sameTiming(op.Schedule, sc) {
				c, kept = old.cursors[sc.ID], true
			}
		}
		js.setCursor(sc.ID, c)
		if !kept {
			wk.put(cursorKey(j.ID, sc.ID), c)
		}
	}
	st.jobs[j.ID] = js
	st.jobsChanged()
	wk.put(jobKey(j.ID), j)
	return nil
}

// sameTiming says whether two versions of a schedule fire at the same times.
func sameTiming(a, b Schedule) bool {
	return a.Cron == b.Cron && a.Timezone == b.Timezone && *a.Enabled == *b.Enabled
}

// agentsCanRun refuses a job whose runs' needs no registered agent meets (root, host volumes):
// accepted, its runs would wait until maxLaunchDelay and fail.
func (s *Service) agentsCanRun(j *Job) error {
	needs := j.Run.Needs()
	if !hostaccess.IsRoot(needs.User) && len(needs.Volumes) == 0 {
		return nil
	}
	agents, err := s.m.Agents(context.Background())
	if err != nil {
		return err
	}
	for _, u := range needs.Nowhere(agents) {
		switch u.Part {
		case hostaccess.PartUser:
			return &FieldError{Field: "run.user", Msg: u.Why}
		case hostaccess.PartVolume:
			return &FieldError{Field: fmt.Sprintf("run.volumes[%d].hostPath", u.Index), Msg: u.Why}
		default:
			return &FieldError{Field: "run", Msg: u.Why}
		}
	}
	return nil
}

// removeJobLocked forgets a job: its runs' tasks are killed, its keys deleted.
func (s *Service) removeJobLocked(st *leaderState, js *jobState, wk *work) {
	for _, r := range js.runs {
		if t := r.liveTask(); t != nil {
			wk.kills = append(wk.kills, killOf(js, t))
			delete(st.byTask, t.ID)
		}
		delete(st.active, r)
	}
	delete(st.jobs, js.job.ID)
	st.jobsChanged()
	id := js.job.ID
	wk.del(jobKey(id))
	wk.del(historyKey(id))
	wk.b.DeletePrefix(cursorPrefix(id))
	wk.b.DeletePrefix(runPrefix(id))
	s.logger.Info("job deleted", "job", id)
}
