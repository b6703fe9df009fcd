package discovery

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/endpoints"
)

// servicesInput is a leader's memory: two instances of /shop/web (one failing its health check,
// one with an "udp,tcp" port), a job's run, and an app described by Marathon with no instance.
func servicesInput() Input {
	yes, no := true, false
	in := Input{Index: 7, Term: 2, Leader: "m1", Frameworks: map[string]string{"fw-m": "marathon", "fw-c": "chronos"},
		Agents: []api.AgentView{agentView("a1", "10.0.0.1:5151", "active"), agentView("a2", "10.0.0.2:5151", "active")},
		Tasks: []Task{
			running("w1", "fw-m", "/shop/web", "a1", &yes, true, 31000, 31001),
			running("w2", "fw-m", "/shop/web", "a2", &no, true, 31002, 31003),
			running("w3", "fw-m", "/shop/web", "a2", &yes, true, 31004, 31005),
			running("j1", "fw-c", "prod.backup", "a1", nil, false, 31010),
		},
		Described: map[string][]api.ServiceInfo{"marathon": {
			{Name: "/shop/web", Labels: map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop.example.com"},
				Ports: []api.ServicePort{{Index: 0, Name: "http", Protocol: "tcp", ServicePort: 10000}, {Index: 1, Name: "dns", Protocol: "udp,tcp", ServicePort: 10001}}},
			{Name: "/idle", Ports: []api.ServicePort{{Index: 0, Protocol: "tcp", ServicePort: 10002}}},
		}},
	}
	for i := range 3 {
		in.Tasks[i].Info.PortNames = []string{"http", "dns"}
		in.Tasks[i].Info.PortProtocols = []string{"tcp", "udp,tcp"}
	}
	return in
}

// TestServicesShowHealthyInstancesWithTheirFrameworksWord: GET /v1/services's document lists
// every service, described ones without instances too, with the labels and service ports its
// framework gives, its DNS name, and only its healthy instances with their host ports by index.
func TestServicesShowHealthyInstancesWithTheirFrameworksWord(t *testing.T) {
	doc := ServicesOf(Build(servicesInput()), "agora.")
	if doc.Index != 7 || doc.Term != 2 || doc.Leader != "m1" || len(doc.Services) != 3 {
		t.Fatalf("document: %+v", doc)
	}
	job, idle, web := doc.Services[0], doc.Services[1], doc.Services[2]
	if job.Name != "prod.backup" || job.DNS != "prod-backup.chronos.agora." || len(job.Instances) != 1 ||
		!reflect.DeepEqual(job.Ports, []api.ServicePort{{Index: 0, Protocol: "tcp"}}) || job.Labels == nil {
		t.Fatalf("the job's run, not described, with its instance's port: %+v", job)
	}
	if idle.Name != "/idle" || len(idle.Instances) != 0 || idle.Ports[0].ServicePort != 10002 || idle.DNS != "idle.marathon.agora." {
		t.Fatalf("a described app with no instance: %+v", idle)
	}
	wantWeb := api.ServiceEntry{Framework: "marathon", Name: "/shop/web", DNS: "web-shop.marathon.agora.",
		Labels: map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop.example.com"},
		Ports:  []api.ServicePort{{Index: 0, Name: "http", Protocol: "tcp", ServicePort: 10000}, {Index: 1, Name: "dns", Protocol: "udp,tcp", ServicePort: 10001}},
		Instances: []api.ServiceInstance{
			{TaskID: "w1", AgentID: "a1", Host: "a1.example", IP: "10.0.0.1", Ports: []int{31000, 31001}},
			{TaskID: "w3", AgentID: "a2", Host: "a2.example", IP: "10.0.0.2", Ports: []int{31004, 31005}},
		}}
	if !reflect.DeepEqual(web, wantWeb) {
		t.Fatalf("the app:\n%+v\nwant\n%+v", web, wantWeb)
	}
	if noDNS := ServicesOf(Build(servicesInput()), ""); noDNS.Services[2].DNS != "" {
		t.Fatalf("a master without DNS names none: %+v", noDNS.Services[2])
	}

	var b strings.Builder
	if err := endpoints.Write(&b, Text(doc)); err != nil {
		t.Fatal(err)
	}
	want := "prod.backup\t \ta1.example\t\n" +
		"idle\t10002\t\n" +
		"shop_web\t10000\ta1.example:31000\ta2.example:31004\t\n" +
		"shop_web\t10001\ta1.example:31001\ta2.example:31005\t\n"
	if b.String() != want {
		t.Fatalf("text:\n%q\nwant\n%q", b.String(), want)
	}
}

// TestFeedTellsChangesOfServicesOnly: a reader of the feed is told when the services change —
// an instance fails its health check — and not when only the raft index proving them moves.
func TestFeedTellsChangesOfServicesOnly(t *testing.T) {
	f := NewFeed("agora.")
	if doc, _ := f.Current(); doc != nil {
		t.Fatalf("a document before any view: %+v", doc)
	}
	in := servicesInput()
	f.Update(Build(in))
	doc, changed := f.Current()
	if doc == nil || doc.Index != 7 {
		t.Fatalf("first: %+v", doc)
	}
	in.Index = 9
	f.Update(Build(in))
	select {
	case <-changed:
		t.Fatal("told of a change when only the index moved")
	default:
	}
	if doc, _ := f.Current(); doc.Index != 9 {
		t.Fatalf("the newest index is not served: %d", doc.Index)
	}
	no := false
	in.Tasks[0].Status.Healthy = &no
	f.Update(Build(in))
	select {
	case <-changed:
	default:
		t.Fatal("not told that an instance left")
	}
	doc, _ = f.Current()
	b, _ := json.Marshal(doc.Services[2].Instances)
	if len(doc.Services[2].Instances) != 1 {
		t.Fatalf("after the health check failed: %s", b)
	}
}
