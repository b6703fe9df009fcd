package chronos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/httpjson"
)

// routes adds Metronome's /v1 jobs API, the job graph and Chronos's /scheduler aliases to the
// master; the leader answers them (it holds the runs), other masters forward.
func (s *Service) routes() {
	h := func(pattern string, f http.HandlerFunc) { s.m.HandleLeader(pattern, checkQuery(f)) }
	h("GET /v1/jobs", s.listJobs)
	h("POST /v1/jobs", s.createJob)
	h("GET /v1/jobs/{id}", s.getJob)
	h("PUT /v1/jobs/{id}", s.putJob)
	h("DELETE /v1/jobs/{id}", s.deleteJob)
	h("GET /v1/jobs/{id}/runs", s.listRuns)
	h("POST /v1/jobs/{id}/runs", s.startRun)
	h("GET /v1/jobs/{id}/runs/{run}", s.getRun)
	h("POST /v1/jobs/{id}/runs/{run}/actions/stop", s.stopRun)
	h("GET /v1/jobs/{id}/schedules", s.listSchedules)
	h("POST /v1/jobs/{id}/schedules", s.addSchedule)
	h("GET /v1/jobs/{id}/schedules/{sid}", s.getSchedule)
	h("PUT /v1/jobs/{id}/schedules/{sid}", s.putSchedule)
	h("DELETE /v1/jobs/{id}/schedules/{sid}", s.deleteSchedule)
	h("GET /v1/graph", s.graph)
	h("GET /v1/queue", s.queue)
	h("POST /v0/scheduled-jobs", s.createJob)
	h("PUT /v0/scheduled-jobs/{id}", s.putScheduledJob)
	s.chronosRoutes(h)
}

// checkQuery answers 400 naming the parameter, before the handler runs, for a value the
// jobs API does not take: stopCurrentJobRuns other than true, false, 1 or 0 (as Metronome's
// Play reads booleans), include other than finished, an unknown embed.
func checkQuery(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		_, err := frameworks.BoolParam(q, "stopCurrentJobRuns", true)
		if err == nil {
			err = frameworks.OneOfParam(q, "include", "finished")
		}
		if err == nil {
			err = frameworks.OneOfParam(q, "embed", "activeRuns", "history", "historySummary", "schedules")
		}
		if err != nil {
			apiError(w, err)
			return
		}
		next(w, r)
	}
}

// invalidBody is Metronome's 422 for a spec it refuses: {"message": "Object is not valid",
// "details": [{"path": "/run/mem", "errors": [...]}]}. Agora adds the field as its own errors
// name it ("run.mem"), and for graph errors the cycle's path or the dependants.
type invalidBody struct {
	Message    string          `json:"message"`
	Details    []invalidDetail `json:"details"`
	Field      string          `json:"field,omitempty"`
	Path       []string        `json:"path,omitempty"`
	Dependants []string        `json:"dependants,omitempty"`
}

type invalidDetail struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

// invalid is the 422 body for a problem with field ("" for the spec as a whole).
func invalid(field, msg string) invalidBody {
	return invalidBody{Message: "Object is not valid", Details: []invalidDetail{{Path: jsonPath(field), Errors: []string{msg}}}, Field: field}
}

// jsonPath writes a field as Metronome's (Play's) JSON paths do: run.volumes[0].hostPath is
// /run/volumes(0)/hostPath.
func jsonPath(field string) string {
	return "/" + strings.NewReplacer(".", "/", "[", "(", "]", ")").Replace(field)
}

// apiError answers an error: 422 in Metronome's shape naming the field for a refused spec
// (with the cycle's path or the dependants for graph errors), 400 naming a query parameter,
// 503 while the framework is not ready or a commit failed.
func apiError(w http.ResponseWriter, err error) {
	var fe *FieldError
	var ge *GraphError
	var he *httpError
	var qe *frameworks.QueryError
	var bad *httpjson.BadRequest
	switch {
	case errors.As(err, &he):
		httpjson.Error(w, he.code, he.msg)
	case errors.As(err, &qe):
		body := invalid(qe.Param, qe.Msg)
		body.Message = qe.Param + ": " + qe.Msg
		httpjson.Write(w, http.StatusBadRequest, body)
	case errors.As(err, &fe):
		httpjson.Write(w, http.StatusUnprocessableEntity, invalid(fe.Field, fe.Msg))
	case errors.As(err, &ge):
		body := invalid(ge.Field, ge.Msg)
		body.Path, body.Dependants = ge.Path, ge.Dependants
		httpjson.Write(w, http.StatusUnprocessableEntity, body)
	case errors.As(err, &bad) && bad.TooLarge:
		httpjson.DecodeError(w, bad)
	case errors.As(err, &bad):
		// Malformed JSON, a wrong type or an unknown field: the spec is refused as a whole.
		httpjson.Write(w, http.StatusUnprocessableEntity, invalid(bad.Field, bad.Msg))
	case errors.Is(err, errNotReady):
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
	default:
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error()) // a commit failed: retry
	}
}

// httpError is an error with its status: 404, 409.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func notFound(what, id string) error {
	return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("%s %q does not exist", what, id)}
}

// read runs fn with the leader state held, answering 503 when there is none.
//
// It waits for a change in progress (writeMu): a change alters the leader state before its
// commit, so a read beside it could answer what the store may never hold — a run seen, then
// gone after the commit failed.
func (s *Service) read(w http.ResponseWriter, fn func(st *leaderState) error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		apiError(w, errNotReady)
		return
	}
	if err := fn(s.st); err != nil {
		apiError(w, err)
	}
}

// RunView is a run as the API shows it: Metronome's run, and, while it waits to start, Agora's
// word on why (WaitingReason: its retry's delay, the offers declined and why — Marathon's reason
// names with Agora's words — no offer for a while, the agents that make no offers, and how its
// last attempt ended, with the agent's message) and Marathon's processedOffersSummary of the
// offers judged for it. Metronome has no shape for either.
type RunView struct {
	Run
	WaitingReason          string                             `json:"waitingReason,omitempty"`
	ProcessedOffersSummary *frameworks.ProcessedOffersSummary `json:"processedOffersSummary,omitempty"`
}

// runView is a run as the API shows it (silent: which agents make no offers).
func (st *leaderState) runView(r *Run, now time.Time, silent string) RunView {
	v := RunView{Run: r.clone(), WaitingReason: st.waitingReason(r, now, silent)}
	if ws := st.waits[r]; ws != nil && r.Status == RunInitial {
		sum := ws.Summary()
		v.ProcessedOffersSummary = &sum
	}
	return v
}

func (st *leaderState) runViews(runs []*Run, now time.Time, silent string) []RunView {
	out := make([]RunView, len(runs))
	for i, r := range runs {
		out[i] = st.runView(r, now, silent)
	}
	return out
}

// waitingReason says in a line why a run waits to start, "" when it does not or nothing holds
// it yet.
func (st *leaderState) waitingReason(r *Run, now time.Time, silent string) string {
	if r.Status != RunInitial || r.Stopping {
		return ""
	}
	var parts []string
	ws := st.waits[r]
	switch {
	case st.clockPaused != "":
		parts = append(parts, "no offer is used while the master's clock is not trusted: "+st.clockPaused)
	case r.NextAttemptAt != nil && now.Before(*r.NextAttemptAt):
		parts = append(parts, fmt.Sprintf("retry %d in %d s", r.Retries, int(math.Ceil(r.NextAttemptAt.Sub(now).Seconds()))))
	case ws != nil && ws.Declined() != "":
		parts = append(parts, ws.Declined())
	case now.Sub(r.waitingSince()) >= frameworks.QuietAfter:
		parts = append(parts, fmt.Sprintf("no offer in %s", now.Sub(r.waitingSince()).Round(time.Second)))
	}
	if t := r.task(); t != nil && t.Status.IsTerminal() {
		line := "last attempt: " + string(t.Status)
		if t.Host != "" {
			line += " on " + t.Host
		}
		if t.Message != "" {
			line += ": " + t.Message
		}
		parts = append(parts, line)
	}
	if len(parts) == 0 {
		return ""
	}
	if silent != "" {
		parts = append(parts, silent)
	}
	return strings.Join(parts, "; ")
}

// jobView is a job as the API shows it, with what ?embed= asks for.
type jobView struct {
	Job
	Schedules      []scheduleView  `json:"schedules"`
	ActiveRuns     []RunView       `json:"activeRuns,omitempty"`
	History        *History        `json:"history,omitempty"`
	HistorySummary *HistorySummary `json:"historySummary,omitempty"`
	// SchedulingPaused says why no schedule fires now (the leader's clock is not trusted).
	SchedulingPaused string `json:"schedulingPaused,omitempty"`
}

// scheduleView is a schedule with when it is next due.
type scheduleView struct {
	Schedule
	NextRunAt *time.Time `json:"nextRunAt,omitempty"`
}

// HistorySummary is Metronome's historySummary embed.
type HistorySummary struct {
	SuccessCount  int        `json:"successCount"`
	FailureCount  int        `json:"failureCount"`
	LastSuccessAt *time.Time `json:"lastSuccessAt"`
	LastFailureAt *time.Time `json:"lastFailureAt"`
	MissedCount   int        `json:"missedCount"`
}

// embeds reads ?embed=a,b&embed=c (checkQuery let only known ones through).
func embeds(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.URL.Query()["embed"] {
		for _, e := range strings.Split(v, ",") {
			out[strings.TrimSpace(e)] = true
		}
	}
	return out
}

// view is the job as the API shows it; a view that embeds activeRuns needs st, now and silent
// (which agents make no offers) to say why runs wait.
func (js *jobState) view(embed map[string]bool, st *leaderState, now time.Time, silent string) jobView {
	v := jobView{Job: *js.job, Schedules: js.scheduleViews()}
	if embed["activeRuns"] {
		v.ActiveRuns = st.runViews(js.activeRuns(), now, silent)
	}
	h := *js.hist
	if embed["history"] {
		h.SuccessfulFinishedRuns = nonNil(h.SuccessfulFinishedRuns)
		h.FailedFinishedRuns = nonNil(h.FailedFinishedRuns)
		h.MissedRuns = nonNil(h.MissedRuns)
		v.History = &h
	}
	if embed["historySummary"] {
		v.HistorySummary = &HistorySummary{SuccessCount: h.SuccessCount, FailureCount: h.FailureCount,
			LastSuccessAt: h.LastSuccessAt, LastFailureAt: h.LastFailureAt, MissedCount: h.MissedCount}
	}
	return v
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (js *jobState) scheduleViews() []scheduleView {
	out := []scheduleView{}
	for _, sc := range js.job.Schedules {
		v := scheduleView{Schedule: sc}
		if n := js.next[sc.ID]; !n.IsZero() {
			v.NextRunAt = &n
		}
		out = append(out, v)
	}
	return out
}

func (s *Service) listJobs(w http.ResponseWriter, r *http.Request) {
	embed := embeds(r)
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.read(w, func(st *leaderState) error {
		out := []jobView{}
		now := s.cfg.Clock.Now()
		for _, id := range slices.Sorted(maps.Keys(st.jobs)) {
			v := st.jobs[id].view(embed, st, now, silent)
			v.SchedulingPaused = st.clockPaused
			out = append(out, v)
		}
		writeJobViews(w, out)
		return nil
	})
}

func (s *Service) getJob(w http.ResponseWriter, r *http.Request) {
	embed := embeds(r)
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.read(w, func(st *leaderState) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		v := js.view(embed, st, s.cfg.Clock.Now(), silent)
		v.SchedulingPaused = st.clockPaused
		writeJobView(w, http.StatusOK, v)
		return nil
	})
}

// decodeJob reads a job spec in Metronome's JSON and checks it on its own.
func decodeJob(r *http.Request) (*Job, error) {
	var j Job
	if err := httpjson.Decode(r, &j); err != nil {
		return nil, err
	}
	if j.Chronos != nil {
		return nil, chronosNotMetronome
	}
	if err := j.Normalize(); err != nil {
		return nil, err
	}
	if err := metronomeSchema(&j); err != nil {
		return nil, err
	}
	return &j, nil
}

func (s *Service) createJob(w http.ResponseWriter, r *http.Request) {
	j, err := decodeJob(r)
	if err != nil {
		apiError(w, err)
		return
	}
	s.writeJob(w, r, j, true)
}

// putScheduledJob is Metronome's v0 PUT: the job and all its schedules, replaced together (a
// body without schedules leaves the job none).
func (s *Service) putScheduledJob(w http.ResponseWriter, r *http.Request) {
	j, err := decodeJobFor(r, r.PathValue("id"), s.chronosSettings(r.PathValue("id")))
	if err != nil {
		apiError(w, err)
		return
	}
	if j.Schedules == nil {
		j.Schedules = []Schedule{}
	}
	s.writeJob(w, r, j, false)
}

// queue lists the runs that wait for an offer, by job (Metronome's GET /v1/queue).
func (s *Service) queue(w http.ResponseWriter, r *http.Request) {
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.read(w, func(st *leaderState) error {
		now := s.cfg.Clock.Now()
		out := []mQueued{}
		for _, id := range slices.Sorted(maps.Keys(st.jobs)) {
			q := mQueued{JobID: id}
			for _, run := range st.jobs[id].activeRuns() {
				if run.Status == RunInitial && !run.Stopping {
					q.Runs = append(q.Runs, mQueuedRun{RunID: run.ID, WaitingReason: st.waitingReason(run, now, silent)})
				}
			}
			if len(q.Runs) > 0 {
				out = append(out, q)
			}
		}
		httpjson.Write(w, http.StatusOK, out)
		return nil
	})
}

func (s *Service) putJob(w http.ResponseWriter, r *http.Request) {
	j, err := decodeJobFor(r, r.PathValue("id"), s.chronosSettings(r.PathValue("id")))
	if err != nil {
		apiError(w, err)
		return
	}
	s.writeJob(w, r, j, false)
}

// writeJob stores a new job (201) or replaces one (200; a PUT without schedules keeps them:
// they have their own endpoints) and answers with it.
func (s *Service) writeJob(w http.ResponseWriter, r *http.Request, j *Job, create bool) {
	var out jobView
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		if !create {
			old := st.jobs[j.ID]
			if old == nil {
				return notFound("job", j.ID)
			}
			if j.Schedules == nil {
				j.Schedules = old.job.Schedules
			}
		}
		if err := s.putJobLocked(st, j, create, wk, now); err != nil {
			return err
		}
		out = st.jobs[j.ID].view(nil, st, now, "")
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	s.poke()
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	writeJobView(w, code, out)
}

// chronosSettings are what only Chronos's API says of the job id, when it was made (or last
// changed) there; nil for a job of Metronome's API or none.
func (s *Service) chronosSettings(id string) *ChronosSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil || s.st.jobs[id] == nil || s.st.jobs[id].job.Chronos == nil {
		return nil
	}
	cs := *s.st.jobs[id].job.Chronos
	return &cs
}

// decodeJobFor reads the spec of the job at a path: its id, when given, must be the path's.
// A job made through Chronos's API (cs: its Chronos settings) is changed here like any other:
// its name may be any Chronos name, and it keeps what Metronome's spec has no place for
// (epsilon, softError, async, …), as a Metronome client that reads and writes it back expects.
func decodeJobFor(r *http.Request, id string, cs *ChronosSettings) (*Job, error) {
	var j Job
	if err := httpjson.Decode(r, &j); err != nil {
		return nil, err
	}
	if j.Chronos != nil {
		return nil, chronosNotMetronome
	}
	if cs != nil {
		j.Chronos = cs.under(&j.Run)
	}
	if j.ID == "" {
		j.ID = id
	}
	if j.ID != id {
		return nil, &FieldError{Field: "id", Msg: fmt.Sprintf("%q is not the job of the path (%q)", j.ID, id)}
	}
	hadSchedules := j.Schedules != nil
	if err := j.Normalize(); err != nil {
		return nil, err
	}
	if err := metronomeSchema(&j); err != nil {
		return nil, err
	}
	if !hadSchedules {
		j.Schedules = nil
	}
	return &j, nil
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

func (s *Service) deleteJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	stop, _ := frameworks.BoolParam(r.URL.Query(), "stopCurrentJobRuns", true) // checked by checkQuery
	var out jobView
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[id]
		if js == nil {
			return notFound("job", id)
		}
		if deps := st.dependants(id); len(deps) > 0 {
			return &GraphError{Field: "id", Msg: fmt.Sprintf("jobs depend on %q: %s; change or delete them first", id, strings.Join(deps, ", ")), Dependants: deps}
		}
		active := js.activeRuns()
		if len(active) > 0 && !stop {
			return &httpError{code: http.StatusConflict, msg: fmt.Sprintf("job %q has %d active run(s); delete with ?stopCurrentJobRuns=true to stop them", id, len(active))}
		}
		out = js.view(nil, st, now, "")
		s.removeJobLocked(st, js, wk)
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	writeJobView(w, http.StatusOK, out)
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

// listRuns answers the job's active runs (as Metronome); ?include=finished adds the finished
// runs kept (newest first).
func (s *Service) listRuns(w http.ResponseWriter, r *http.Request) {
	finished := r.URL.Query().Get("include") == "finished"
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.read(w, func(st *leaderState) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		out := nonNil(js.activeRuns())
		if finished {
			var done []*Run
			for _, run := range js.runs {
				if !run.Active() {
					done = append(done, run)
				}
			}
			sortRuns(done)
			slices.Reverse(done)
			out = append(out, done...)
		}
		writeRuns(w, st.runViews(out, s.cfg.Clock.Now(), silent))
		return nil
	})
}

func (s *Service) getRun(w http.ResponseWriter, r *http.Request) {
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.read(w, func(st *leaderState) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		run := js.runs[r.PathValue("run")]
		if run == nil {
			return notFound("run", r.PathValue("run"))
		}
		writeRun(w, http.StatusOK, st.runView(run, s.cfg.Clock.Now(), silent))
		return nil
	})
}

// startRun is "run now": a manual run, whatever the schedules say.
func (s *Service) startRun(w http.ResponseWriter, r *http.Request) {
	var out Run
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		out = s.newRunLocked(st, js, TriggerManual, "", nil, wk, now).clone()
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	s.poke()
	writeRun(w, http.StatusCreated, RunView{Run: out})
}

func (s *Service) stopRun(w http.ResponseWriter, r *http.Request) {
	var out Run
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		run := js.runs[r.PathValue("run")]
		if run == nil {
			return notFound("run", r.PathValue("run"))
		}
		if !run.Active() {
			return &httpError{code: http.StatusConflict, msg: fmt.Sprintf("run %s already ended (%s)", run.ID, run.Status)}
		}
		s.stopLocked(st, js, run, "stopped by request", wk, now)
		out = run.clone()
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	writeRun(w, http.StatusOK, RunView{Run: out})
}

func (s *Service) listSchedules(w http.ResponseWriter, r *http.Request) {
	s.read(w, func(st *leaderState) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		writeSchedules(w, js.scheduleViews())
		return nil
	})
}

func (s *Service) getSchedule(w http.ResponseWriter, r *http.Request) {
	s.read(w, func(st *leaderState) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		for _, v := range js.scheduleViews() {
			if v.ID == r.PathValue("sid") {
				writeSchedule(w, http.StatusOK, v)
				return nil
			}
		}
		return notFound("schedule", r.PathValue("sid"))
	})
}

// editSchedules changes a job's schedules through edit (given a copy) and stores the job.
func (s *Service) editSchedules(w http.ResponseWriter, r *http.Request, code int, edit func(scheds []Schedule) ([]Schedule, string, error)) {
	var out scheduleView
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[r.PathValue("id")]
		if js == nil {
			return notFound("job", r.PathValue("id"))
		}
		j := *js.job
		scheds, sid, err := edit(slices.Clone(j.Schedules))
		if err != nil {
			return err
		}
		j.Schedules = scheds
		if err := j.Normalize(); err != nil {
			return err
		}
		if err := s.putJobLocked(st, &j, false, wk, now); err != nil {
			return err
		}
		for _, v := range st.jobs[j.ID].scheduleViews() {
			if v.ID == sid {
				out = v
			}
		}
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	s.poke()
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return
	}
	writeSchedule(w, code, out)
}

func (s *Service) addSchedule(w http.ResponseWriter, r *http.Request) {
	var sc Schedule
	if err := httpjson.Decode(r, &sc); err != nil {
		apiError(w, err)
		return
	}
	s.editSchedules(w, r, http.StatusCreated, func(scheds []Schedule) ([]Schedule, string, error) {
		for _, o := range scheds {
			if o.ID == sc.ID {
				return nil, "", &FieldError{Field: "id", Msg: fmt.Sprintf("schedule %q already exists (PUT changes it)", sc.ID)}
			}
		}
		return append(scheds, sc), sc.ID, nil
	})
}

func (s *Service) putSchedule(w http.ResponseWriter, r *http.Request) {
	var sc Schedule
	if err := httpjson.Decode(r, &sc); err != nil {
		apiError(w, err)
		return
	}
	sid := r.PathValue("sid")
	if sc.ID == "" {
		sc.ID = sid
	}
	if sc.ID != sid {
		apiError(w, &FieldError{Field: "id", Msg: fmt.Sprintf("%q is not the schedule of the path (%q)", sc.ID, sid)})
		return
	}
	s.editSchedules(w, r, http.StatusOK, func(scheds []Schedule) ([]Schedule, string, error) {
		i := slices.IndexFunc(scheds, func(o Schedule) bool { return o.ID == sid })
		if i < 0 {
			return nil, "", notFound("schedule", sid)
		}
		scheds[i] = sc
		return scheds, sid, nil
	})
}

func (s *Service) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("sid")
	s.editSchedules(w, r, http.StatusNoContent, func(scheds []Schedule) ([]Schedule, string, error) {
		i := slices.IndexFunc(scheds, func(o Schedule) bool { return o.ID == sid })
		if i < 0 {
			return nil, "", notFound("schedule", sid)
		}
		return slices.Delete(scheds, i, i+1), "", nil
	})
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
