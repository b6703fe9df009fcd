package chronos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// TestCronScripts runs the scripts of testdata/cron: the cron planner's decisions (which runs
// start, which are missed and why, which are killed) as a leader takes them, step by step on a
// fake clock. The framework runs on a real master (raft on bbolt) that is not its scheduler:
// the script is — its offers and status updates are the events of the framework's cycles, and
// what the framework asks of the master (launches, kills, offers wanted) is printed. A script
// that differs prints the lines that differ; go test -run TestCronScripts -rewrite (or
// AGORA_REWRITE=1) writes what they print now, for a change of behaviour on purpose.
//
// Commands (runs are named <job>#<n> in the order they were created, their tasks
// <job>#<n>.<attempt>; the clock starts at 2026-01-01 00:00:00 UTC):
//
//	job {json}        create a job (POST /v1/jobs), or replace it (PUT /v1/jobs/{id})
//	start <job>       a one-off run now (POST /v1/jobs/{id}/runs)
//	stop <run>        stop a run (POST .../runs/{run}/actions/stop)
//	delete <job>      delete a job, stopping its runs (DELETE /v1/jobs/{id}?stopCurrentJobRuns=true)
//	tick [duration]   time passes (1 s by default) and the framework steps
//	offer [cpus mem]  an offer (4 cpus, 1024 MB by default) of agent a1 comes
//	running <run>     the run's task is running
//	finish <run>      ... finished (exit 0)
//	fail <run>        ... failed (exit 1)
//	killed <run>      ... was killed
//	failover          the leader changes: the state is loaded again from the store, a new
//	                  session asks the master about the tasks of runs in flight
//
// After an API command the framework steps at once, as it does when the API wakes it. Each
// block says what the framework decided — runs created, stopping and ended, due times missed
// and why — then what it did: the API's answer when not 2xx, its calls to the master, when it
// looks again; then each job's state: its schedules' next due times, its counts, its active
// runs.
func TestCronScripts(t *testing.T) {
	frameworktest.Scripts(t, "testdata/cron/*.txt", func(t *testing.T) func(string) string {
		return newCronWorld(t).do
	})
}

// cronWorld is a framework that leads on a real master, driven by a script.
type cronWorld struct {
	t       *testing.T
	svc     *Service
	clk     *clock.Fake
	ss      *scriptSession
	leaders int
	offers  int
	updates int
	// names are the scripts' names of runs and tasks, by id; runsOf counts the runs named, by job.
	names  map[string]string
	runsOf map[string]int
	// seen is what the last block showed: each run's line, and the missed records.
	seen map[string]string
}

func newCronWorld(t *testing.T) *cronWorld {
	w := &cronWorld{t: t, clk: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		names: map[string]string{}, runsOf: map[string]int{}, seen: map[string]string{}}
	m, _ := frameworktest.Master(t, t.TempDir(), &mastertest.SimulatedAgents{}, time.Hour, map[string]raft.Applier{Namespace: Applier()}, func(m *master.Master) error {
		var err error
		w.svc, err = New(Config{Host: m.FrameworkHost(Namespace), Clock: w.clk})
		return err // not registered: the script is its driver
	})
	w.svc.checkClock = func() clock.Verdict { return clock.Verdict{Trusted: true} }
	frameworktest.WaitFor(t, "the master to lead", 30*time.Second, m.Store().IsLeader)
	w.lead()
	return w
}

// lead makes the framework lead with a new session: it loads its state from the store.
func (w *cronWorld) lead() []string {
	w.leaders++
	w.ss = &scriptSession{id: fmt.Sprintf("session-%d", w.leaders)}
	known, err := w.svc.begin(context.Background(), w.ss)
	if err != nil {
		w.t.Fatalf("leading: %v", err)
	}
	var ids []string
	for _, k := range known {
		ids = append(ids, k.TaskID)
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	return []string{"reconcile " + strings.Join(ids, " ")}
}

func (w *cronWorld) do(cmd string) string {
	name, arg, _ := strings.Cut(cmd, " ")
	var out []string
	switch name {
	case "job":
		out = w.putJob(arg)
	case "start":
		out = w.api("POST", "/v1/jobs/"+arg+"/runs", "", w.svc.startRun, "id", arg)
	case "stop":
		job, _, _ := strings.Cut(arg, "#")
		out = w.api("POST", "/v1/jobs/"+job+"/runs/"+w.runID(arg)+"/actions/stop", "", w.svc.stopRun, "id", job, "run", w.runID(arg))
	case "delete":
		out = w.api("DELETE", "/v1/jobs/"+arg+"?stopCurrentJobRuns=true", "", w.svc.deleteJob, "id", arg)
	case "tick":
		d := time.Second
		if arg != "" {
			var err error
			if d, err = time.ParseDuration(arg); err != nil {
				w.t.Fatalf("%s: %v", cmd, err)
			}
		}
		w.clk.Advance(d)
		out = w.cycle(nil)
	case "offer":
		out = w.offer(arg)
	case "running", "finish", "fail", "killed":
		out = w.status(name, arg)
	case "failover":
		w.svc.end()
		out = w.lead()
	default:
		w.t.Fatalf("unknown command %q", cmd)
	}
	out = append(w.changes(), out...)
	return w.named(strings.Join(append(out, w.state()...), "\n"))
}

// putJob creates the job, or replaces it when it exists, through the API's handlers.
func (w *cronWorld) putJob(spec string) []string {
	var j struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		w.t.Fatalf("job %s: %v", spec, err)
	}
	w.svc.mu.Lock()
	exists := w.svc.st.jobs[j.ID] != nil
	w.svc.mu.Unlock()
	if exists {
		return w.api("PUT", "/v1/jobs/"+j.ID, spec, w.svc.putJob, "id", j.ID)
	}
	return w.api("POST", "/v1/jobs", spec, w.svc.createJob)
}

// api calls a handler of the jobs API as the master's HTTP server would (path values given as
// name, value pairs); its answer is shown when it is not a 2xx. When the handler woke the
// framework, the framework steps at once, as its driver does.
func (w *cronWorld) api(method, target, body string, h http.HandlerFunc, pathValues ...string) []string {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(pathValues); i += 2 {
		req.SetPathValue(pathValues[i], pathValues[i+1])
	}
	rec := httptest.NewRecorder()
	h(rec, req)
	var out []string
	if rec.Code >= 300 {
		var e struct {
			Message string `json:"message"`
			Details []struct {
				Path   string   `json:"path"`
				Errors []string `json:"errors"`
			} `json:"details"`
		}
		json.Unmarshal(rec.Body.Bytes(), &e)
		line := fmt.Sprintf("answer %d: %s", rec.Code, e.Message)
		for _, d := range e.Details {
			line += fmt.Sprintf(" (%s: %s)", d.Path, strings.Join(d.Errors, "; "))
		}
		out = append(out, line)
	}
	out = append(out, w.ss.take()...) // what the change did at once (kills)
	select {
	case <-w.svc.wake:
		out = append(out, w.cycle(nil)...)
	default:
	}
	return out
}

// cycle has the framework take a batch of events and step, as its driver does.
func (w *cronWorld) cycle(batch []api.Event) []string {
	wakeAt, err := w.svc.cycle(context.Background(), batch, false)
	if err != nil {
		w.t.Fatalf("cycle: %v", err)
	}
	out := w.ss.take()
	if !wakeAt.IsZero() {
		line := "looks again at " + clockTime(wakeAt)
		if !wakeAt.After(w.clk.Now()) {
			line += " (passed: its driver steps again at once)"
		}
		out = append(out, line)
	}
	return out
}

func (w *cronWorld) offer(arg string) []string {
	cpus, mem := 4.0, 1024.0
	if arg != "" {
		if _, err := fmt.Sscan(arg, &cpus, &mem); err != nil {
			w.t.Fatalf("offer %s: %v", arg, err)
		}
	}
	w.offers++
	o := api.Offer{ID: fmt.Sprintf("o%d", w.offers), AgentID: "a1", Hostname: "host1",
		Resources: resources.Resources{CPUs: cpus, Mem: mem, Disk: 1000}}
	return w.cycle([]api.Event{{Type: api.EventOffers, Offers: &api.Offers{Offers: []api.Offer{o}}}})
}

// status tells the framework what the named run's latest task did; "RUN at -2m" stamps the
// update as an agent whose clock is two minutes behind would.
func (w *cronWorld) status(what, arg string) []string {
	run, skew, _ := strings.Cut(arg, " at ")
	var offset time.Duration
	if skew != "" {
		var err error
		if offset, err = time.ParseDuration(skew); err != nil {
			w.t.Fatalf("%s %s: %v", what, arg, err)
		}
	}
	id := w.runID(run)
	w.svc.mu.Lock()
	var t *RunTask
	for _, js := range w.svc.st.jobs {
		if r := js.runs[id]; r != nil {
			t = r.task()
		}
	}
	w.svc.mu.Unlock()
	if t == nil {
		w.t.Fatalf("%s %s: the run has no task", what, run)
	}
	w.updates++
	ts := api.TaskStatus{TaskID: t.ID, AgentID: t.AgentID, Message: "script", Timestamp: w.clk.Now().Add(offset), UUID: fmt.Sprintf("u%d", w.updates)}
	zero, one := 0, 1
	switch what {
	case "running":
		ts.State = task.Running
	case "finish":
		ts.State, ts.ExitStatus = task.Finished, &zero
	case "fail":
		ts.State, ts.ExitStatus = task.Failed, &one
	case "killed":
		ts.State = task.Killed
	}
	return w.cycle([]api.Event{{Type: api.EventUpdate, Update: &api.Update{Status: ts}}})
}

// runID is the id of the run a script names.
func (w *cronWorld) runID(name string) string {
	for id, n := range w.names {
		if n == name {
			return id
		}
	}
	w.t.Fatalf("no run %s", name)
	return ""
}

// jobs are the framework's jobs now, by id, with their runs in the order they were created.
func (w *cronWorld) jobs(f func(id string, js *jobState, runs []*Run)) {
	w.svc.mu.Lock()
	defer w.svc.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(w.svc.st.jobs)) {
		js := w.svc.st.jobs[id]
		runs := slices.Collect(maps.Values(js.runs))
		sort.Slice(runs, func(i, j int) bool {
			a, b := runs[i], runs[j]
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.Before(b.CreatedAt)
			}
			if at, bt := scheduledAt(a), scheduledAt(b); !at.Equal(bt) {
				return at.Before(bt)
			}
			return a.ID < b.ID
		})
		f(id, js, runs)
	}
}

func scheduledAt(r *Run) time.Time {
	if r.ScheduledAt == nil {
		return time.Time{}
	}
	return *r.ScheduledAt
}

// changes says what became of runs and due times since the last block: runs stopping and
// ended, runs created, and due times recorded missed, with why.
func (w *cronWorld) changes() []string {
	var ended, created, missed []string
	now := map[string]string{}
	w.jobs(func(id string, js *jobState, runs []*Run) {
		for _, r := range runs {
			if w.names[r.ID] == "" {
				w.runsOf[id]++
				w.names[r.ID] = fmt.Sprintf("%s#%d", id, w.runsOf[id])
				how := r.Trigger
				if r.ScheduledAt != nil {
					how = fmt.Sprintf("schedule %s, due %s", r.ScheduleID, clockTime(*r.ScheduledAt))
				}
				created = append(created, fmt.Sprintf("created %s (%s)", r.ID, how))
			}
			for _, t := range r.Tasks {
				if w.names[t.ID] == "" {
					w.names[t.ID] = w.names[r.ID] + t.ID[strings.LastIndex(t.ID, "."):]
				}
			}
			key := "run " + r.ID
			switch {
			case !r.Active():
				now[key] = "ended " + r.ID + " " + r.Status
				if r.Reason != "" {
					now[key] += ": " + r.Reason
				}
			case r.Stopping:
				now[key] = "stopping " + r.ID + ": " + r.Reason
			default:
				now[key] = ""
			}
			if now[key] != w.seen[key] && now[key] != "" {
				ended = append(ended, now[key])
			}
		}
		for i := len(js.hist.MissedRuns) - 1; i >= 0; i-- { // oldest first
			m := js.hist.MissedRuns[i]
			key := fmt.Sprintf("missed %s %s %s", id, m.ScheduleID, clockTime(m.ScheduledAt))
			now[key] = key + ": " + m.Reason
			if w.seen[key] == "" {
				missed = append(missed, now[key])
			}
		}
		key := "missed count " + id
		now[key] = fmt.Sprint(js.hist.MissedCount)
		if counted := js.hist.MissedCount - len(js.hist.MissedRuns); counted > 0 && now[key] != w.seen[key] {
			missed = append(missed, fmt.Sprintf("missed %s: %d due times counted, not listed", id, counted))
		}
	})
	w.seen = now
	return slices.Concat(ended, created, missed)
}

// state is a line per job (its schedules' next due times, its counts) and one per active run.
func (w *cronWorld) state() []string {
	var out []string
	w.jobs(func(id string, js *jobState, runs []*Run) {
		line := "  job " + id
		for _, sc := range js.job.Schedules {
			next := "never"
			if n := js.next[sc.ID]; !n.IsZero() {
				next = clockTime(n)
			}
			line += fmt.Sprintf(" schedule %s %s next %s;", sc.ID, sc.ConcurrencyPolicy, next)
		}
		h := js.hist
		out = append(out, line+fmt.Sprintf(" success %d failure %d missed %d", h.SuccessCount, h.FailureCount, h.MissedCount))
		for _, r := range runs {
			if !r.Active() {
				continue
			}
			l := fmt.Sprintf("    %s %s", r.ID, r.Status)
			if t := r.task(); t != nil {
				l += fmt.Sprintf(" task %s %s", t.ID, strings.ToLower(strings.TrimPrefix(string(t.Status), "TASK_")))
			}
			if r.NextAttemptAt != nil {
				l += " next attempt at " + clockTime(*r.NextAttemptAt)
			}
			if r.Stopping {
				l += " stopping"
			}
			out = append(out, l)
		}
	})
	return out
}

// named writes runs and tasks by the script's names: task ids first (a task id holds its
// run's).
func (w *cronWorld) named(s string) string {
	ids := slices.Collect(maps.Keys(w.names))
	sort.Slice(ids, func(i, j int) bool { return len(ids[i]) > len(ids[j]) })
	for _, id := range ids {
		s = strings.ReplaceAll(s, id, w.names[id])
	}
	return s
}

func clockTime(t time.Time) string { return t.UTC().Format(time.TimeOnly) }

// scriptSession is the framework's session with the master, which the script plays: it
// records what the framework asks.
type scriptSession struct {
	id    string
	calls []string
}

func (s *scriptSession) take() []string {
	out := s.calls
	s.calls = nil
	return out
}

func (s *scriptSession) FrameworkID() string { return s.id }

func (s *scriptSession) Events(context.Context, int) (<-chan api.Event, <-chan error) {
	return nil, nil
}

func (s *scriptSession) Call(c api.Call) error {
	switch c.Type {
	case api.CallKill:
		line := "kill " + c.Kill.TaskID
		if g := c.Kill.GracePeriodSeconds; g > 0 {
			line += fmt.Sprintf(" (grace %gs)", g)
		}
		s.calls = append(s.calls, line)
	case api.CallRevive:
		s.calls = append(s.calls, "revive offers")
	case api.CallSuppress:
		s.calls = append(s.calls, "suppress offers")
	default:
		s.calls = append(s.calls, "call "+string(c.Type))
	}
	return nil
}

// Accept records the launches, by task id: runs created at one instant wait in the order of
// their random ids, and so launch in it.
func (s *scriptSession) Accept(offerIDs []string, ops []api.Operation, _ *api.Filters) error {
	var launches []string
	for _, op := range ops {
		for _, ti := range op.Launch.TaskInfos {
			launches = append(launches, fmt.Sprintf("launch %s (%s)", ti.TaskID, strings.Join(offerIDs, " ")))
		}
	}
	sort.Strings(launches)
	s.calls = append(s.calls, launches...)
	return nil
}

func (s *scriptSession) Decline(offerIDs []string, f *api.Filters) error {
	line := "decline " + strings.Join(offerIDs, " ")
	if f != nil && f.RefuseSeconds != nil {
		line += fmt.Sprintf(" for %gs", *f.RefuseSeconds)
	}
	s.calls = append(s.calls, line)
	return nil
}

func (s *scriptSession) Acknowledge(api.TaskStatus) error { return nil }
func (s *scriptSession) Close()                           {}
