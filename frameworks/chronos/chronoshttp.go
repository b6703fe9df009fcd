package chronos

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/httpjson"
)

// chronosRoutes adds Chronos's API under Chronos 2's paths (/scheduler) and Chronos 3's
// (/v1/scheduler); its jobs are read and written by the Chronos codec (chronosapi.go).
func (s *Service) chronosRoutes(h func(string, http.HandlerFunc)) {
	for _, p := range []string{"/scheduler", "/v1/scheduler"} { // Chronos 2's paths and Chronos 3's
		h("GET "+p+"/jobs", s.chronosList)
		h("GET "+p+"/jobs/search", s.chronosSearch)
		h("POST "+p+"/iso8601", s.chronosPut(false))
		h("PUT "+p+"/iso8601", s.chronosPut(false))
		h("POST "+p+"/dependency", s.chronosPut(true))
		h("PUT "+p+"/dependency", s.chronosPut(true))
		h("PUT "+p+"/job/{name}", s.chronosRun)
		h("DELETE "+p+"/job/{name}", s.chronosDelete)
		h("DELETE "+p+"/task/kill/{name}", s.chronosKill)
		h("GET "+p+"/graph/dot", func(w http.ResponseWriter, r *http.Request) {
			s.read(w, func(st *leaderState) error {
				writeDOT(w, st.graph())
				return nil
			})
		})
	}
}

func (s *Service) chronosList(w http.ResponseWriter, r *http.Request) {
	s.chronosJobs(w, func(ChronosJob) bool { return true })
}

// chronosSearch lists the jobs whose name, command, or either (any) contains the term, in any
// case (GET /scheduler/jobs/search?name=&command=&any=).
func (s *Service) chronosSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	has := func(field, term string) bool {
		return term == "" || strings.Contains(strings.ToLower(field), strings.ToLower(term))
	}
	s.chronosJobs(w, func(c ChronosJob) bool {
		return has(c.Name, q.Get("name")) && has(c.Command, q.Get("command")) && (q.Get("any") == "" || has(c.Name, q.Get("any")) || has(c.Command, q.Get("any")))
	})
}

func (s *Service) chronosJobs(w http.ResponseWriter, keep func(ChronosJob) bool) {
	s.read(w, func(st *leaderState) error {
		out := []ChronosJob{}
		for _, id := range slices.Sorted(maps.Keys(st.jobs)) {
			if c := st.jobs[id].chronos(); keep(c) {
				out = append(out, c)
			}
		}
		httpjson.Write(w, http.StatusOK, out)
		return nil
	})
}

// chronosKill stops every active run of a job (DELETE /scheduler/task/kill/{name}).
func (s *Service) chronosKill(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[name]
		if js == nil {
			return notFound("job", name)
		}
		for _, run := range js.activeRuns() {
			if !run.Stopping {
				s.stopLocked(st, js, run, "killed by request (Chronos's task/kill)", wk, now)
			}
		}
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// chronosPut creates or replaces a job from Chronos's JSON (204, as Chronos answers).
func (s *Service) chronosPut(dependency bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var c ChronosJob
		if err := httpjson.Decode(r, &c); err != nil {
			apiError(w, err)
			return
		}
		j, err := c.toJob(dependency)
		if err != nil {
			apiError(w, err)
			return
		}
		err = s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
			return chronosField(s.putJobLocked(st, j, false, wk, now))
		})
		if err != nil {
			apiError(w, err)
			return
		}
		s.poke()
		w.WriteHeader(http.StatusNoContent)
	}
}

// chronosRun starts a job now (PUT /scheduler/job/{name}). Chronos's ?arguments= appends to a
// shell-false job's command for that run; Agora's runs all run their job as it is, so it is a
// 400 there (with shell true Chronos ignores it, and so does Agora).
func (s *Service) chronosRun(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("arguments") != "" {
		s.mu.Lock()
		var execd bool // the job's command is exec'd (shell false), not run by a shell
		if s.st != nil && s.st.jobs[r.PathValue("name")] != nil {
			rs := s.st.jobs[r.PathValue("name")].job.Run
			execd = rs.Cmd == "" && len(rs.Args) > 0
		}
		s.mu.Unlock()
		if execd {
			apiError(w, &frameworks.QueryError{Param: "arguments", Msg: "arguments for one run are not supported: change the job's arguments"})
			return
		}
	}
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[r.PathValue("name")]
		if js == nil {
			return notFound("job", r.PathValue("name"))
		}
		s.newRunLocked(st, js, TriggerManual, "", nil, wk, now)
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	s.poke()
	w.WriteHeader(http.StatusNoContent)
}

// chronosDelete deletes a job and stops its runs (DELETE /scheduler/job/{name}).
func (s *Service) chronosDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.change(r.Context(), func(st *leaderState, wk *work, now time.Time) error {
		js := st.jobs[name]
		if js == nil {
			return notFound("job", name)
		}
		if deps := st.dependants(name); len(deps) > 0 {
			return &GraphError{Field: "name", Msg: fmt.Sprintf("jobs depend on %q: %v", name, deps), Dependants: deps}
		}
		s.removeJobLocked(st, js, wk)
		return nil
	})
	if err != nil {
		apiError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
