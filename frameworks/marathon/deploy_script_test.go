package marathon

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// TestDeployScripts runs the scripts of testdata/deploy: each is a list of commands, each
// followed by "----" and what the leader's decisions (decide, observe, placeOffer) did, and
// the state they left. A script that differs prints the diff; go test -run TestDeployScripts
// -rewrite (or AGORA_REWRITE=1) writes what they do now, for a change of behaviour on purpose.
//
// Commands (ids are the apps' paths; instances are named <app>.<n> in launch order):
//
//	app {json}              create an app (or change one, a new config), in a deployment of its own
//	scale /id n             change its instances (a scaling: same config, backoff kept)
//	group {json}            create a group's apps in one deployment, in steps by their dependencies
//	offer [cpus mem]        an offer of an agent (4 cpus, 1024 MB by default) comes
//	run ids|all             the instances' tasks run (health unknown when the app checks health)
//	healthy ids|all         ... run and are healthy
//	unhealthy ids           ... run and are not healthy
//	fail ids                ... failed on their own
//	unreachable ids         ... are unreachable
//	killed                  every instance being killed has ended
//	failover                a new leader takes over: every instance unreconciled, just asked about
//	tick [duration]         time passes (1 s by default) and the leader plans every app
func TestDeployScripts(t *testing.T) {
	frameworktest.Scripts(t, "testdata/deploy/*.txt", func(t *testing.T) func(string) string {
		w := &scriptWorld{t: t, st: newLeaderState(nil), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), seq: map[string]int{}}
		return w.do
	})
}

// scriptWorld is the leader's state, with a clock, that a script drives.
type scriptWorld struct {
	t       *testing.T
	st      *leaderState
	now     time.Time
	seq     map[string]int // instances launched, by app
	version int
	deploys int
	offers  int
	// ended, when set, hears of every task that ended (the resident scripts' master);
	// recorded, of every batch of records decided (their store).
	ended    func(taskID string)
	recorded func(c *change)
}

func (w *scriptWorld) do(cmd string) string {
	name, arg, _ := strings.Cut(cmd, " ")
	var out []string
	switch name {
	case "app":
		out = w.deploy([]string{arg})
	case "group":
		out = w.group(arg)
	case "scale":
		id, n, _ := strings.Cut(arg, " ")
		out = w.scale(id, n)
	case "offer":
		out = w.offer(arg)
	case "run", "healthy", "unhealthy", "fail", "unreachable":
		out = w.status(name, arg)
	case "killed":
		for _, in := range w.instances() {
			if in.rec.Killing {
				out = append(out, w.tell(in, task.Killed, nil)...)
			}
		}
	case "failover":
		// A new leader loads every instance from its record: state and health unknown until
		// the master answers; it has just asked (Run).
		for _, in := range w.instances() {
			in.state, in.reconciled, in.healthy, in.startedAt, in.ready, in.killSent = task.Staging, false, nil, nil, false, time.Time{}
		}
		w.st.reconcileAsked = w.now
	case "tick":
		d := time.Second
		if arg != "" {
			var err error
			if d, err = time.ParseDuration(arg); err != nil {
				w.t.Fatalf("%s: %v", cmd, err)
			}
		}
		w.now = w.now.Add(d)
		out = w.tick()
	default:
		w.t.Fatalf("unknown command %q", cmd)
	}
	return strings.Join(append(out, w.state()...), "\n")
}

// define makes an app's state from its JSON, with Marathon's defaults and a new config version.
func (w *scriptWorld) define(js string, version string, keepConfig bool) *appState {
	def, err := Decode([]byte(js))
	if err != nil {
		w.t.Fatalf("%s: %v", js, err)
	}
	def = def.withDefaults()
	def["version"] = mustJSON(version)
	config := version
	var id string
	json.Unmarshal(def["id"], &id)
	if cur := w.st.apps[id]; cur != nil && keepConfig {
		config = cur.configAt
	}
	def["versionInfo"] = mustJSON(map[string]string{"lastConfigChangeAt": config, "lastScalingAt": version})
	b, _ := json.Marshal(def)
	as, err := appStateOf(b)
	if err != nil {
		w.t.Fatalf("%s: %v", js, err)
	}
	return as
}

func (w *scriptWorld) nextVersion() string {
	w.version++
	return fmt.Sprintf("v%d", w.version)
}

// deploy puts apps (JSON definitions) in one new deployment, in steps by their dependencies,
// as the API's changeApps does.
func (w *scriptWorld) deploy(defs []string) []string {
	ver := w.nextVersion()
	changed := map[string]*appState{}
	var ids []string
	for _, js := range defs {
		as := w.define(js, ver, false)
		changed[as.app.ID] = as
		ids = append(ids, as.app.ID)
	}
	all := map[string]App{}
	for id, as := range w.st.apps {
		all[id] = as.app
	}
	action := map[string]string{}
	for id, as := range changed {
		all[id] = as.app
		action[id] = "StartApplication"
		if w.st.apps[id] != nil {
			action[id] = "RestartApplication"
		}
	}
	return w.start(ids, changed, action, all)
}

func (w *scriptWorld) start(ids []string, changed map[string]*appState, action map[string]string, all map[string]App) []string {
	w.deploys++
	dep := &Deployment{ID: fmt.Sprintf("d%d", w.deploys), Version: w.now.Format(time.RFC3339)}
	for _, level := range orderByDependencies(ids, all, w.st.groups, func(string) bool { return false }) {
		var step Step
		for _, id := range level {
			step.Actions = append(step.Actions, Action{Action: action[id], App: id})
			dep.AffectedApps = append(dep.AffectedApps, id)
		}
		dep.Steps = append(dep.Steps, step)
	}
	dep.CurrentStep, dep.TotalSteps, dep.CurrentActions = 1, len(dep.Steps), dep.Steps[0].Actions
	var out []string
	for _, id := range sortedKeys(w.st.deployments) {
		// A change to an app a deployment is changing (?force=true) supersedes it.
		if old := w.st.deployments[id]; affectsAny(old, ids) {
			delete(w.st.deployments, id)
			out = append(out, "deployment "+id+" superseded")
		}
	}
	for id, as := range changed {
		w.st.apps[id] = as
		w.st.touch(id)
	}
	w.st.deployments[dep.ID] = dep
	var steps []string
	for _, s := range dep.Steps {
		var apps []string
		for _, a := range s.Actions {
			apps = append(apps, a.Action+" "+a.App)
		}
		steps = append(steps, "["+strings.Join(apps, ", ")+"]")
	}
	return append(out, fmt.Sprintf("deployment %s: %s", dep.ID, strings.Join(steps, " ")))
}

func affectsAny(d *Deployment, ids []string) bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return affects(d, m)
}

// group creates a group's apps: {"id": "/g", "apps": [...]}.
func (w *scriptWorld) group(js string) []string {
	var g struct {
		ID   string            `json:"id"`
		Apps []json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal([]byte(js), &g); err != nil {
		w.t.Fatalf("group %s: %v", js, err)
	}
	var defs []string
	for _, a := range g.Apps {
		defs = append(defs, string(a))
	}
	return w.deploy(defs)
}

// scale changes an app's instances: a new version, the same config.
func (w *scriptWorld) scale(id, n string) []string {
	cur := w.st.apps[id]
	count, err := strconv.Atoi(n)
	if cur == nil || err != nil {
		w.t.Fatalf("scale %s %s: no such app or not a number", id, n)
	}
	def := cur.def
	def["instances"] = mustJSON(count)
	b, _ := json.Marshal(def)
	as := w.define(string(b), w.nextVersion(), true)
	as.failures, as.failedAt, as.delayUntil, as.lastFail = cur.failures, cur.failedAt, cur.delayUntil, cur.lastFail
	all := map[string]App{}
	for id, a := range w.st.apps {
		all[id] = a.app
	}
	return w.start([]string{id}, map[string]*appState{id: as}, map[string]string{id: "ScaleApplication"}, all)
}

// offer hands the leader one offer; what it launches is recorded at once.
func (w *scriptWorld) offer(arg string) []string {
	cpus, mem := 4.0, 1024.0
	if arg != "" {
		fmt.Sscan(arg, &cpus, &mem)
	}
	w.offers++
	o := api.Offer{ID: fmt.Sprintf("o%d", w.offers), AgentID: "a1", Hostname: "host1",
		Resources: resources.Resources{CPUs: cpus, Mem: mem, Disk: 1000, Ports: resources.Ranges{{Begin: 31000, End: 31100}}}}
	noSecrets := func(App) (frameworks.Resolved, string) { return frameworks.Resolved{}, "" }
	u := w.st.placeOffer(o, w.now, noSecrets, func(appID string) string {
		w.seq[appID]++
		return fmt.Sprintf("%s.%d", strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_"), w.seq[appID])
	})
	w.st.launched(u.recs)
	var out []string
	for _, rec := range u.recs {
		out = append(out, "launch "+rec.ID)
	}
	if len(u.recs) == 0 {
		out = append(out, "decline")
	}
	return append(out, w.actions(&u.actions)...)
}

// status tells the leader what the named instances' tasks did.
func (w *scriptWorld) status(what, arg string) []string {
	var ins []*instance
	if arg == "all" {
		for _, in := range w.instances() {
			if !in.rec.Killing {
				ins = append(ins, in)
			}
		}
	} else {
		for _, id := range strings.Fields(arg) {
			in := w.st.instances[id]
			if in == nil {
				w.t.Fatalf("%s %s: no instance %s", what, arg, id)
			}
			ins = append(ins, in)
		}
	}
	var out []string
	for _, in := range ins {
		yes, no := true, false
		switch what {
		case "run":
			out = append(out, w.tell(in, task.Running, nil)...)
		case "healthy":
			out = append(out, w.tell(in, task.Running, &yes)...)
		case "unhealthy":
			out = append(out, w.tell(in, task.Running, &no)...)
		case "fail":
			out = append(out, w.tell(in, task.Failed, nil)...)
		case "unreachable":
			out = append(out, w.tell(in, task.Unreachable, nil)...)
		}
	}
	return out
}

func (w *scriptWorld) tell(in *instance, state task.State, healthy *bool) []string {
	o := w.st.observe(api.TaskStatus{TaskID: in.rec.ID, State: state, Healthy: healthy, Message: "script", Timestamp: w.now}, w.now)
	if w.ended != nil && state.IsTerminal() {
		w.ended(in.rec.ID)
	}
	var out []string
	if w.recorded != nil {
		// As the service's update commits it: the instance's end and its reservation's.
		if o.forget {
			o.record.del(instanceKey(in.rec.ID))
		}
		for _, key := range sortedKeys(o.record.Puts) {
			out = append(out, "record put "+key)
		}
		w.recorded(o.record)
	}
	if o.forget {
		out = append(out, "forget "+in.rec.ID)
	}
	for _, e := range o.events {
		if e.typ == EventHealthChanged {
			out = append(out, fmt.Sprintf("event %s %s alive=%v", e.typ, in.rec.ID, e.fields["alive"]))
		}
	}
	return append(out, w.logs(&o.actions)...)
}

// tick plans every app as the leader's timer does, and again while a deployment moved on.
func (w *scriptWorld) tick() []string {
	var out []string
	for i := 0; i < 10; i++ {
		a := w.st.decide(w.now, i == 0, "*")
		out = append(out, w.actions(&a)...)
		if !a.again {
			break
		}
	}
	return out
}

// actions shows what a decision leaves to do: records, kills, events (but the status ones), offers.
func (w *scriptWorld) actions(a *actions) []string {
	if w.recorded != nil && a.record != nil {
		w.recorded(a.record)
	}
	var out []string
	for _, key := range a.record.Deletes {
		out = append(out, "record delete "+key)
	}
	for _, key := range sortedKeys(a.record.Puts) {
		out = append(out, "record put "+key)
	}
	for _, k := range a.kills {
		out = append(out, "kill "+k.TaskID)
	}
	for _, e := range a.events {
		switch e.typ {
		case EventDeploymentStepOK:
			out = append(out, fmt.Sprintf("event %s %s", e.typ, e.fields["plan"].(map[string]any)["id"]))
		case EventDeploymentSuccess, EventDeploymentFailed:
			out = append(out, fmt.Sprintf("event %s %s", e.typ, e.fields["id"]))
		case EventAppTerminated:
			out = append(out, fmt.Sprintf("event %s %s", e.typ, e.fields["appId"]))
		}
	}
	if len(a.reconcile) > 0 {
		var ids []string
		for _, r := range a.reconcile {
			ids = append(ids, r.TaskID)
		}
		out = append(out, "reconcile "+strings.Join(ids, " "))
	}
	if a.revive {
		out = append(out, "revive offers")
	}
	if a.suppress {
		out = append(out, "suppress offers")
	}
	return append(out, w.logs(a)...)
}

func (w *scriptWorld) logs(a *actions) []string {
	var out []string
	for _, l := range a.logs {
		out = append(out, "log "+l.msg)
	}
	return out
}

func (w *scriptWorld) instances() []*instance {
	var out []*instance
	for _, id := range sortedKeys(w.st.apps) {
		out = append(out, w.st.appInstances(id)...)
	}
	return out
}

// state is a line per app: its instances wanted, waiting and its backoff; then a line per
// instance and per deployment.
func (w *scriptWorld) state() []string {
	var out []string
	for _, id := range sortedKeys(w.st.apps) {
		as := w.st.apps[id]
		line := fmt.Sprintf("  app %s config %s instances %d", id, as.configAt, as.app.Instances)
		if as.deleted {
			line = fmt.Sprintf("  app %s deleted", id)
		}
		if as.want > 0 {
			line += fmt.Sprintf(" want %d", as.want)
		}
		if as.failures > 0 {
			line += fmt.Sprintf(" failures %d", as.failures)
		}
		if as.delayUntil.After(w.now) {
			line += fmt.Sprintf(" delay %s", as.delayUntil.Sub(w.now))
		}
		out = append(out, line)
		for _, in := range w.st.appInstances(id) {
			s := fmt.Sprintf("    %s %s %s", in.rec.ID, in.rec.Version, strings.ToLower(strings.TrimPrefix(string(in.state), "TASK_")))
			if in.healthy != nil {
				s += map[bool]string{true: " healthy", false: " unhealthy"}[*in.healthy]
			}
			if in.rec.Killing {
				s += " killing"
			}
			out = append(out, s)
		}
	}
	ids := sortedKeys(w.st.deployments)
	sort.Strings(ids)
	for _, id := range ids {
		d := w.st.deployments[id]
		out = append(out, fmt.Sprintf("  deployment %s step %d/%d", id, d.CurrentStep, d.TotalSteps))
	}
	return out
}
