package marathon

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// simCluster runs a real master (raft on bbolt, HTTP) with the service framework, on simulated
// agents (the real path, with containers, is tested in cmd/agora).
func simCluster(t *testing.T, agents int, res resources.Resources, clk ...clock.Clock) (*Service, string) {
	return simClusterWith(t, agents, res, func(cfg *Config) {
		if len(clk) > 0 {
			cfg.Clock = clk[0]
		}
	})
}

// simClusterWith is simCluster with the framework's config changed by configure.
func simClusterWith(t *testing.T, agents int, res resources.Resources, configure func(*Config)) (*Service, string) {
	t.Helper()
	svc, base, _ := simClusterAgents(t, agents, res, configure)
	return svc, base
}

// simClusterAgents is simClusterWith that also answers the simulated agents.
func simClusterAgents(t *testing.T, agents int, res resources.Resources, configure func(*Config)) (*Service, string, *mastertest.SimulatedAgents) {
	t.Helper()
	var svc *Service
	sim := &mastertest.SimulatedAgents{}
	m, _ := frameworktest.Master(t, t.TempDir(), sim, 20*time.Millisecond, map[string]raft.Applier{Namespace: Applier()}, func(m *master.Master) error {
		cfg := Config{Host: m.FrameworkHost(Namespace), Tick: 50 * time.Millisecond}
		configure(&cfg)
		var err error
		if svc, err = New(cfg); err == nil {
			svc.Register()
		}
		return err
	})
	waitFor(t, "the service framework", func() bool {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		return svc.st != nil
	})
	sim.AddAgents(agents, res)
	return svc, "http://" + m.HTTPAddr(), sim
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	frameworktest.WaitFor(t, what, 15*time.Second, cond)
}

var call = frameworktest.Call

// hosts lists where an app's running instances are.
func hosts(svc *Service, appID string) []string {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	var out []string
	for _, in := range svc.st.appInstances(appID) {
		if in.state == task.Running {
			out = append(out, in.rec.Host)
		}
	}
	return out
}

// TestUniqueHostnameThroughOffers: a UNIQUE hostname app gets one instance per agent; the one
// more it wants waits in /v2/queue until an agent joins, without breaking the constraint.
func TestUniqueHostnameThroughOffers(t *testing.T) {
	svc, base := simCluster(t, 3, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/spread", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 4, "constraints": [["hostname", "UNIQUE"]]}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "3 instances on 3 hosts", func() bool { return len(hosts(svc, "/spread")) == 3 })
	time.Sleep(300 * time.Millisecond) // offers keep coming: the 4th must still not be placed
	got := hosts(svc, "/spread")
	seen := map[string]bool{}
	for _, h := range got {
		if seen[h] {
			t.Fatalf("two instances on %s: %v", h, got)
		}
		seen[h] = true
	}
	if len(got) != 3 {
		t.Fatalf("%d instances running on 3 agents with UNIQUE hostname: %v", len(got), got)
	}
	// The queue says why: each agent's last offer was declined for the constraint.
	var q struct {
		Queue []struct {
			Count                  int                               `json:"count"`
			ProcessedOffersSummary frameworks.ProcessedOffersSummary `json:"processedOffersSummary"`
			LastUnusedOffers       []frameworks.UnusedOffer          `json:"lastUnusedOffers"`
			WaitingReason          string                            `json:"waitingReason"`
		} `json:"queue"`
	}
	waitFor(t, "the queue to say why the 4th instance waits", func() bool {
		code := call(t, "GET", base+"/v2/queue?embed=lastUnusedOffers", "", &q)
		return code == http.StatusOK && len(q.Queue) == 1 && len(q.Queue[0].LastUnusedOffers) == 3
	})
	item := q.Queue[0]
	if item.Count != 1 {
		t.Fatalf("queue: %+v", q)
	}
	if step := item.ProcessedOffersSummary.RejectSummaryLastOffers[1]; step.Reason != frameworks.UnfulfilledConstraint || step.Declined != 3 || step.Processed != 3 {
		t.Fatalf("rejectSummaryLastOffers: %+v, want the 3 agents' last offers declined for UnfulfilledConstraint", item.ProcessedOffersSummary.RejectSummaryLastOffers)
	}
	if !strings.Contains(item.WaitingReason, "UnfulfilledConstraint (hostname:UNIQUE: 1 of its instances where hostname is") {
		t.Fatalf("waitingReason: %q", item.WaitingReason)
	}
	for _, u := range item.LastUnusedOffers {
		if !slices.Equal(u.Reason, []frameworks.Reason{frameworks.UnfulfilledConstraint}) {
			t.Fatalf("an unused offer of %s: %v %v", u.Offer.Hostname, u.Reason, u.Details)
		}
	}
	// GROUP_BY and MAX_PER on the same hosts: 6 instances, at most 2 per host.
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/pairs", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 6, "constraints": [["hostname", "MAX_PER", "2"]]}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "6 instances of /pairs", func() bool { return len(hosts(svc, "/pairs")) == 6 })
	per := map[string]int{}
	for _, h := range hosts(svc, "/pairs") {
		per[h]++
	}
	for h, n := range per {
		if n != 2 {
			t.Fatalf("%d instances on %s, want 2 on each of 3: %v", n, h, per)
		}
	}
}

// TestUnreachableStrategy: an unreachable instance still counts until inactiveAfterSeconds,
// then a replacement starts; after expungeAfterSeconds it is forgotten and its task killed.
func TestUnreachableStrategy(t *testing.T) {
	fake := clock.NewFake(time.Now())
	svc, base := simCluster(t, 2, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}}, fake)
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/far", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 2,
		"unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "2 running", func() bool { return len(hosts(svc, "/far")) == 2 })
	svc.mu.Lock()
	lost := svc.st.appInstances("/far")[0].rec
	svc.mu.Unlock()
	ctx := context.Background()
	svc.update(ctx, api.TaskStatus{TaskID: lost.ID, AgentID: lost.AgentID, State: task.Unreachable, Timestamp: time.Now()})
	count := func() (all, running int) {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		for _, in := range svc.st.appInstances("/far") {
			all++
			if in.state == task.Running {
				running++
			}
		}
		return
	}
	fake.Advance(59 * time.Second)
	svc.step(ctx, true)
	time.Sleep(200 * time.Millisecond)
	if all, running := count(); all != 2 || running != 1 {
		t.Fatalf("before inactiveAfterSeconds: %d instances, %d running; want the unreachable one kept, no replacement", all, running)
	}
	fake.Advance(2 * time.Second)
	svc.step(ctx, true)
	waitFor(t, "a replacement", func() bool { all, running := count(); return all == 3 && running == 2 })
	fake.Advance(60 * time.Second)
	svc.step(ctx, true)
	waitFor(t, "the unreachable instance expunged", func() bool { all, running := count(); return all == 2 && running == 2 })
	svc.mu.Lock()
	_, still := svc.st.instances[lost.ID]
	svc.mu.Unlock()
	if still {
		t.Fatal("the expunged instance is still known")
	}
}

// TestDeploymentRollbackAndForce: a deployment that cannot finish (its new instances never get
// ready: simulated hosts do not answer) blocks changes with 409; DELETE rolls the app back to
// the version before; DELETE with force=true stops a deployment where it is.
func TestDeploymentRollbackAndForce(t *testing.T) {
	svc, base := simCluster(t, 2, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	app := func() map[string]any {
		var out struct {
			App map[string]any `json:"app"`
		}
		call(t, "GET", base+"/v2/apps/roll", "", &out)
		return out.App
	}
	deployments := func() []map[string]any {
		var out []map[string]any
		call(t, "GET", base+"/v2/deployments", "", &out)
		return out
	}
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/roll", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 2, "portDefinitions": [{"port": 0, "name": "http"}], "env": {"V": "1"}}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "v1 deployed", func() bool { return len(hosts(svc, "/roll")) == 2 && len(deployments()) == 0 })
	stuck := `{"env": {"V": "2"}, "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 1, "timeoutSeconds": 1}]}`
	var res map[string]string
	if code := call(t, "PUT", base+"/v2/apps/roll", stuck, &res); code != http.StatusOK {
		t.Fatalf("PUT v2: %d", code)
	}
	time.Sleep(500 * time.Millisecond)
	if d := deployments(); len(d) != 1 || d[0]["id"] != res["deploymentId"] {
		t.Fatalf("deployments %v, want the stuck %s", d, res["deploymentId"])
	}
	var conflict struct {
		Deployments []map[string]string `json:"deployments"`
	}
	if code := call(t, "PUT", base+"/v2/apps/roll", `{"instances": 3}`, &conflict); code != http.StatusConflict ||
		len(conflict.Deployments) != 1 || conflict.Deployments[0]["id"] != res["deploymentId"] {
		t.Fatalf("a change during the deployment: %d %+v, want 409 naming it", code, conflict)
	}
	var back map[string]string
	if code := call(t, "DELETE", base+"/v2/deployments/"+res["deploymentId"], "", &back); code != http.StatusOK || back["deploymentId"] == "" {
		t.Fatalf("rollback: %d %v", code, back)
	}
	waitFor(t, "rolled back", func() bool {
		a := app()
		env, _ := a["env"].(map[string]any)
		rcs, _ := a["readinessChecks"].([]any)
		return len(deployments()) == 0 && len(rcs) == 0 && env["V"] == "1" && len(hosts(svc, "/roll")) == 2
	})
	if code := call(t, "PUT", base+"/v2/apps/roll", stuck, &res); code != http.StatusOK {
		t.Fatalf("PUT v2 again: %d", code)
	}
	if code := call(t, "DELETE", base+"/v2/deployments/"+res["deploymentId"]+"?force=true", "", nil); code != http.StatusAccepted {
		t.Fatalf("force cancel: %d", code)
	}
	if d := deployments(); len(d) != 0 {
		t.Fatalf("deployments after force: %v", d)
	}
	if a := app(); a["readinessChecks"] == nil {
		t.Fatalf("a forced cancel rolled back: %v", a)
	}
}

// TestBulkPutIsOneDeployment: PUT /v2/apps changes several apps (one new, one scaled) as one
// deployment; a bad one refuses them all, naming its index.
func TestBulkPutIsOneDeployment(t *testing.T) {
	svc, base := simCluster(t, 2, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/a", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 1}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "/a", func() bool { return len(hosts(svc, "/a")) == 1 })
	var bad ValidationError
	if code := call(t, "PUT", base+"/v2/apps", `[{"id": "/a", "instances": 3}, {"id": "/b", "cmd": "serve", "cpus": -1}]`, &bad); code != http.StatusUnprocessableEntity ||
		len(bad.Details) != 1 || bad.Details[0].Path != "(1)/cpus" {
		t.Fatalf("a bad app in the list: %d %+v", code, bad)
	}
	var res map[string]string
	if code := call(t, "PUT", base+"/v2/apps", `[{"id": "/a", "instances": 3}, {"id": "/b", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 2}]`, &res); code != http.StatusOK {
		t.Fatalf("bulk PUT: %d %v", code, res)
	}
	var deps []Deployment
	call(t, "GET", base+"/v2/deployments", "", &deps)
	if len(deps) > 1 || len(deps) == 1 && len(deps[0].AffectedApps) != 2 {
		t.Fatalf("deployments %+v, want one for both apps", deps)
	}
	waitFor(t, "3 of /a and 2 of /b", func() bool { return len(hosts(svc, "/a")) == 3 && len(hosts(svc, "/b")) == 2 })
}

// TestRollbackToVersion: PUT {"version": V} deploys the definition the app had in version V,
// instances included, as a new version; an unknown version is 404 and a bad one 422.
func TestRollbackToVersion(t *testing.T) {
	svc, base := simCluster(t, 2, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	app := func() map[string]any {
		var out struct {
			App map[string]any `json:"app"`
		}
		call(t, "GET", base+"/v2/apps/back", "", &out)
		return out.App
	}
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/back", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 1, "env": {"V": "1"}}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	waitFor(t, "v1 running", func() bool { return len(hosts(svc, "/back")) == 1 })
	v1, _ := app()["version"].(string)
	if code := call(t, "PUT", base+"/v2/apps/back", `{"env": {"V": "2"}, "instances": 2}`, nil); code != http.StatusOK {
		t.Fatalf("PUT v2: %d", code)
	}
	waitFor(t, "v2 deployed", func() bool {
		var deps []map[string]any
		call(t, "GET", base+"/v2/deployments", "", &deps)
		return len(hosts(svc, "/back")) == 2 && len(deps) == 0
	})
	var res map[string]string
	if code := call(t, "PUT", base+"/v2/apps/back", `{"version": "`+v1+`"}`, &res); code != http.StatusOK || res["deploymentId"] == "" {
		t.Fatalf("rollback to %s: %d %v", v1, code, res)
	}
	waitFor(t, "back at v1's definition", func() bool {
		a := app()
		env, _ := a["env"].(map[string]any)
		return env["V"] == "1" && a["instances"] == float64(1) && a["version"] != v1 && len(hosts(svc, "/back")) == 1
	})
	if code := call(t, "PUT", base+"/v2/apps/back", `{"version": "1999-01-01T00:00:00.000Z"}`, nil); code != http.StatusNotFound {
		t.Fatalf("rollback to an unknown version: %d, want 404", code)
	}
	if code := call(t, "PUT", base+"/v2/apps/back", `{"version": 3}`, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("rollback to version 3 (a number): %d, want 422", code)
	}
}

// TestAppEmbedsAsMarathon: GET /v2/apps/{id} comes with its tasks (and lastTaskFailure, when
// there is one) whatever embed says, as Marathon's does; the list only with embed; taskStats
// (embed=app.taskStats) is Marathon's tasksStats, by config version, with life times of the
// running tasks.
func TestAppEmbedsAsMarathon(t *testing.T) {
	_, base := simCluster(t, 1, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/stats", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 2}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	type stats struct {
		Stats struct {
			Counts struct {
				Running int `json:"running"`
				Staged  int `json:"staged"`
			} `json:"counts"`
			LifeTime *struct {
				AverageSeconds float64 `json:"averageSeconds"`
				MedianSeconds  float64 `json:"medianSeconds"`
			} `json:"lifeTime"`
		} `json:"stats"`
	}
	var one struct {
		App struct {
			Tasks      []taskWire        `json:"tasks"`
			TasksStats map[string]*stats `json:"tasksStats"`
			TaskStats  any               `json:"taskStats"`
		} `json:"app"`
	}
	waitFor(t, "2 tasks running", func() bool {
		one.App.Tasks = nil
		call(t, "GET", base+"/v2/apps/stats", "", &one)
		return len(one.App.Tasks) == 2 && one.App.Tasks[0].State == "TASK_RUNNING" && one.App.Tasks[1].State == "TASK_RUNNING"
	})
	if one.App.TasksStats != nil {
		t.Fatalf("tasksStats without embed=app.taskStats: %v", one.App.TasksStats)
	}
	var list struct {
		Apps []map[string]any `json:"apps"`
	}
	if call(t, "GET", base+"/v2/apps", "", &list); len(list.Apps) != 1 || list.Apps[0]["tasks"] != nil {
		t.Fatalf("GET /v2/apps without embed: %v", list.Apps)
	}
	call(t, "GET", base+"/v2/apps/stats?embed=app.taskStats", "", &one)
	for _, group := range []string{"totalSummary", "withLatestConfig", "startedAfterLastScaling"} {
		g := one.App.TasksStats[group]
		if g == nil || g.Stats.Counts.Running != 2 || g.Stats.LifeTime == nil || g.Stats.LifeTime.AverageSeconds < 0 {
			t.Fatalf("tasksStats.%s: %+v (all: %v)", group, g, one.App.TasksStats)
		}
	}
	if g := one.App.TasksStats["withOutdatedConfig"]; g != nil || one.App.TaskStats != nil {
		t.Fatalf("no task has an outdated config, yet withOutdatedConfig is %+v (taskStats %v)", g, one.App.TaskStats)
	}
}
