package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// clock-skew: the leading master's wall clock steps 90 s ahead (agora master
// --chaos-clock-file), stays there 25 s, and steps back.
//
// Invariant: no cron run exists, is created, launched or started before its due time, and no
// due time is recorded missed before it is due, by the test's own clock (sampled 3 times a
// second); the skewed master leads only while refusing to fire; the longest gap between runs
// while a sane leader leads is at most 10 s.
func init() {
	scenarios = append(scenarios, scenario{name: "clock-skew", fault: clockSkew})
}

// skewJob is the workload's job (StartWorkload), due every second.
const skewJob = "chaos-tick"

// maxSaneGap bounds the longest time with no run while a master with a right clock leads.
const maxSaneGap = 10 * time.Second

func clockSkew(t *testing.T, c *Cluster, rng *rand.Rand) []string {
	m := c.Masters[0]
	if _, err := c.MoveLeader(m); err != nil { // MoveLeader notes when m leads
		t.Fatalf("could not make %s lead: %v", m.Name, err)
	}

	w := watchSkew(c, m)
	defer w.stop()
	w.setSkewed(true)
	if err := m.SetClockOffset(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	stepped := waitClock(t, c, m, 90*time.Second)
	c.Event("%s's clock is 90 s ahead (confirmed by its API)", m.Name)

	var handedAt time.Time
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l := c.Leader(); l != nil && l != m {
			handedAt = time.Now()
			c.Event("leadership moved to %s, %.1fs after the step", l.Name, handedAt.Sub(stepped).Seconds())
			break
		}
	}
	if handedAt.IsZero() {
		t.Errorf("%s still leads 30 s after its clock went 90 s ahead", m.Name)
	}
	// Its own word that it led skewed: only a leader whose clock disagrees hands over for it;
	// "cron paused" is the batch framework refusing to fire on it.
	handedLog := strings.Contains(m.Log(), "clock skewed: handing leadership")
	pausedLog := strings.Contains(m.Log(), "cron paused")
	// Hold the skew; ask the leader twice to step down: a master whose clock agrees is chosen.
	for i := range 2 {
		time.Sleep(8 * time.Second)
		if l := c.Leader(); l != nil {
			c.Event("DELETE /v2/leader on %s (%d of 2)", l.Name, i+1)
			c.call("DELETE", l.HTTP+"/v2/leader", "", nil, nil)
		}
	}
	time.Sleep(8 * time.Second)
	c.Event("%s's clock steps back", m.Name)
	if err := m.SetClockOffset(0); err != nil {
		t.Fatal(err)
	}
	waitClock(t, c, m, 0)
	w.setSkewed(false)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var v api.ClusterView
		if c.get(m.HTTP+"/v1/cluster", &v) == nil && v.Clock != nil && v.Clock.Trusted {
			c.Event("%s trusts its clock again", m.Name)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s does not trust its clock 15 s after it was set right", m.Name)
			break
		}
	}
	time.Sleep(3 * time.Second) // runs go on under the healed clock while sampled
	w.stop()

	r := w.result()
	for i, v := range r.violations {
		if i == 10 {
			t.Errorf("clock-skew: ... and %d more violations", len(r.violations)-10)
			break
		}
		t.Errorf("clock-skew: %s", v)
	}
	how := "seen leading skewed, its clock not trusted"
	switch {
	case r.ledSkewed == 0 && !handedLog:
		how = "never seen leading skewed, nor saying it handed over"
		t.Errorf("%s led when its clock stepped, yet neither a sample nor its log shows it leading skewed", m.Name)
	case r.ledSkewed == 0:
		how = "led skewed and handed over (its log) before a sample saw it"
	}
	if pausedLog {
		how += "; its batch framework logged the pause"
	}
	handed := "never"
	if !handedAt.IsZero() {
		handed = fmt.Sprintf("%.1fs", handedAt.Sub(stepped).Seconds())
	}
	if r.gap > maxSaneGap {
		t.Errorf("clock-skew: %s with no run while a sane leader led (at most %s)", r.gap.Round(100*time.Millisecond), maxSaneGap)
	}
	return []string{
		fmt.Sprintf("%s led with its clock 90 s ahead: %s", m.Name, how),
		fmt.Sprintf("seen leading skewed %d samples, handed over %s after the step", r.ledSkewed, handed),
		fmt.Sprintf("early runs %d, missed recorded before due %d (%d samples, %d runs seen)", r.early, r.missedEarly, r.samples, r.runs),
		fmt.Sprintf("longest gap with no run under a sane leader %.1fs", r.gap.Seconds()),
	}
}

// waitClock waits until n's clock is want off the host's (within half a second), and answers
// when.
func waitClock(t *testing.T, c *Cluster, n *Node, want time.Duration) time.Time {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if off, err := c.ClockOffset(n); err == nil && (off-want).Abs() < 500*time.Millisecond {
			return time.Now()
		}
	}
	t.Fatalf("%s's clock did not reach %s off within 10 s", n.Name, want)
	return time.Time{}
}

// skewWatch samples the job's runs and missed records, the agents' tasks of the job, and who
// leads, three times a second.
type skewWatch struct {
	c    *Cluster
	m    *Node
	quit chan struct{}
	done sync.WaitGroup
	once sync.Once

	mu          sync.Mutex
	skewed      bool
	violations  []string
	reported    map[string]bool
	samples     int
	ledSkewed   int
	early       int
	missedEarly int
	runAt       map[time.Time]bool // scheduled times of the runs seen
	skewedLead  []time.Time        // samples at which m led with its clock skewed
}

type skewResult struct {
	violations                      []string
	samples, ledSkewed, early, runs int
	missedEarly                     int
	gap                             time.Duration
}

func watchSkew(c *Cluster, m *Node) *skewWatch {
	w := &skewWatch{c: c, m: m, quit: make(chan struct{}), reported: map[string]bool{}, runAt: map[time.Time]bool{}}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for {
			select {
			case <-w.quit:
				return
			case <-time.After(300 * time.Millisecond):
			}
			w.sample()
		}
	}()
	return w
}

func (w *skewWatch) setSkewed(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.skewed = on
}

func (w *skewWatch) stop() { w.once.Do(func() { close(w.quit); w.done.Wait() }) }

// violate notes a violation once per key.
func (w *skewWatch) violate(key, format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reported[key] {
		return
	}
	w.reported[key] = true
	msg := fmt.Sprintf(format, args...)
	w.violations = append(w.violations, msg)
	w.c.Event("VIOLATION %s", msg)
}

func (w *skewWatch) sample() {
	c := w.c
	// Who leads, and what the skewed master says of its clock.
	var v api.ClusterView
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := c.do(ctx, "GET", w.m.HTTP+"/v1/cluster", "", nil, &v)
	cancel()
	w.mu.Lock()
	skewed := w.skewed
	w.mu.Unlock()
	if err == nil && v.Leader != nil && v.Leader.ID == v.Self.ID && skewed {
		w.mu.Lock()
		w.ledSkewed++
		w.skewedLead = append(w.skewedLead, time.Now())
		w.mu.Unlock()
		if v.Clock != nil && v.Clock.Trusted {
			w.violate("trusted", "%s led with its clock 90 s ahead and trusted it (%+v)", w.m.Name, *v.Clock)
		}
	}

	var runs []jobRun
	if _, err := c.Do("GET", "/v1/jobs/"+skewJob+"/runs?include=finished", nil, &runs); err == nil {
		seen := time.Now() // every run in the answer existed by now
		for _, r := range runs {
			if r.ScheduledAt == nil {
				continue
			}
			at := r.ScheduledAt.time()
			w.mu.Lock()
			w.runAt[at] = true
			w.mu.Unlock()
			if at.After(seen) {
				w.countEarly(r.ID)
				w.violate("run-exists-"+r.ID, "run %s (due %s) existed at %s, %.1fs before it was due", r.ID, at.Format(time.TimeOnly), seen.Format(time.StampMilli), at.Sub(seen).Seconds())
			}
			if r.CreatedAt.time().Before(at) {
				w.violate("run-created-"+r.ID, "run %s (due %s) was created at %s", r.ID, at.Format(time.TimeOnly), r.CreatedAt.time().Format(time.StampMilli))
			}
			for _, tk := range r.Tasks {
				if tk.LaunchedAt.time().Before(at) {
					w.violate("task-launched-"+tk.ID, "task %s of run %s (due %s) was launched at %s", tk.ID, r.ID, at.Format(time.TimeOnly), tk.LaunchedAt.time().Format(time.StampMilli))
				}
			}
		}
	}
	var job struct {
		History jobHistory `json:"history"`
	}
	if _, err := c.Do("GET", "/v1/jobs/"+skewJob+"?embed=history", nil, &job); err == nil {
		seen := time.Now()
		for _, mr := range job.History.MissedRuns {
			if mr.ScheduledAt.time().After(seen) || mr.RecordedAt.time().Before(mr.ScheduledAt.time()) {
				key := "missed-" + mr.ScheduledAt.time().String()
				w.mu.Lock()
				if !w.reported[key] {
					w.missedEarly++
				}
				w.mu.Unlock()
				w.violate(key, "due time %s recorded missed (%s) before it was due: seen at %s, recorded at %s", mr.ScheduledAt.time().Format(time.TimeOnly), mr.Reason,
					seen.Format(time.StampMilli), mr.RecordedAt.time().Format(time.StampMilli))
			}
		}
	}
	// The agents' own view: a task of the job never starts before its due time (the agent's
	// clock is the host's).
	for _, a := range c.Agents {
		var tasks []api.Task
		if c.Agent(a, "/v1/tasks", &tasks) != nil {
			continue
		}
		seen := time.Now()
		for _, tk := range tasks {
			s, ok := tk.Info.Env["AGORA_SCHEDULED_AT"]
			if !ok || !strings.HasPrefix(tk.Info.TaskID, skewJob+"_") {
				continue
			}
			at, err := time.Parse(time.RFC3339, s)
			if err != nil {
				continue
			}
			if at.After(seen) {
				w.violate("agent-task-"+tk.Info.TaskID, "task %s (due %s) was on agent %s at %s, before it was due", tk.Info.TaskID, s, a.Name, seen.Format(time.StampMilli))
			}
			if tk.StartedAt != nil && tk.StartedAt.Before(at) {
				w.violate("agent-start-"+tk.Info.TaskID, "task %s (due %s) started on agent %s at %s", tk.Info.TaskID, s, a.Name, tk.StartedAt.Format(time.StampMilli))
			}
		}
	}
	w.mu.Lock()
	w.samples++
	w.mu.Unlock()
}

// countEarly counts a run seen before its due time, once.
func (w *skewWatch) countEarly(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.reported["run-exists-"+id] {
		w.early++
	}
}

// result is what the watch saw; the gap is the longest time between two consecutive runs'
// due times, less the samples' worth of time the skewed master led in between (it refuses to
// fire then, by design).
func (w *skewWatch) result() skewResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := skewResult{violations: w.violations, samples: w.samples, ledSkewed: w.ledSkewed, early: w.early, missedEarly: w.missedEarly, runs: len(w.runAt)}
	var ats []time.Time
	for at := range w.runAt {
		ats = append(ats, at)
	}
	slices.SortFunc(ats, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(ats); i++ {
		gap := ats[i].Sub(ats[i-1])
		for _, s := range w.skewedLead {
			if s.After(ats[i-1]) && s.Before(ats[i]) {
				gap -= 300 * time.Millisecond
			}
		}
		r.gap = max(r.gap, gap)
	}
	return r
}
