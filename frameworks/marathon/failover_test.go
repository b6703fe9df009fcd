package marathon

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/task"
)

// worldTask is a task as it really is on its agent; the leader learns of it only through
// status updates.
type worldTask struct {
	id, version string
	healthy     bool
	killed      bool // its kill was sent: it ends at the next round, and no longer answers /health
	ended       bool
	told        string // the last status the leader was told: "", "running", "healthy"
	// silent is how many more rounds its health checks stay silent (as after an agent
	// restarted them): it is told running, health unknown, although it answers /health.
	silent int
	// healthyIn is how many more rounds it takes to turn healthy (0: the next one).
	healthyIn int
}

// upgradeWorld runs the leader's planner (planLocked, as step does) against what really runs,
// round by round: kills end a round later; a launched instance runs at once and is healthy a
// round later.
type upgradeWorld struct {
	t     *testing.T
	svc   *Service
	st    *leaderState
	clk   *clock.Fake
	tasks []*worldTask
	next  int
	// told: status updates reach the leader (its agents registered with it)
	told bool
}

func (w *upgradeWorld) task(id string) *worldTask {
	for _, tk := range w.tasks {
		if tk.id == id {
			return tk
		}
	}
	w.t.Fatalf("no task %s", id)
	return nil
}

// truth checks the bounds on what really runs: containers ≤ 3, healthy ≥ 2.
func (w *upgradeWorld) truth(when string) {
	w.t.Helper()
	running, healthy := 0, 0
	for _, tk := range w.tasks {
		if tk.ended {
			continue
		}
		running++
		if tk.healthy && !tk.killed {
			healthy++
		}
	}
	if running > 3 || healthy < 2 {
		w.t.Fatalf("%s: %d containers run (at most 3), %d healthy (at least 2)", when, running, healthy)
	}
}

// tell delivers what changed to the leader, as agents' updates (or reconciliation answers) do.
func (w *upgradeWorld) tell(tk *worldTask) {
	var st api.TaskStatus
	switch {
	case tk.ended:
		st = api.TaskStatus{TaskID: tk.id, State: task.Killed}
	case tk.silent > 0:
		tk.silent--
		tk.told = "running"
		st = api.TaskStatus{TaskID: tk.id, State: task.Running, Timestamp: w.clk.Now()}
	case tk.healthy && tk.told != "healthy":
		tk.told = "healthy"
		st = api.TaskStatus{TaskID: tk.id, State: task.Running, Healthy: ptr(true), Timestamp: w.clk.Now()}
	case !tk.healthy && tk.told == "":
		tk.told = "running"
		st = api.TaskStatus{TaskID: tk.id, State: task.Running, Timestamp: w.clk.Now()}
	default:
		return
	}
	if w.st.instances[tk.id] != nil {
		w.svc.observeLocked(w.st, st)
	}
}

func ptr[T any](v T) *T { return &v }

// round moves the world, tells the leader (when it hears), plans, and carries the plan out.
func (w *upgradeWorld) round() stepMoves {
	w.t.Helper()
	w.clk.Advance(time.Second)
	for _, tk := range w.tasks {
		switch {
		case tk.killed:
			tk.ended = true
		case tk.ended:
		case tk.healthyIn > 0:
			tk.healthyIn--
		default:
			tk.healthy = true
		}
	}
	w.truth("after the world moved")
	if w.told {
		for _, tk := range w.tasks {
			w.tell(tk)
		}
	}
	mv := w.svc.planLocked(context.Background(), w.st, w.clk.Now(), true)
	for _, k := range mv.kills {
		w.task(k.TaskID).killed = true
	}
	as := w.st.apps["/web"]
	for ; as.want > 0; as.want-- { // useOffer: recorded, then launched
		rec := InstanceRecord{ID: fmt.Sprintf("web.new-%d", w.next), AppID: "/web", Version: as.configAt, AgentID: "a1", StagedAt: w.clk.Now()}
		w.next++
		w.st.add(&instance{rec: rec, state: task.Staging, reconciled: true})
		w.tasks = append(w.tasks, &worldTask{id: rec.ID, version: rec.Version})
	}
	w.truth("after the plan's moves")
	return mv
}

// TestNewLeaderWaitsForReconciliationMidUpgrade: a new leader loads a rolling upgrade (3
// instances, minimumHealthCapacity 0.5, maximumOverCapacity 0) in the middle — an old instance
// being killed, a new one launched — with every instance STAGING and of unknown health, as
// load leaves them. Until the master has answered for every instance, nothing is killed and
// nothing launched (not even once some answered); then the upgrade goes on within both bounds
// (an old instance whose health is still unknown counts as not healthy, and is not killed as
// an unhealthy one),
// on what really runs, and ends with 3 healthy new instances and its deployment.
func TestNewLeaderWaitsForReconciliationMidUpgrade(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	svc := &Service{cfg: Config{Clock: clk, Logger: slog.New(slog.DiscardHandler)}, logger: slog.New(slog.DiscardHandler), bus: newEventBus(), wake: make(chan struct{}, 1)}
	as, err := appStateOf([]byte(`{"id": "/web", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 3,
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}],
		"upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
		"version": "v2", "versionInfo": {"lastConfigChangeAt": "v2", "lastScalingAt": "v2"}}`))
	if err != nil {
		t.Fatal(err)
	}
	st := newLeaderState(nil)
	st.apps["/web"] = as
	dep := &Deployment{ID: "d1", Version: "v2", AffectedApps: []string{"/web"}, Steps: []Step{{Actions: []Action{{Action: "RestartApplication", App: "/web"}}}},
		CurrentStep: 1, TotalSteps: 1, CurrentActions: []Action{{Action: "RestartApplication", App: "/web"}}}
	st.deployments[dep.ID] = dep
	w := &upgradeWorld{t: t, svc: svc, st: st, clk: clk}
	// What the store has, as load reads it: the old leader had killed old-0 and launched new-0.
	for i, r := range []struct {
		id, version string
		killing     bool
	}{{"web.old-0", "v1", true}, {"web.old-1", "v1", false}, {"web.old-2", "v1", false}, {"web.new-0", "v2", false}} {
		st.add(&instance{rec: InstanceRecord{ID: r.id, AppID: "/web", Version: r.version, AgentID: "a1", StagedAt: clk.Now().Add(time.Duration(i-10) * time.Second), Killing: r.killing},
			state: task.Staging})
		w.tasks = append(w.tasks, &worldTask{id: r.id, version: r.version, healthy: r.version == "v1", killed: r.killing})
	}
	w.task("web.old-2").silent = 3    // reconciled as running, its health unknown for a while
	w.task("web.new-0").healthyIn = 6 // slow to start: not healthy yet when the agents register
	w.next = 1
	svc.st = st

	// Agents have not registered with the new leader: no answer yet.
	for i := range 3 {
		mv := w.round()
		if len(mv.kills) > 0 || as.want > 0 || len(st.waiting) > 0 || mv.revive {
			t.Fatalf("round %d, nothing reconciled: kills %v, want %d, waiting %v, revive %t", i, mv.kills, as.want, st.waiting, mv.revive)
		}
	}
	// Still unanswered after reconcileRetry: asked again.
	clk.Advance(reconcileRetry)
	if mv := svc.planLocked(context.Background(), st, clk.Now(), true); len(mv.reconcile) != 4 || len(mv.kills) > 0 || as.want > 0 {
		t.Fatalf("after %s unanswered: reconcile %v, kills %v, want %d", reconcileRetry, mv.reconcile, mv.kills, as.want)
	}
	// One answer (an old instance, healthy) is not enough: the others may run, or not.
	w.tell(w.task("web.old-1"))
	if mv := w.round(); len(mv.kills) > 0 || as.want > 0 {
		t.Fatalf("one instance of four reconciled: kills %v, want %d", mv.kills, as.want)
	}
	// The agents register: every instance is answered for, and the upgrade goes on.
	w.told = true
	for round := 0; ; round++ {
		if round == 30 {
			t.Fatalf("the upgrade did not end in 30 rounds: %d instances, deployments %d", len(st.instances), len(st.deployments))
		}
		w.round()
		if len(st.deployments) == 0 {
			break
		}
	}
	var left []string
	for _, in := range st.appInstances("/web") {
		if in.rec.Version != "v2" || in.state != task.Running || in.healthy == nil || !*in.healthy {
			t.Errorf("left: %s of %s, %s", in.rec.ID, in.rec.Version, in.state)
		}
		left = append(left, in.rec.ID)
	}
	sort.Strings(left)
	if len(left) != 3 {
		t.Fatalf("the upgrade ended with %v, want 3 new instances", left)
	}
}
