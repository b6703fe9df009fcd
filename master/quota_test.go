package master

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// call sends a JSON body (nil: none) and answers the status and the body.
func call(t *testing.T, method, url string, in any) (int, string) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestQuotasAreReplicatedAndChecked: a quota set through a follower is committed through raft
// and read from the leader elected after the old one dies; requests Mesos would refuse are
// refused with the field named, guarantees the agents could not hold with 409 unless forced;
// Mesos's GET /quota shows the guarantee and the limit.
func TestQuotasAreReplicatedAndChecked(t *testing.T) {
	ms, lead, follower := threeMasters(t)
	put := func(r *running, role string, req api.QuotaRequest) (int, string) {
		return call(t, http.MethodPut, r.url("/v1/quota/"+role), req)
	}
	for _, bad := range []struct {
		role  string
		req   api.QuotaRequest
		field string
	}{
		{"*", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 1}}, `"field": "role"`},
		{"a b", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 1}}, `"field": "role"`},
		{"analytics", api.QuotaRequest{Guarantee: map[string]float64{"gpus": 1}}, `"field": "guarantee.gpus"`},
		{"analytics", api.QuotaRequest{Limit: map[string]float64{"mem": -1}}, `"field": "limit.mem"`},
		{"analytics", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 3}, Limit: map[string]float64{"cpus": 2}}, `"field": "guarantee.cpus"`},
	} {
		if code, body := put(follower, bad.role, bad.req); code != http.StatusUnprocessableEntity || !strings.Contains(body, bad.field) {
			t.Fatalf("PUT quota %q %+v: %d %s; want 422 naming %s", bad.role, bad.req, code, body, bad.field)
		}
	}
	// No agent: any guarantee is more than the cluster has, unless forced; a limit alone is fine.
	if code, body := put(follower, "analytics", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 4}}); code != http.StatusConflict || !strings.Contains(body, "cpus 4 of 0") {
		t.Fatalf("an overcommitting guarantee: %d %s", code, body)
	}
	if code, body := put(follower, "analytics", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 4, "mem": 8192}, Limit: map[string]float64{"cpus": 8}, Force: true}); code != http.StatusOK {
		t.Fatalf("a forced quota: %d %s", code, body)
	}
	if code, body := put(lead, "batch", api.QuotaRequest{Limit: map[string]float64{"cpus": 2}}); code != http.StatusOK {
		t.Fatalf("a limit alone: %d %s", code, body)
	}

	lead.m.Kill()
	lead.stop()
	var rest []*running
	for _, r := range ms {
		if r != lead {
			rest = append(rest, r)
		}
	}
	newLead := leaderOf(t, rest...)
	var got struct {
		Quotas []api.QuotaStatus `json:"quotas"`
	}
	getJSON(t, newLead.url("/v1/quota"), &got)
	if len(got.Quotas) != 2 || got.Quotas[0].Role != "analytics" || got.Quotas[0].Guarantee["mem"] != 8192 || got.Quotas[0].Limit["cpus"] != 8 ||
		got.Quotas[1].Role != "batch" || len(got.Quotas[1].Guarantee) != 0 || got.Quotas[1].Limit["cpus"] != 2 || got.Quotas[0].UpdatedAt.IsZero() {
		t.Fatalf("after the leader's death: %+v", got.Quotas)
	}
	var mesos struct {
		Infos []struct {
			Role      string `json:"role"`
			Guarantee []struct {
				Name   string `json:"name"`
				Type   string `json:"type"`
				Scalar struct {
					Value float64 `json:"value"`
				} `json:"scalar"`
			} `json:"guarantee"`
		} `json:"infos"`
		Configs []struct {
			Role       string                        `json:"role"`
			Guarantees map[string]map[string]float64 `json:"guarantees"`
			Limits     map[string]map[string]float64 `json:"limits"`
		} `json:"configs"`
	}
	getJSON(t, newLead.url("/quota"), &mesos)
	if len(mesos.Infos) != 2 || mesos.Infos[0].Guarantee[0].Name != "cpus" || mesos.Infos[0].Guarantee[0].Type != "SCALAR" || mesos.Infos[0].Guarantee[0].Scalar.Value != 4 ||
		mesos.Configs[0].Limits["cpus"]["value"] != 8 || mesos.Configs[1].Guarantees != nil {
		t.Fatalf("GET /quota: %+v", mesos)
	}
	// Mesos's set: the guarantee is the limit too; remove: 200, then 400.
	legacy := map[string]any{"role": "dev", "force": true, "guarantee": []map[string]any{{"name": "cpus", "type": "SCALAR", "scalar": map[string]float64{"value": 1}}}}
	if code, body := call(t, http.MethodPost, newLead.url("/quota"), legacy); code != http.StatusOK {
		t.Fatalf("POST /quota: %d %s", code, body)
	}
	getJSON(t, newLead.url("/v1/quota"), &got)
	if len(got.Quotas) != 3 || got.Quotas[2].Role != "dev" || got.Quotas[2].Limit["cpus"] != 1 {
		t.Fatalf("after POST /quota: %+v", got.Quotas)
	}
	for _, want := range []int{http.StatusOK, http.StatusBadRequest} {
		if code, body := call(t, http.MethodDelete, newLead.url("/quota/dev"), nil); code != want {
			t.Fatalf("DELETE /quota/dev: %d %s, want %d", code, body, want)
		}
	}
	if code, _ := call(t, http.MethodDelete, newLead.url("/v1/quota/batch"), nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /v1/quota/batch: %d", code)
	}
}

// TestQuotaThroughTheScheduler: quotas as frameworks meet them, through offers and launches on
// 10 simulated agents of 8 cpus: a greedy framework of a role guaranteed nothing is offered all
// but the 20 cpus another role is guaranteed (laid away though that role's framework is not
// there yet), and a role limited to 12 cpus holds no more; the guaranteed role's framework,
// when it comes, gets its 20.
func TestQuotaThroughTheScheduler(t *testing.T) {
	sim := &mastertest.SimulatedAgents{}
	r := startMasterConfig(t, Config{DataDir: t.TempDir(), Scheduler: SchedulerConfig{Agents: sim, AllocationInterval: 20 * time.Millisecond}})
	waitUntil(t, "the scheduler", 15*time.Second, func() bool { return schedulerReady(r.m) })
	for role, req := range map[string]api.QuotaRequest{
		"prod":  {Guarantee: map[string]float64{"cpus": 20}, Force: true},
		"batch": {Limit: map[string]float64{"cpus": 12}},
	} {
		if code, body := call(t, http.MethodPut, r.url("/v1/quota/"+role), req); code != http.StatusOK {
			t.Fatalf("PUT /v1/quota/%s: %d %s", role, code, body)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var launched atomic.Int64
	shape := resources.Resources{CPUs: 1, Mem: 512}
	subscribe := func(name, role string) string {
		ss, err := r.m.Subscribe(ctx, api.FrameworkInfo{Name: name, Role: role})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ss.Close() })
		go greedy(ctx, t, ss, shape, &launched)
		return ss.FrameworkID()
	}
	web, batch := subscribe("web", "web"), subscribe("batch", "batch")
	sim.AddAgents(10, resources.Resources{CPUs: 8, Mem: 16384, Disk: 1000})
	held := func() map[string]float64 {
		fws, err := r.m.sched.FrameworksView()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, fw := range fws {
			out[fw.Info.ID] = fw.Allocated.CPUs
		}
		return out
	}
	settle := func(what string) map[string]float64 {
		last, since := int64(-1), time.Now()
		for deadline := time.Now().Add(60 * time.Second); time.Since(since) < time.Second; time.Sleep(50 * time.Millisecond) {
			if n := launched.Load(); n != last {
				last, since = n, time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: launches did not settle within 60s", what)
			}
		}
		return held()
	}
	got := settle("web and batch")
	if got[batch] > 12 || got[batch] < 11 {
		t.Fatalf("the batch role, limited to 12 cpus, holds %v", got[batch])
	}
	if got[web]+got[batch] > 60 {
		t.Fatalf("web %v and batch %v cpus: more than the 60 the guarantee of 20 leaves", got[web], got[batch])
	}
	t.Logf("web %v, batch %v cpus before prod comes", got[web], got[batch])
	prod := subscribe("prod", "prod")
	got = settle("prod")
	if got[prod] < 20 {
		t.Fatalf("the prod role, guaranteed 20 cpus, holds %v (web %v, batch %v)", got[prod], got[web], got[batch])
	}
	var status struct {
		Quotas []api.QuotaStatus `json:"quotas"`
	}
	getJSON(t, r.url("/v1/quota"), &status)
	for _, q := range status.Quotas {
		if q.Role == "prod" && q.Allocated["cpus"] < 20 || q.Role == "batch" && q.Allocated["cpus"] > 12 {
			t.Fatalf("GET /v1/quota: %+v", status.Quotas)
		}
	}
}

// TestQuotaRescindsOutstandingOffers: a framework that holds offers without answering them has
// the whole cluster; a guarantee set for another role rescinds enough of its offers, as Mesos
// does, and the guaranteed role's framework gets what it is guaranteed at once, not when the
// offers would have timed out.
func TestQuotaRescindsOutstandingOffers(t *testing.T) {
	sim := &mastertest.SimulatedAgents{}
	r := startMasterConfig(t, Config{DataDir: t.TempDir(), Scheduler: SchedulerConfig{Agents: sim, AllocationInterval: 20 * time.Millisecond, OfferTimeout: time.Hour}})
	waitUntil(t, "the scheduler", 15*time.Second, func() bool { return schedulerReady(r.m) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hoarder, err := r.m.Subscribe(ctx, api.FrameworkInfo{Name: "hoarder", Role: "hoard"})
	if err != nil {
		t.Fatal(err)
	}
	defer hoarder.Close()
	go func() { // takes offers in and never answers them
		for {
			if _, err := hoarder.Next(ctx); err != nil {
				return
			}
		}
	}()
	sim.AddAgents(2, resources.Resources{CPUs: 4, Mem: 8192, Disk: 1000})
	cpusOf := func(id string) float64 {
		fws, _ := r.m.sched.FrameworksView()
		for _, fw := range fws {
			if fw.Info.ID == id {
				return fw.Allocated.CPUs
			}
		}
		return 0
	}
	waitUntil(t, "the hoarder holds every cpu in offers", 15*time.Second, func() bool { return cpusOf(hoarder.FrameworkID()) == 8 })
	prod, err := r.m.Subscribe(ctx, api.FrameworkInfo{Name: "prod", Role: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var launched atomic.Int64
	go greedy(ctx, t, prod, resources.Resources{CPUs: 1, Mem: 512}, &launched)
	time.Sleep(200 * time.Millisecond) // cycles run every 20 ms: nothing is free for prod
	if n := launched.Load(); n != 0 {
		t.Fatalf("prod launched %d tasks with every resource in the hoarder's offers", n)
	}
	if code, body := call(t, http.MethodPut, r.url("/v1/quota/prod"), api.QuotaRequest{Guarantee: map[string]float64{"cpus": 4}, Force: true}); code != http.StatusOK {
		t.Fatalf("PUT /v1/quota/prod: %d %s", code, body)
	}
	waitUntil(t, "prod holds its guarantee of 4 cpus", 10*time.Second, func() bool { return cpusOf(prod.FrameworkID()) >= 4 })
	if got := cpusOf(hoarder.FrameworkID()); got > 4 {
		t.Fatalf("the hoarder still holds %v cpus beside prod's guarantee of 4", got)
	}
}

// TestQuotaLimitHoldsUnderANewLeader: a role at its limit is offered nothing more by the next
// leader either — it loads the quotas from the store, not from what the last one learned —
// and once the quota is removed the role is offered the rest at once.
func TestQuotaLimitHoldsUnderANewLeader(t *testing.T) {
	e := newSchedEnv(t, nil)
	url := "http://" + e.r.m.HTTPAddr() + "/v1/quota/batch"
	if code, body := call(t, http.MethodPut, url, api.QuotaRequest{Limit: map[string]float64{"cpus": 2}}); code != http.StatusOK {
		t.Fatalf("PUT %s: %d %s", url, code, body)
	}
	agentID := e.sim.register(t, "", "host-a", agentRes)
	info := api.FrameworkInfo{Name: "batch", Role: "batch", FailoverTimeout: 3600}
	ss := e.subscribe(info)
	o := expectOffer(t, ss)
	if o.Resources.CPUs > 2 {
		t.Fatalf("offered %s past the limit of 2 cpus", o.Resources)
	}
	if err := ss.Accept([]string{o.ID}, launch(sleepTask("b1", 1, 128), sleepTask("b2", 1, 128)), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, ss, "b1", task.Running)
	expectUpdate(t, ss, "b2", task.Running)
	noOffer := func(ev api.Event) bool { return ev.Type == api.EventOffers }
	expectNone(t, ss, "an offer to a role at its limit", noOffer)

	e.restart()
	info.ID = ss.FrameworkID()
	ss = e.subscribe(info)
	e.sim.register(t, agentID, "host-a", agentRes)
	waitUntil(t, "the new leader to learn the tasks", 10*time.Second, func() bool {
		tasks, err := e.r.m.sched.TasksView()
		return err == nil && len(tasks) == 2
	})
	expectNone(t, ss, "an offer from the new leader to a role at its limit", noOffer)

	url = "http://" + e.r.m.HTTPAddr() + "/v1/quota/batch"
	if code, body := call(t, http.MethodDelete, url, nil); code/100 != 2 {
		t.Fatalf("DELETE %s: %d %s", url, code, body)
	}
	if o := expectOffer(t, ss); o.Resources.CPUs < 2 {
		t.Fatalf("without the quota: offered %s, want the 2 cpus left", o.Resources)
	}
}
