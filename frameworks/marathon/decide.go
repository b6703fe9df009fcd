package marathon

import (
	"log/slog"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// The leader's decisions, without I/O. Each function here takes the leader's state in memory
// (the caller holds s.mu), the time, and what happened — a status update (observe), a tick or
// a change (decide), an offer (placeOffer, offer.go) — changes the state in memory, and answers
// what is left to do: the records to commit through raft and, once they are committed and the
// lock is released, the kills, launches, events and calls to the master. The Service's step,
// update and useOffer (service.go) do that, in that order, as Chronos's change and act do; the
// tests drive these functions directly (plan_prop_test.go, deploy_script_test.go).

// event is one of Marathon's events, its fields taken when it was decided.
type event struct {
	typ    string
	fields map[string]any
	at     time.Time // its timestamp: when it was decided (zero: when it is published)
}

// logLine is a line for the service's log.
type logLine struct {
	level slog.Level
	msg   string
	args  []any
}

// probe is a readiness probe to start for an instance, where it was when decided.
type probe struct {
	app App
	in  *instance
	rec InstanceRecord
}

// actions is what a decision leaves to do outside the lock, in this order: record (the kills
// decided, instances expunged, deployments advanced or finished) through raft; publish the
// events and write the logs; send the kills — only once recorded, so a new leader knows of
// every kill sent; revive or suppress offers; ask again about instances still not reconciled;
// start readiness probes; and decide again at once (again) when a deployment moved on a step.
type actions struct {
	now              time.Time // of the decision: its events' timestamp (zero: when published)
	record           *change
	kills            []api.KillTask
	killing          []string // instances marked Killing (unmarked if the record fails)
	events           []event
	logs             []logLine
	revive, suppress bool
	reconcile        []api.ReconcileTask
	probes           []probe
	again            bool
}

func (a *actions) publish(typ string, fields map[string]any) {
	a.events = append(a.events, event{typ, fields, a.now})
}

func (a *actions) log(level slog.Level, msg string, args ...any) {
	a.logs = append(a.logs, logLine{level, msg, args})
}

// observed is what a status update leaves to do outside the lock: events to publish, a line
// to log, then the task to kill or the instance's record to delete.
type observed struct {
	killUnowned bool // no instance owns the task, which has not ended: kill it
	forget      bool // the instance ended: delete its record
	actions
}

// observe takes a status update into the state, without I/O: the instance's state and health
// change, and it is reconciled; an ended instance is forgotten (and replaced, with backoff, if
// nobody asked it to stop).
func (st *leaderState) observe(ts api.TaskStatus, now time.Time) observed {
	o := observed{actions: actions{now: now, record: &change{}}}
	in := st.instances[ts.TaskID]
	if in == nil {
		o.killUnowned = !ts.State.IsTerminal() && ts.State != task.Unknown
		return o
	}
	o.publish(EventStatusUpdate, map[string]any{
		"slaveId": in.rec.AgentID, "taskId": in.rec.ID, "taskStatus": string(ts.State), "message": ts.Message,
		"appId": in.rec.AppID, "host": in.rec.Host, "ports": in.rec.Ports, "version": in.rec.Version, "instanceId": in.rec.ID,
	})
	if in.state != ts.State {
		o.publish(EventInstanceChanged, map[string]any{
			"instanceId": in.rec.ID, "condition": condition(ts.State), "runSpecId": in.rec.AppID, "agentId": in.rec.AgentID,
			"host": in.rec.Host, "runSpecVersion": in.rec.Version,
		})
	}
	st.touch(in.rec.AppID)
	if ts.State.IsTerminal() || ts.State == task.Unknown {
		st.remove(ts.TaskID)
		if as := st.apps[in.rec.AppID]; as != nil && !in.rec.Killing {
			failed(as, in, ts, now, &o.actions)
		}
		st.taskEnded(in, ts, &o.actions)
		o.forget = true
		return o
	}
	in.state, in.message, in.reconciled = ts.State, ts.Message, true
	if ts.Healthy != nil {
		h := *ts.Healthy
		if in.healthy == nil || *in.healthy != h {
			o.publish(EventHealthChanged, map[string]any{"appId": in.rec.AppID, "taskId": in.rec.ID, "instanceId": in.rec.ID, "version": in.rec.Version, "alive": h})
		}
		in.healthy = &h
	}
	switch ts.State {
	case task.Running:
		if in.startedAt == nil {
			t := ts.Timestamp
			in.startedAt = &t
		}
		in.unreachableSince = time.Time{}
		st.confirmReservation(in, &o.actions)
	case task.Unreachable:
		if in.unreachableSince.IsZero() {
			in.unreachableSince = now
		}
	}
	return o
}

// condition is Marathon's name of an instance's condition for a task state.
func condition(s task.State) string {
	name := strings.TrimPrefix(string(s), "TASK_")
	if name == "" {
		return ""
	}
	return name[:1] + strings.ToLower(name[1:])
}

// failed records an instance that ended on its own — whether it ran or its launch failed
// (TASK_ERROR, TASK_FAILED before TASK_RUNNING, TASK_DROPPED, an agent's refusal): the app's
// launches wait backoffSeconds × backoffFactor^(failures-1), at most maxLaunchDelaySeconds.
func failed(as *appState, in *instance, ts api.TaskStatus, now time.Time, a *actions) {
	as.failures++
	delay := LaunchDelay(as.app, as.failures)
	as.failedAt, as.delayUntil = now, now.Add(delay)
	as.lastFail = &TaskFailure{AppID: as.app.ID, Host: in.rec.Host, Message: ts.Message, State: string(ts.State), TaskID: in.rec.ID,
		Timestamp: ts.Timestamp, Version: in.rec.Version, SlaveID: in.rec.AgentID}
	a.log(slog.LevelInfo, "instance ended; replacing it", "app", as.app.ID, "instance", in.rec.ID, "state", ts.State, "message", ts.Message, "delay", delay)
}

// backoffResetAfter is how long an instance launched after the app's latest failure must run
// (healthy, if the app checks health) before the app's launch backoff starts over: a command
// that runs and fails a moment later keeps backing off, and so does a launch that fails again
// and again beside instances that have long been running (they prove nothing about it).
const backoffResetAfter = 10 * time.Second

// LaunchDelay is the wait before launching again after the n-th failure in a row.
func LaunchDelay(a App, failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := a.BackoffSeconds * math.Pow(a.BackoffFactor, float64(failures-1))
	d = math.Min(d, a.MaxLaunchDelaySeconds)
	return time.Duration(d * float64(time.Second))
}

// reconcileRetry is how long instances may stay unreconciled before they are asked about
// again (an answer lost with a subscription, a master that held the question).
const reconcileRetry = 10 * time.Second

// decide plans every app (all of them when full, else those touched since): decides the kills
// and how many instances each app waits for (as.want, started into offers by placeOffer),
// advances and finishes deployments, and says whether offers are wanted. It changes only the
// state in memory; what to record and do is in the actions it answers. An app with an
// instance not reconciled yet gets no move at all: after a failover an instance loads with its
// state and health unknown, and neither a kill (is it healthy?) nor a launch (does it still
// run?) can respect the upgrade strategy's bounds until the master has answered for it. role
// is the framework's, as plans in events show it.
func (st *leaderState) decide(now time.Time, full bool, role string) actions {
	a := actions{now: now, record: &change{}}
	apps := sortedKeys(st.dirty)
	if full {
		apps = sortedKeys(st.apps)
	}
	clear(st.dirty)
	newlyWaiting := false
	for _, appID := range apps {
		if st.decideApp(appID, now, &a) {
			newlyWaiting = true
		}
	}
	if len(a.reconcile) > 0 {
		st.reconcileAsked = now
	}
	planned := map[string]bool{}
	for _, id := range apps {
		planned[id] = true
	}
	for _, id := range sortedKeys(st.deployments) {
		if d := st.deployments[id]; full || affects(d, planned) {
			st.advance(d, role, &a)
		}
	}
	for _, id := range sortedKeys(st.reservations) {
		if r := st.reservations[id]; st.apps[r.AppID] == nil && !r.Destroy {
			st.wipeApp(r.AppID, &a) // its app is gone (deleted before a failover)
		}
	}
	if full {
		st.killAgain(now, &a)
	}
	waiting := len(st.waiting) > 0 || st.destroying()
	switch {
	case waiting && (st.suppressed || newlyWaiting):
		// Something new waits: offers declined while nothing did (refused for a while) come
		// back at once.
		st.suppressed = false
		a.revive = true
	case !waiting && !st.suppressed:
		st.suppressed = true
		a.suppress = true
	}
	return a
}

// killRetry is how long an instance being killed may run on before its kill is sent again
// (Marathon's --kill_retry_timeout): a kill may be lost on its way (its agent restarting, a new
// leader), and an instance marked killing is never killed again otherwise.
const killRetry = 10 * time.Second

// killAgain sends the kill again of each instance being killed whose task, as its latest
// status says, still runs killRetry after the last kill this leader sent (at once for one this
// leader has sent none).
func (st *leaderState) killAgain(now time.Time, a *actions) {
	for _, id := range sortedKeys(st.instances) {
		in := st.instances[id]
		if !in.rec.Killing || !in.reconciled || in.state.IsTerminal() || in.rec.AgentID == "" || now.Sub(in.killSent) < killRetry {
			continue
		}
		kill := api.KillTask{TaskID: id, AgentID: in.rec.AgentID}
		if as := st.apps[in.rec.AppID]; as != nil && as.app.TaskKillGracePeriodSeconds != nil {
			kill.GracePeriodSeconds = *as.app.TaskKillGracePeriodSeconds
		}
		in.killSent = now
		a.kills = append(a.kills, kill)
	}
}

// decideApp plans one app: it expunges what has been unreachable too long, starts its backoff
// over when an instance launched since its latest failure has run long enough, asks PlanApp
// for the kills and the starts, and says whether the app began to wait for offers.
func (st *leaderState) decideApp(appID string, now time.Time, a *actions) (newlyWaiting bool) {
	as := st.apps[appID]
	if as == nil {
		delete(st.waiting, appID)
		return false
	}
	if st.heldByStep(appID) {
		// Its deployment has not reached its step: what runs stays as it is.
		as.setWant(0, now)
		delete(st.waiting, appID)
		return false
	}
	insts := st.appInstances(appID)
	target := as.app.Instances
	if as.deleted {
		target = 0
		st.wipeApp(appID, a)
		if len(insts) == 0 {
			delete(st.apps, appID)
			delete(st.waiting, appID)
			a.publish(EventAppTerminated, map[string]any{"appId": appID})
			return false
		}
	}
	view := st.planView(as, insts, now, a)
	if as.failures > 0 && backoffOver(as, insts, now) {
		as.failures, as.delayUntil = 0, time.Time{} // it runs (healthy) again: the backoff starts over
	}
	p := PlanApp(target, as.app.UpgradeStrategy, as.app.KillSelection, view)
	for _, id := range p.Kill {
		in := st.instances[id]
		in.rec.Killing = true
		in.killSent = now
		a.record.put(instanceKey(id), in.rec)
		kill := api.KillTask{TaskID: id, AgentID: in.rec.AgentID}
		if g := as.app.TaskKillGracePeriodSeconds; g != nil {
			kill.GracePeriodSeconds = *g
		}
		a.kills = append(a.kills, kill)
		a.killing = append(a.killing, id)
	}
	as.setWant(p.Start, now)
	if as.want > 0 && !now.Before(as.delayUntil) {
		newlyWaiting = !st.waiting[appID]
		st.waiting[appID] = true
	} else {
		delete(st.waiting, appID)
	}
	return newlyWaiting
}

// planView is what PlanApp sees of an app's instances. An instance unreachable for the app's
// inactiveAfterSeconds does not count (a replacement starts); after expungeAfterSeconds it is
// forgotten, and its task killed should its agent come back. A new instance that is healthy
// but not ready yet gets its readiness probed, and counts once ready. Instances not reconciled
// since long enough are asked about again.
func (st *leaderState) planView(as *appState, insts []*instance, now time.Time, a *actions) []PlanInstance {
	var view []PlanInstance
	inactive := time.Duration(as.app.UnreachableStrategy.InactiveAfterSeconds * float64(time.Second))
	expunge := time.Duration(as.app.UnreachableStrategy.ExpungeAfterSeconds * float64(time.Second))
	for _, in := range insts {
		// A disabled unreachable strategy (a resident app's: WAIT_FOREVER) never replaces an
		// unreachable instance: it holds its agent's volumes, and waits for it.
		if !in.unreachableSince.IsZero() && !as.app.UnreachableStrategy.Disabled && now.Sub(in.unreachableSince) >= inactive {
			if now.Sub(in.unreachableSince) >= expunge {
				st.remove(in.rec.ID)
				a.record.del(instanceKey(in.rec.ID))
				a.kills = append(a.kills, api.KillTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
			}
			continue
		}
		isNew := in.rec.Version == as.configAt && !as.deleted
		running := in.state == task.Running
		checked := len(as.app.HealthChecks) > 0
		healthy := running && (!checked || in.healthy != nil && *in.healthy)
		if isNew && healthy && len(as.app.ReadinessChecks) > 0 && !in.ready {
			if !in.probing && !in.rec.Killing {
				in.probing = true
				a.probes = append(a.probes, probe{app: as.app, in: in, rec: in.rec})
			}
			healthy = false // a new instance counts once it is ready
		}
		view = append(view, PlanInstance{
			ID: in.rec.ID, New: isNew, Running: running, Healthy: healthy,
			HealthUnknown: running && checked && in.healthy == nil, Unreconciled: !in.reconciled,
			Killing: in.rec.Killing, StagedAt: in.rec.StagedAt,
		})
		if !in.reconciled && !now.Before(st.reconcileAsked.Add(reconcileRetry)) {
			a.reconcile = append(a.reconcile, api.ReconcileTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
		}
	}
	return view
}

// backoffOver says whether an instance launched after the app's latest failure has run
// (healthy, if the app checks health) for backoffResetAfter.
func backoffOver(as *appState, insts []*instance, now time.Time) bool {
	for _, in := range insts {
		if in.state == task.Running && in.startedAt != nil && now.Sub(*in.startedAt) >= backoffResetAfter &&
			!in.rec.StagedAt.Before(as.failedAt) &&
			(len(as.app.HealthChecks) == 0 || in.healthy != nil && *in.healthy) {
			return true
		}
	}
	return false
}

// advance moves a deployment on while its current step is settled: each step done is
// published (deployment_step_success), the next one begins (its apps are planned at once), and
// after the last the deployment is deleted (deployment_success).
func (st *leaderState) advance(d *Deployment, role string, a *actions) {
	for st.stepSettled(d) {
		a.publish(EventDeploymentStepOK, map[string]any{"plan": planWire(d, role), "currentStep": d.Steps[min(d.CurrentStep, len(d.Steps))-1]})
		if d.CurrentStep >= d.TotalSteps {
			delete(st.deployments, d.ID)
			a.record.del(deploymentKey(d.ID))
			a.publish(EventDeploymentSuccess, map[string]any{"id": d.ID, "plan": planWire(d, role)})
			a.log(slog.LevelInfo, "deployment finished", "deployment", d.ID, "apps", strings.Join(d.AffectedApps, ","))
			return
		}
		d.CurrentStep++
		d.CurrentActions = d.Steps[d.CurrentStep-1].Actions
		a.record.put(deploymentKey(d.ID), d)
		for _, act := range d.CurrentActions {
			st.touch(act.App)
		}
		a.again = true // plan the next step's apps now
	}
}

// add puts an instance in the state.
func (st *leaderState) add(in *instance) {
	st.instances[in.rec.ID] = in
	m := st.byApp[in.rec.AppID]
	if m == nil {
		m = map[string]*instance{}
		st.byApp[in.rec.AppID] = m
	}
	m[in.rec.ID] = in
}

// remove takes an instance out of the state.
func (st *leaderState) remove(id string) {
	in := st.instances[id]
	if in == nil {
		return
	}
	delete(st.instances, id)
	delete(st.byApp[in.rec.AppID], id)
	if len(st.byApp[in.rec.AppID]) == 0 {
		delete(st.byApp, in.rec.AppID)
	}
}

// affects says whether a deployment changes one of the apps.
func affects(d *Deployment, apps map[string]bool) bool {
	for _, a := range d.AffectedApps {
		if apps[a] {
			return true
		}
	}
	return false
}

// appInstances lists an app's instances, oldest first.
func (st *leaderState) appInstances(appID string) []*instance {
	out := make([]*instance, 0, len(st.byApp[appID]))
	for _, in := range st.byApp[appID] {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].rec.StagedAt.Equal(out[j].rec.StagedAt) {
			return out[i].rec.StagedAt.Before(out[j].rec.StagedAt)
		}
		return out[i].rec.ID < out[j].rec.ID
	})
	return out
}

// appSettled says whether an app has reached what its definition asks: only instances of its
// version, as many as wanted, running and healthy (or, deleted, none left).
func (st *leaderState) appSettled(appID string) bool {
	as := st.apps[appID]
	insts := st.appInstances(appID)
	if as == nil || as.deleted {
		return len(insts) == 0
	}
	for _, in := range insts {
		if in.rec.Killing || in.rec.Version != as.configAt {
			return false
		}
		if in.state != task.Running || len(as.app.HealthChecks) > 0 && (in.healthy == nil || !*in.healthy) {
			return false
		}
		if len(as.app.ReadinessChecks) > 0 && !in.ready {
			return false
		}
	}
	return len(insts) == as.app.Instances
}
