package chronos

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
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
