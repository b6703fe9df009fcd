package marathon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
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

// upgradeWorld runs the leader's planner (decide, as step does) against what really runs,
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
		w.st.observe(st, w.clk.Now())
	}
}

func ptr[T any](v T) *T { return &v }

// round moves the world, tells the leader (when it hears), plans, and carries the plan out.
func (w *upgradeWorld) round() actions {
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
	mv := w.st.decide(w.clk.Now(), true, "*")
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
	if mv := st.decide(clk.Now(), true, "*"); len(mv.reconcile) != 4 || len(mv.kills) > 0 || as.want > 0 {
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

// TestDeploymentRevertsAfterFailover: three masters in this process (raft on bbolt, HTTP on
// loopback). A group's change is in progress — /shop/web changed and scaled to 2, /shop/old
// deleted, /shop/new created, /shop made to depend on /base — and waits (no agent registers)
// when the leader dies. The new leader lists the deployment, its record has the trees before
// and after the change with those apps in them, and DELETE /v2/deployments/{id} there reverts
// the change as Marathon does: /shop/old comes back as it was (the deployment had deleted it
// with its versions), /shop/web gets its definition back, /shop/new goes, /shop depends on
// nothing again. The deployment_failed of the reverted deployment carries Marathon 1.10's plan.
func TestDeploymentRevertsAfterFailover(t *testing.T) {
	svcs := map[*master.Master]*Service{}
	var mu sync.Mutex
	nodes := frameworktest.Masters(t, 3, map[string]raft.Applier{Namespace: Applier()}, func(m *master.Master) error {
		svc, err := New(Config{Host: m.FrameworkHost(Namespace), Tick: 50 * time.Millisecond})
		if err != nil {
			return err
		}
		svc.Register()
		mu.Lock()
		svcs[m] = svc
		mu.Unlock()
		return nil
	})
	ready := func(nd *frameworktest.Node) (*Service, string) {
		t.Helper()
		svc := svcs[nd.Master]
		waitFor(t, "the service framework on the leader", func() bool {
			svc.mu.Lock()
			defer svc.mu.Unlock()
			return svc.st != nil
		})
		return svc, "http://" + nd.HTTPAddr()
	}
	lead := frameworktest.Leader(t, nodes)
	_, base := ready(lead)
	deployments := func(base string) []map[string]any {
		var out []map[string]any
		if code := call(t, "GET", base+"/v2/deployments", "", &out); code != http.StatusOK {
			t.Fatalf("GET /v2/deployments: %d", code)
		}
		return out
	}
	settled := func(base string) {
		t.Helper()
		waitFor(t, "no deployment left", func() bool { return len(deployments(base)) == 0 })
	}
	for _, g := range []string{
		`{"id": "/base", "apps": [{"id": "db", "cmd": "db", "instances": 0}]}`,
		`{"id": "/shop", "apps": [{"id": "web", "cmd": "serve v1", "instances": 0}, {"id": "old", "cmd": "serve old", "instances": 0, "labels": {"keep": "me"}}]}`,
	} {
		if code := call(t, "POST", base+"/v2/groups", g, nil); code != http.StatusCreated {
			t.Fatalf("POST /v2/groups %s: %d", g, code)
		}
	}
	settled(base)
	var res changeResult
	if code := call(t, "PUT", base+"/v2/groups/shop", `{"id": "/shop", "dependencies": ["/base"], "apps": [
		{"id": "web", "cmd": "serve v2", "instances": 2}, {"id": "new", "cmd": "serve new", "instances": 1}]}`, &res); code != http.StatusOK || res.DeploymentID == "" {
		t.Fatalf("PUT /v2/groups/shop: %d %+v", code, res)
	}
	if deps := deployments(base); len(deps) != 1 || deps[0]["id"] != res.DeploymentID {
		t.Fatalf("before the failover: %v, want the deployment %s", deps, res.DeploymentID)
	}

	lead.Kill()
	newLead := frameworktest.Leader(t, nodes)
	svc, base := ready(newLead)
	deps := deployments(base)
	if len(deps) != 1 || deps[0]["id"] != res.DeploymentID || fmt.Sprint(deps[0]["affectedApps"]) != "[/shop/new /shop/old /shop/web]" {
		t.Fatalf("GET /v2/deployments on the new leader: %v, want %s of /shop/new, /shop/old, /shop/web", deps, res.DeploymentID)
	}
	if _, ok := deps[0]["original"]; ok {
		t.Fatalf("GET /v2/deployments shows original, which Marathon 1.10 does not: %v", deps[0])
	}
	// The trees, as the new leader loaded them from its store.
	svc.mu.Lock()
	d := svc.st.deployments[res.DeploymentID]
	svc.mu.Unlock()
	was, will := map[string]Definition{}, map[string]Definition{}
	d.Original.planApps(was)
	d.Target.planApps(will)
	cmd := func(def Definition) string {
		var c string
		json.Unmarshal(def["cmd"], &c)
		return c
	}
	if len(was) != 2 || cmd(was["/shop/web"]) != "serve v1" || cmd(was["/shop/old"]) != "serve old" ||
		len(will) != 2 || cmd(will["/shop/web"]) != "serve v2" || cmd(will["/shop/new"]) != "serve new" {
		t.Fatalf("the trees on the new leader: original %v, target %v", was, will)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	events := sseEvents(t, ctx, base+"/v2/events?event_type="+EventDeploymentFailed)
	var revert changeResult
	if code := call(t, "DELETE", base+"/v2/deployments/"+res.DeploymentID, "", &revert); code != http.StatusOK || revert.DeploymentID == "" {
		t.Fatalf("DELETE /v2/deployments/%s on the new leader: %d %+v", res.DeploymentID, code, revert)
	}
	select {
	case ev := <-events:
		plan, _ := ev["plan"].(map[string]any)
		original, _ := json.Marshal(plan["original"])
		if ev["id"] != res.DeploymentID || plan["id"] != res.DeploymentID || plan["version"] == nil || plan["steps"] == nil ||
			!strings.Contains(string(original), `"id":"/shop/old"`) {
			t.Fatalf("deployment_failed: %v, want the reverted deployment with its plan and, from the new leader's store, its original tree", ev)
		}
	case <-ctx.Done():
		t.Fatal("no deployment_failed for the reverted deployment")
	}
	settled(base)
	app := func(id string) map[string]any {
		var out struct {
			App map[string]any `json:"app"`
		}
		if code := call(t, "GET", base+"/v2/apps"+id, "", &out); code != http.StatusOK {
			t.Fatalf("GET /v2/apps%s after the revert: %d", id, code)
		}
		return out.App
	}
	if old := app("/shop/old"); old["cmd"] != "serve old" || old["instances"] != 0.0 || fmt.Sprint(old["labels"]) != "map[keep:me]" {
		t.Errorf("/shop/old after the revert: %v", old)
	}
	if web := app("/shop/web"); web["cmd"] != "serve v1" || web["instances"] != 0.0 {
		t.Errorf("/shop/web after the revert: %v", web)
	}
	if code := call(t, "GET", base+"/v2/apps/shop/new", "", nil); code != http.StatusNotFound {
		t.Errorf("/shop/new after the revert: %d, want 404", code)
	}
	var shop map[string]any
	if code := call(t, "GET", base+"/v2/groups/shop", "", &shop); code != http.StatusOK || fmt.Sprint(shop["dependencies"]) != "[]" {
		t.Errorf("/shop after the revert: %d %v, want no dependencies", code, shop)
	}
}
