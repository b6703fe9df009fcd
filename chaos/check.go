package chaos

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/resources"
)

// Workload is what a scenario asks of the cluster through the public API while it breaks it:
// apps kept at their instances, a job due every second, and a stream of small writes. It
// remembers which writes were acknowledged, and samples what agents run.
type Workload struct {
	c         *Cluster
	Apps      []string // acknowledged apps
	Instances int
	Job       string

	mu         sync.Mutex
	acked      []string // acknowledged secret writes
	tried      int
	violations []string // over-run instances, over-committed agents, seen while sampling
	samples    int
	stop       chan struct{}
	done       sync.WaitGroup
	hist       *History // the checked clients' operations (linearizable.go)
}

// StartWorkload creates the apps and the job and starts the writer and the sampler.
func StartWorkload(t testing.TB, c *Cluster, apps int) *Workload {
	t.Helper()
	w := &Workload{c: c, Instances: 2, Job: "chaos-tick", stop: make(chan struct{})}
	for i := 1; i <= apps; i++ {
		id := fmt.Sprintf("/chaos/web-%d", i)
		app := map[string]any{"id": id, "container": map[string]any{"type": "DOCKER", "docker": map[string]string{"image": containerdtest.TestAppImage}},
			"args": []string{"-sleep", "24h"}, "cpus": 0.1, "mem": 32, "instances": w.Instances,
			"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
			"healthChecks":    []map[string]any{{"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1, "timeoutSeconds": 2, "gracePeriodSeconds": 10}}}
		if _, err := c.Do("POST", "/v2/apps", app, nil); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		w.Apps = append(w.Apps, id)
	}
	job := map[string]any{"id": w.Job, "run": map[string]any{"docker": map[string]string{"image": containerdtest.TestAppImage}, "args": []string{"-print-args", "tick"},
		"cpus": 0.05, "mem": 32}, "schedules": []map[string]any{{"id": "s", "cron": "* * * * * *"}},
		"successfulHistoryLimit": 1000, "failedHistoryLimit": 1000} // every run kept for the check
	if _, err := c.Do("POST", "/v1/jobs", job, nil); err != nil {
		t.Fatalf("create %s: %v", w.Job, err)
	}
	w.startHistory(t)
	c.Event("workload: %d apps × %d, job %s every second, %d clients checked for linearizability", apps, w.Instances, w.Job, linClients)
	w.done.Add(2)
	go w.write()
	go w.sample()
	return w
}

// write stores a small secret every 200 ms and remembers the ones answered 2xx.
func (w *Workload) write() {
	defer w.done.Done()
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
		name := fmt.Sprintf("w-%05d", i)
		_, err := w.c.Do("PUT", "/v1/secrets/"+name, map[string]string{"value": name}, nil)
		w.mu.Lock()
		w.tried++
		if err == nil {
			w.acked = append(w.acked, name)
		}
		w.mu.Unlock()
	}
}

// sample looks at every agent twice a second: no app may have more running instances than it
// wants (Marathon replaces an instance only after the old one ended or after its
// unreachableStrategy, 300 s, which no scenario reaches), and no agent may have allocated more
// than it has.
func (w *Workload) sample() {
	defer w.done.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
		running := map[string][]string{}
		for _, a := range w.c.Agents {
			var tasks []api.Task
			if w.c.Agent(a, "/v1/tasks", &tasks) != nil {
				continue // paused or down: nothing to count
			}
			for _, tk := range tasks {
				if tk.Status.State == "TASK_RUNNING" && strings.HasPrefix(tk.Info.TaskID, "chaos_web-") {
					app, _, _ := strings.Cut(tk.Info.TaskID, ".")
					running[app] = append(running[app], a.Name+":"+tk.Info.TaskID)
				}
			}
			var stats struct {
				Resources resources.Resources `json:"resources"`
				Allocated resources.Resources `json:"allocated"`
			}
			if w.c.Agent(a, "/v1/stats", &stats) == nil {
				if stats.Allocated.CPUs > stats.Resources.CPUs+1e-9 || stats.Allocated.Mem > stats.Resources.Mem+1e-9 {
					w.violate("agent %s allocated %s of %s", a.Name, stats.Allocated, stats.Resources)
				}
			}
		}
		for app, where := range running {
			if len(where) > w.Instances {
				w.violate("%s runs %d instances at once, wants %d: %v", app, len(where), w.Instances, where)
			}
		}
		w.mu.Lock()
		w.samples++
		w.mu.Unlock()
	}
}

func (w *Workload) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.c.Event("VIOLATION %s", msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, msg)
}

// Stop ends the writer and the sampler.
func (w *Workload) Stop() {
	close(w.stop)
	w.done.Wait()
}

// Verdict is what a scenario's checks found.
type Verdict struct {
	Scenario string
	Failures []string
	Figures  []string
}

func (v *Verdict) fail(format string, args ...any) {
	v.Failures = append(v.Failures, fmt.Sprintf(format, args...))
}
func (v *Verdict) note(format string, args ...any) {
	v.Figures = append(v.Figures, fmt.Sprintf(format, args...))
}

// Line is the one-line verdict.
func (v *Verdict) Line() string {
	if len(v.Failures) == 0 {
		return fmt.Sprintf("PASS %s: %s", v.Scenario, strings.Join(v.Figures, ", "))
	}
	return fmt.Sprintf("FAIL %s: %s (%s)", v.Scenario, strings.Join(v.Failures, "; "), strings.Join(v.Figures, ", "))
}

// Check stops the workload and checks every invariant on the healed cluster, waiting up to
// settle for what converges (instances, updates).
func (w *Workload) Check(t testing.TB, v *Verdict, settle time.Duration) {
	t.Helper()
	c := w.c
	w.Stop()
	w.checkHistory(t, v)
	deadline := time.Now().Add(settle)
	eventually := func(what string, ok func() (bool, string)) { eventually(v, deadline, what, ok) }

	eventually("acknowledged writes present", w.ackedPresent)
	v.note("writes acknowledged %d/%d", len(w.acked), w.tried)
	eventually("apps at their instances, healthy", w.appsWhole)
	// Every due second of the job is one run or one missed record with its reason.
	w.checkCron(v, deadline)
	eventually("status updates delivered, no orphan containers", func() (bool, string) { return w.agentsAgree(t) })

	// The scenario's own invariants.
	c.mu.Lock()
	expects, seen := c.expects, c.violations
	c.mu.Unlock()
	for _, e := range expects {
		eventually(e.what, e.ok)
	}
	for _, x := range seen {
		v.fail("%s", x)
	}

	for _, n := range c.Nodes() {
		if n.Exited() {
			v.fail("%s exited on its own: %s", n.Name, tail(n.Log(), 300))
		}
	}
	w.mu.Lock()
	for _, x := range w.violations {
		v.fail("%s", x)
	}
	v.note("samples %d", w.samples)
	w.mu.Unlock()
}

// eventually polls ok until it holds, or fails the verdict with its last word at the deadline.
func eventually(v *Verdict, deadline time.Time, what string, ok func() (bool, string)) {
	for {
		done, why := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			v.fail("%s: %s", what, why)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ackedPresent: every acknowledged write is there.
func (w *Workload) ackedPresent() (bool, string) {
	var list struct {
		Secrets []string `json:"secrets"`
	}
	if _, err := w.c.Do("GET", "/v1/secrets", nil, &list); err != nil {
		return false, err.Error()
	}
	have := map[string]bool{}
	for _, s := range list.Secrets {
		have[s] = true
	}
	for _, a := range w.acked {
		if !have[a] {
			return false, "lost " + a
		}
	}
	return true, ""
}

// appsWhole: every app is back at its instances, all healthy, no deployment left.
func (w *Workload) appsWhole() (bool, string) {
	for _, id := range w.Apps {
		var out struct {
			App struct {
				Instances    int `json:"instances"`
				TasksRunning int `json:"tasksRunning"`
				TasksHealthy int `json:"tasksHealthy"`
			} `json:"app"`
		}
		if _, err := w.c.Do("GET", "/v2/apps"+id, nil, &out); err != nil {
			return false, err.Error()
		}
		if a := out.App; a.TasksRunning != w.Instances || a.TasksHealthy != w.Instances {
			return false, fmt.Sprintf("%s: %d running, %d healthy of %d", id, a.TasksRunning, a.TasksHealthy, w.Instances)
		}
	}
	return true, ""
}

// agentsAgree: every agent's tasks are as the master says (updates delivered), nothing is
// left to acknowledge, and no container is one no task owns.
func (w *Workload) agentsAgree(t testing.TB) (bool, string) {
	c := w.c
	for _, a := range c.Agents {
		var tasks []api.Task
		if err := c.Agent(a, "/v1/tasks", &tasks); err != nil {
			return false, err.Error()
		}
		live := map[string]bool{}
		for _, tk := range tasks {
			var st api.TaskStatus
			if _, err := c.Do("GET", "/v1/tasks/"+tk.Info.TaskID, nil, &st); err != nil {
				if tk.Status.State.IsTerminal() {
					continue // ended and forgotten by the master since: nothing to deliver
				}
				return false, fmt.Sprintf("%s: task %s: %v", a.Name, tk.Info.TaskID, err)
			}
			if st.State != tk.Status.State {
				return false, fmt.Sprintf("%s: task %s is %s on the agent, %s on the master", a.Name, tk.Info.TaskID, tk.Status.State, st.State)
			}
			if !tk.Status.State.IsTerminal() {
				live[tk.Info.TaskID] = true
			}
		}
		m, err := c.Metrics(a)
		if err != nil {
			return false, err.Error()
		}
		if n := m["agora_agent_status_updates_pending"]; n != 0 {
			return false, fmt.Sprintf("%s has %g updates not acknowledged", a.Name, n)
		}
		ctrs, err := c.ctrd.Containers(namespaced(t, a.NS))
		if err != nil {
			return false, err.Error()
		}
		for _, ctr := range ctrs {
			if !live[ctr.ID()] {
				return false, fmt.Sprintf("%s: container %s belongs to no live task", a.Name, ctr.ID())
			}
		}
	}
	return true, ""
}

// checkCron deletes the job's schedule, waits for its runs to end and checks each due second.
func (w *Workload) checkCron(v *Verdict, deadline time.Time) {
	c := w.c
	for {
		code, err := c.Do("DELETE", "/v1/jobs/"+w.Job+"/schedules/s", nil, nil)
		if err == nil || code == 404 {
			break
		}
		if time.Now().After(deadline) {
			v.fail("cron: delete the schedule: %v", err)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	var runs []jobRun
	for {
		runs = nil
		_, err := c.Do("GET", "/v1/jobs/"+w.Job+"/runs?include=finished", nil, &runs)
		active := 0
		for _, r := range runs {
			if r.active() {
				active++
			}
		}
		if err == nil && active == 0 {
			break
		}
		if time.Now().After(deadline) {
			v.fail("cron: %d runs still active (%v)", active, err)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	var job struct {
		History jobHistory `json:"history"`
	}
	if _, err := c.Do("GET", "/v1/jobs/"+w.Job+"?embed=history", nil, &job); err != nil {
		v.fail("cron: history: %v", err)
		return
	}
	seen := map[int64]string{}
	var first, last int64 = math.MaxInt64, 0
	mark := func(t time.Time, what string) {
		s := t.Unix()
		if prev, dup := seen[s]; dup {
			v.fail("cron: %s is due once, but has %s and %s", t.UTC().Format(time.TimeOnly), prev, what)
		}
		seen[s] = what
		first, last = min(first, s), max(last, s)
	}
	for _, r := range runs {
		if r.ScheduledAt == nil {
			continue // run by hand: none here
		}
		mark(r.ScheduledAt.time(), "run "+r.ID)
	}
	missed := 0
	reasons := map[string]int{}
	for _, m := range job.History.MissedRuns {
		if m.Reason == "" {
			v.fail("cron: a missed run at %s without a reason", m.ScheduledAt.time())
		}
		mark(m.ScheduledAt.time(), "missed ("+m.Reason+")")
		missed++
		reasons[m.Reason]++
	}
	for r, n := range reasons {
		c.Event("cron: %d missed: %s", n, r)
	}
	var holes []string
	for s := first; s <= last; s++ {
		if _, ok := seen[s]; !ok {
			holes = append(holes, time.Unix(s, 0).UTC().Format(time.TimeOnly))
		}
	}
	sort.Strings(holes)
	if len(holes) > 0 {
		v.fail("cron: due seconds neither run nor recorded missed: %v", holes)
	}
	if len(runs) == 0 {
		v.fail("cron: no run at all")
	}
	v.note("cron seconds checked %d (%d runs, %d missed)", len(seen), len(runs), missed)
	if len(reasons) > 0 {
		var rs []string
		for r, n := range reasons {
			rs = append(rs, fmt.Sprintf("%d %s", n, r))
		}
		sort.Strings(rs)
		v.note("missed: %s", strings.Join(rs, "; "))
	}
}
