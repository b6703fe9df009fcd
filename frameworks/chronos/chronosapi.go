package chronos

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/httpjson"
)

// ChronosJob is a job in Chronos's JSON: what /scheduler/iso8601 and /scheduler/dependency
// take and /scheduler/jobs lists. It maps onto a job spec: name → id, command → run.cmd,
// schedule (ISO 8601 R[n]/start/period) and scheduleTimeZone → one schedule "default", epsilon
// → its startingDeadlineSeconds, parents → dependencies, retries → ON_FAILURE with that
// backoffLimit (Chronos's default is 2), disabled → the schedule disabled.
type ChronosJob struct {
	Name                 string          `json:"name"`
	Command              string          `json:"command"`
	Shell                *bool           `json:"shell,omitempty"`
	Arguments            []string        `json:"arguments,omitempty"`
	Schedule             string          `json:"schedule,omitempty"`
	ScheduleTimeZone     string          `json:"scheduleTimeZone,omitempty"`
	Parents              []string        `json:"parents,omitempty"`
	Epsilon              string          `json:"epsilon,omitempty"`
	CPUs                 float64         `json:"cpus,omitempty"`
	Mem                  float64         `json:"mem,omitempty"`
	Disk                 float64         `json:"disk,omitempty"`
	Retries              *int            `json:"retries,omitempty"`
	Disabled             bool            `json:"disabled,omitempty"`
	Description          string          `json:"description,omitempty"`
	Owner                string          `json:"owner,omitempty"`
	OwnerName            string          `json:"ownerName,omitempty"`
	Container            *ChronosImage   `json:"container,omitempty"`
	EnvironmentVariables []ChronosEnvVar `json:"environmentVariables,omitempty"`
	Constraints          [][]string      `json:"constraints,omitempty"`
	SuccessCount         int             `json:"successCount"`
	ErrorCount           int             `json:"errorCount"`
	LastSuccess          string          `json:"lastSuccess"`
	LastError            string          `json:"lastError"`
}

// ChronosImage is Chronos's container: its image is the run's docker.image.
type ChronosImage struct {
	Type           string `json:"type,omitempty"`
	Image          string `json:"image"`
	ForcePullImage bool   `json:"forcePullImage,omitempty"`
	Network        string `json:"network,omitempty"`
}

// ChronosEnvVar is one of Chronos's environmentVariables.
type ChronosEnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (s *Service) chronosRoutes(h func(string, http.HandlerFunc)) {
	h("GET /scheduler/jobs", s.chronosList)
	h("POST /scheduler/iso8601", s.chronosPut(false))
	h("PUT /scheduler/iso8601", s.chronosPut(false))
	h("POST /scheduler/dependency", s.chronosPut(true))
	h("PUT /scheduler/dependency", s.chronosPut(true))
	h("PUT /scheduler/job/{name}", s.chronosRun)
	h("DELETE /scheduler/job/{name}", s.chronosDelete)
	h("GET /scheduler/graph/dot", func(w http.ResponseWriter, r *http.Request) {
		s.read(w, func(st *leaderState) error {
			writeDOT(w, st.graph())
			return nil
		})
	})
}

// toJob maps a Chronos job onto a job spec; the errors name Chronos's fields.
func (c ChronosJob) toJob(dependency bool) (*Job, error) {
	if c.Name == "" {
		return nil, &FieldError{Field: "name", Msg: "is required"}
	}
	if len(c.Name) <= maxIDLen && !idPattern.MatchString(c.Name) { // longer ones: Normalize says why
		return nil, &FieldError{Field: "name", Msg: fmt.Sprintf("%q: Agora's job ids are lowercase letters, digits and '-', in names separated by '.'", c.Name)}
	}
	j := &Job{ID: c.Name, Description: c.Description, Run: RunSpec{Cmd: c.Command, Args: c.Arguments, CPUs: c.CPUs, Mem: c.Mem, Disk: c.Disk}}
	if c.Shell != nil && !*c.Shell {
		if c.Command != "" {
			j.Run.Args = append([]string{c.Command}, c.Arguments...)
		}
		j.Run.Cmd = ""
	}
	if c.Owner != "" || c.OwnerName != "" {
		j.Labels = map[string]string{}
		if c.Owner != "" {
			j.Labels["owner"] = c.Owner
		}
		if c.OwnerName != "" {
			j.Labels["ownerName"] = c.OwnerName
		}
	}
	if c.Container != nil {
		j.Run.Docker = &Docker{Image: c.Container.Image, ForcePullImage: c.Container.ForcePullImage}
	}
	for _, e := range c.EnvironmentVariables {
		if j.Run.Env == nil {
			j.Run.Env = map[string]frameworks.EnvValue{}
		}
		j.Run.Env[e.Name] = frameworks.EnvValue{Value: e.Value}
	}
	for i, con := range c.Constraints {
		if len(con) < 2 {
			return nil, &FieldError{Field: fmt.Sprintf("constraints[%d]", i), Msg: "want [attribute, operator, value]"}
		}
		pc := PlacementConstraint{Attribute: con[0], Operator: con[1]}
		if len(con) > 2 {
			pc.Value = con[2]
		}
		if j.Run.Placement == nil {
			j.Run.Placement = &Placement{}
		}
		j.Run.Placement.Constraints = append(j.Run.Placement.Constraints, pc)
	}
	retries := 2
	if c.Retries != nil {
		retries = *c.Retries
	}
	if retries < 0 {
		return nil, &FieldError{Field: "retries", Msg: "must not be negative"}
	}
	if retries > 0 {
		j.Run.Restart = Restart{Policy: RestartOnFailure, BackoffLimit: &retries}
	}
	if dependency {
		if len(c.Parents) == 0 {
			return nil, &FieldError{Field: "parents", Msg: "a dependent job names at least one parent"}
		}
		j.Dependencies = c.Parents
	} else {
		if c.Schedule == "" {
			return nil, &FieldError{Field: "schedule", Msg: "is required (ISO 8601 R[n]/start/period, like R/2026-01-01T02:00:00Z/P1D)"}
		}
		sc := Schedule{ID: "default", Cron: c.Schedule, Timezone: c.ScheduleTimeZone}
		if c.Epsilon != "" {
			secs, err := isoSeconds(c.Epsilon)
			if err != nil {
				return nil, &FieldError{Field: "epsilon", Msg: err.Error()}
			}
			sc.StartingDeadlineSeconds = secs
		}
		enabled := !c.Disabled
		sc.Enabled = &enabled
		j.Schedules = []Schedule{sc}
	}
	if err := j.Normalize(); err != nil {
		return nil, chronosField(err)
	}
	return j, nil
}

// chronosField renames a job spec's fields to Chronos's in an error.
func chronosField(err error) error {
	fe, ok := err.(*FieldError)
	if !ok {
		return err
	}
	names := map[string]string{"id": "name", "run.cmd": "command", "run.cpus": "cpus", "run.mem": "mem", "run.disk": "disk",
		"schedules[0].cron": "schedule", "schedules[0].timezone": "scheduleTimeZone", "dependencies": "parents", "run.docker.image": "container.image"}
	if n, ok := names[fe.Field]; ok {
		return &FieldError{Field: n, Msg: fe.Msg}
	}
	return fe
}

// isoSeconds reads an ISO 8601 duration of days, hours, minutes and seconds (PT30M).
func isoSeconds(s string) (int, error) {
	m := durationPattern.FindStringSubmatch(s)
	if m == nil || m[1] != "" || m[2] != "" || s == "P" || s == "PT" {
		return 0, fmt.Errorf("%q: want an ISO 8601 duration like PT30M or P1D", s)
	}
	var n [8]float64
	for i := 3; i <= 7; i++ {
		n[i], _ = strconv.ParseFloat(orZero(m[i]), 64)
	}
	total := ((n[3]*7+n[4])*24+n[5])*3600 + n[6]*60 + n[7]
	if total > maxDeadlineSeconds {
		return 0, fmt.Errorf("%q: at most a year", s) // larger ones overflowed before
	}
	return int(total), nil
}

// fromJob shows a job as Chronos does.
func (js *jobState) chronos() ChronosJob {
	j := js.job
	c := ChronosJob{Name: j.ID, Command: j.Run.Cmd, Arguments: j.Run.Args, Parents: j.Dependencies, CPUs: j.Run.CPUs, Mem: j.Run.Mem, Disk: j.Run.Disk,
		Description: j.Description, Owner: j.Labels["owner"], OwnerName: j.Labels["ownerName"],
		SuccessCount: js.hist.SuccessCount, ErrorCount: js.hist.FailureCount}
	retries := 0
	if j.Run.Restart.Policy == RestartOnFailure && j.Run.Restart.BackoffLimit != nil {
		retries = *j.Run.Restart.BackoffLimit
	}
	c.Retries = &retries
	if len(j.Schedules) > 0 {
		sc := j.Schedules[0]
		c.Schedule, c.ScheduleTimeZone, c.Disabled = sc.Cron, sc.Timezone, !*sc.Enabled
		if sc.StartingDeadlineSeconds > 0 {
			c.Epsilon = fmt.Sprintf("PT%dS", sc.StartingDeadlineSeconds)
		}
	}
	if j.Run.Docker != nil {
		c.Container = &ChronosImage{Type: "MESOS", Image: j.Run.Docker.Image, ForcePullImage: j.Run.Docker.ForcePullImage}
	}
	plain := frameworks.PlainEnv(j.Run.Env) // Chronos has no secrets: their refs are left out
	for _, k := range slices.Sorted(maps.Keys(plain)) {
		c.EnvironmentVariables = append(c.EnvironmentVariables, ChronosEnvVar{Name: k, Value: plain[k]})
	}
	if t := js.hist.LastSuccessAt; t != nil {
		c.LastSuccess = t.UTC().Format(time.RFC3339Nano)
	}
	if t := js.hist.LastFailureAt; t != nil {
		c.LastError = t.UTC().Format(time.RFC3339Nano)
	}
	return c
}

func (s *Service) chronosList(w http.ResponseWriter, r *http.Request) {
	s.read(w, func(st *leaderState) error {
		out := []ChronosJob{}
		for _, id := range slices.Sorted(maps.Keys(st.jobs)) {
			out = append(out, st.jobs[id].chronos())
		}
		httpjson.Write(w, http.StatusOK, out)
		return nil
	})
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

// chronosRun starts a job now (PUT /scheduler/job/{name}).
func (s *Service) chronosRun(w http.ResponseWriter, r *http.Request) {
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
