package marathon

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

func testOffer(id, agent, host string, cpus, mem float64, attrs map[string]string) api.Offer {
	return api.Offer{ID: id, AgentID: agent, Hostname: host, Attributes: attrs,
		Resources: resources.Resources{CPUs: cpus, Mem: mem, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31001}}}}
}

func testApp(t *testing.T, def string) *appState {
	t.Helper()
	as, err := appStateOf([]byte(def))
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// TestFitSaysEveryReason: an offer that does not fit an app's instance is judged as Marathon
// does — every reason, by Marathon's name — with Agora's words for the cause: the resource short
// and what the agent has, the constraint and what the agent is, the privileged, root or host
// volume need the agent does not allow, the ports it lacks.
func TestFitSaysEveryReason(t *testing.T) {
	tests := []struct {
		name   string
		app    string
		offer  api.Offer
		placed []Place
		want   []frameworks.Mismatch
	}{
		{"fits", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, nil},
		{"cpus and memory", `{"id": "/a", "cmd": "x", "cpus": 4, "mem": 256}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.InsufficientCpus, Detail: "needs 4 cpus, web1 offers 2"},
			{Reason: frameworks.InsufficientMemory, Detail: "needs 256 MiB of memory, web1 offers 128"},
		}},
		{"disk", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "disk": 500}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.InsufficientDisk, Detail: "needs 500 MiB of disk, web1 offers 100"},
		}},
		{"LIKE", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "constraints": [["hostname", "LIKE", "db.*"]]}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.UnfulfilledConstraint, Detail: `hostname:LIKE:db.*: hostname is "web1" on web1`},
		}},
		{"attribute missing", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "constraints": [["rack", "IS", "r1"]]}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.UnfulfilledConstraint, Detail: `rack:IS:r1: web1 has no attribute "rack"`},
		}},
		{"UNIQUE", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "constraints": [["hostname", "UNIQUE"]]}`, testOffer("o", "a1", "web1", 2, 128, nil),
			[]Place{{Hostname: "web1"}}, []frameworks.Mismatch{
				{Reason: frameworks.UnfulfilledConstraint, Detail: `hostname:UNIQUE: 1 of its instances where hostname is "web1" already`},
			}},
		{"CLUSTER", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "constraints": [["rack", "CLUSTER"]]}`, testOffer("o", "a1", "web1", 2, 128, map[string]string{"rack": "r2"}),
			[]Place{{Hostname: "web0", Attributes: map[string]string{"rack": "r1"}}}, []frameworks.Mismatch{
				{Reason: frameworks.UnfulfilledConstraint, Detail: `rack:CLUSTER: its instances run where rack is "r1", not "r2"`},
			}},
		{"privileged", `{"id": "/a", "cpus": 1, "mem": 64, "container": {"type": "DOCKER", "docker": {"image": "x", "privileged": true}}}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.UnfulfilledConstraint, Detail: "privileged: web1 runs no privileged containers (agora agent --allow-privileged)"},
		}},
		{"root", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "user": "root"}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.UnfulfilledConstraint, Detail: "user root: web1 runs no tasks as root (agora agent --allow-root-tasks)"},
		}},
		{"host volume", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "hostPath": "/srv/data", "mode": "RW"}]}}`,
			testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
				{Reason: frameworks.UnfulfilledConstraint, Detail: "hostPath /srv/data on web1: /srv/data is in no declared host volume (agora agent --host-volume NAME=PATH[:rw])"},
			}},
		{"fixed port", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "requirePorts": true, "portDefinitions": [{"port": 8080}]}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.InsufficientPorts, Detail: "needs 1 ports, fixed 8080; web1 offers [31000-31001]"},
		}},
		{"too many ports", `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "portDefinitions": [{"port": 0}, {"port": 0}, {"port": 0}]}`, testOffer("o", "a1", "web1", 2, 128, nil), nil, []frameworks.Mismatch{
			{Reason: frameworks.InsufficientPorts, Detail: "needs 3 ports, web1 offers [31000-31001]"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			as := testApp(t, tt.app)
			_, why := fit(as, tt.offer.Resources, tt.offer, tt.placed)
			if !reflect.DeepEqual(why, tt.want) {
				t.Fatalf("fit:\n got %+v\nwant %+v", why, tt.want)
			}
		})
	}
}

// TestQueueAsMarathonShowsIt: an app that waits for instances, as GET /v2/queue shows it, is
// the golden file written from Marathon's documented queue entry (queue.raml, examples/
// queue.json): count, role, delay, since, processedOffersSummary, lastUnusedOffers (with
// embed=lastUnusedOffers) and the app, plus Agora's waitingReason.
func TestQueueAsMarathonShowsIt(t *testing.T) {
	t0 := time.Date(2026, 2, 28, 16, 41, 41, 90e6, time.UTC)
	clk := clock.NewFake(t0.Add(30 * time.Second))
	svc := &Service{cfg: Config{Role: "*", Clock: clk}}
	st := newLeaderState(nil)
	as := testApp(t, `{"id": "/foo", "cmd": "sleep 1000", "cpus": 4, "mem": 128, "instances": 2,
		"constraints": [["hostname", "LIKE", "web.*"]], "portDefinitions": [{"port": 0, "protocol": "tcp"}],
		"version": "2026-02-28T16:41:40.000Z", "versionInfo": {"lastScalingAt": "2026-02-28T16:41:40.000Z", "lastConfigChangeAt": "2026-02-28T16:41:40.000Z"}}`)
	st.apps[as.app.ID] = as
	as.setWant(2, t0)
	judge := func(o api.Offer, sec int) { // as useOffer does
		at := t0.Add(time.Duration(sec) * time.Second)
		if _, why := fit(as, o.Resources, o, nil); len(why) > 0 {
			as.offers.NotUsed(o, why, at)
			return
		}
		as.offers.Used(o, at)
		as.want--
	}
	judge(testOffer("o1", "a1", "db1", 8, 1024, nil), 1)
	judge(testOffer("o2", "a2", "web2", 2, 1024, nil), 2)
	judge(testOffer("o3", "a3", "web3", 8, 1024, nil), 3)
	judge(testOffer("o4", "a2", "web2", 2, 64, nil), 4)

	item := svc.queueItemLocked(st, as, clk.Now(), true, "")
	frameworktest.SameJSON(t, "testdata/queue_item.json", item)

	// Without embed=lastUnusedOffers there are none; the rest stays.
	if b, _ := json.Marshal(svc.queueItemLocked(st, as, clk.Now(), false, "")); strings.Contains(string(b), "lastUnusedOffers") {
		t.Fatalf("lastUnusedOffers without the embed: %s", b)
	}
	// The app itself says why, and with which agents make no offers.
	silent := "1 agent makes no offers: AgentMaintenance (web9 draining)"
	app := svc.appJSONLocked(st, as, map[string]bool{}, silent)
	if got, want := app["waitingReason"], item.WaitingReason+"; "+silent; got != want {
		t.Fatalf("the app's waitingReason: %q, want %q", got, want)
	}
}

// TestWaitingReason: what an app's waitingReason says as it waits: nothing at first, then no
// offer for a while, then the offers declined and why; in its backoff, the delay and the
// agent's message of the last failure.
func TestWaitingReason(t *testing.T) {
	t0 := time.Now()
	as := testApp(t, `{"id": "/w", "cmd": "x", "cpus": 4, "mem": 64, "instances": 2}`)
	if got := waitingReasonLocked(as, t0, ""); got != "" {
		t.Fatalf("not waiting: %q", got)
	}
	as.setWant(2, t0)
	if got := waitingReasonLocked(as, t0.Add(time.Second), "1 agent makes no offers: x"); got != "" {
		t.Fatalf("just began to wait: %q", got)
	}
	if got := waitingReasonLocked(as, t0.Add(frameworks.QuietAfter), ""); got != "no offer in 10s" {
		t.Fatalf("after %s without an offer: %q", frameworks.QuietAfter, got)
	}
	o := testOffer("o1", "a1", "web1", 2, 1024, nil)
	_, why := fit(as, o.Resources, o, nil)
	as.offers.NotUsed(o, why, t0.Add(time.Second))
	if got, want := waitingReasonLocked(as, t0.Add(2*time.Second), ""), "last 1 offer declined: 1 InsufficientCpus (needs 4 cpus, web1 offers 2)"; got != want {
		t.Fatalf("after a declined offer:\n got %q\nwant %q", got, want)
	}
	as.failures, as.delayUntil = 3, t0.Add(6500*time.Millisecond)
	as.lastFail = &TaskFailure{State: string(task.Failed), Host: "web1", Message: "containerd: image 127.0.0.1:1/none:latest is not on this agent", Timestamp: t0}
	want := "2 of 2 instances wait: next launch in 5 s (backoff after 3 failed launches); last failure: TASK_FAILED on web1: containerd: image 127.0.0.1:1/none:latest is not on this agent"
	if got := waitingReasonLocked(as, t0.Add(2*time.Second), ""); got != want {
		t.Fatalf("in its backoff:\n got %q\nwant %q", got, want)
	}
	as.setWant(0, t0)
	if got := waitingReasonLocked(as, t0.Add(2*time.Second), ""); got != "" {
		t.Fatalf("waiting for nothing: %q", got)
	}
}
