package marathon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// TestPortPoolAssigns: 0s become the lowest free ports of the range; what other apps hold is
// never given; an app's old ports come back to it first, in order; a port another definition
// of the change fixes is not given back; past the range's end the answer names the range and
// the index that found none.
func TestPortPoolAssigns(t *testing.T) {
	r := resources.Range{Begin: 10000, End: 10004}
	tests := []struct {
		name          string
		held, claimed []int
		want, old     []int
		got           []int
		failAt        int // -1: no failure
	}{
		{"new app", nil, nil, []int{0, 0}, nil, []int{10000, 10001}, -1},
		{"around what others hold", []int{10000, 10002}, nil, []int{0, 0}, nil, []int{10001, 10003}, -1},
		{"fixed ports stay", []int{10000}, nil, []int{8080, 0}, nil, []int{8080, 10001}, -1},
		{"an update keeps its ports", []int{10000, 10003, 10004}, nil, []int{0, 0}, []int{10003, 10004}, []int{10003, 10004}, -1},
		{"one more port", []int{10000, 10003}, nil, []int{0, 0}, []int{10003}, []int{10003, 10001}, -1},
		{"one fewer port", []int{10003, 10004}, nil, []int{0}, []int{10003, 10004}, []int{10003}, -1},
		{"an old port now fixed is not assigned twice", []int{10003, 10004}, nil, []int{0, 10003}, []int{10003, 10004}, []int{10004, 10003}, -1},
		{"an old port another app now fixes", []int{10003}, []int{10003}, []int{0}, []int{10003}, []int{10000}, -1},
		{"old ports outside the range are not reused", nil, nil, []int{0}, []int{31000}, []int{10000}, -1},
		{"exhausted", []int{10000, 10001, 10002, 10003}, nil, []int{0, 0}, nil, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPortPool(r)
			p.hold(tt.held...)
			p.claim(tt.claimed...)
			got, at, err := p.assign(tt.want, tt.old)
			if tt.failAt >= 0 {
				if err == nil || at != tt.failAt || !strings.Contains(err.Error(), "[10000-10004]") {
					t.Fatalf("got %v, %d, %v; want the range named, failing at %d", got, at, err, tt.failAt)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.got) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.got)
			}
		})
	}
}

// TestPortPoolNeverTwice checks the pool against the obvious rule on random changes: across
// apps created, changed and deleted one change after another, no two apps hold the same
// assigned port, every assigned port is in the range, and an app changed with as many ports
// keeps them.
func TestPortPoolNeverTwice(t *testing.T) {
	r := resources.Range{Begin: 20000, End: 20030}
	rng := rand.New(rand.NewSource(1))
	apps := map[int][]int{} // app → its service ports
	for step := 0; step < 2000; step++ {
		id := rng.Intn(12)
		if rng.Intn(5) == 0 {
			delete(apps, id)
			continue
		}
		p := newPortPool(r)
		for _, ports := range apps {
			p.hold(ports...)
		}
		want := make([]int, rng.Intn(4))
		old := apps[id]
		got, _, err := p.assign(want, old)
		if err != nil {
			continue // the range is full: nothing written
		}
		if len(want) == len(old) && !slices.Equal(got, old) {
			t.Fatalf("step %d: app %d had %v, got %v for as many ports", step, id, old, got)
		}
		apps[id] = got
		seen := map[int]int{}
		for app, ports := range apps {
			for _, port := range ports {
				if port < 20000 || port > 20030 {
					t.Fatalf("step %d: port %d outside the range", step, port)
				}
				if other, dup := seen[port]; dup {
					t.Fatalf("step %d: apps %d and %d both hold %d", step, app, other, port)
				}
				seen[port] = app
			}
		}
	}
}

// portsCluster is simCluster with a service port range of its own, on one agent.
func portsCluster(t *testing.T, r resources.Range, agentPorts resources.Ranges) (*Service, string) {
	t.Helper()
	return simClusterWith(t, 1, resources.Resources{CPUs: 8, Mem: 8192, Disk: 100, Ports: agentPorts}, func(cfg *Config) { cfg.ServicePorts = r })
}

// appPorts reads an app's service ports as GET /v2/apps/{id} shows them: portDefinitions[].port
// and ports, which must agree.
func appPorts(t *testing.T, base, id string) []int {
	t.Helper()
	var got struct {
		App struct {
			Ports           []int `json:"ports"`
			PortDefinitions []struct {
				Port int `json:"port"`
			} `json:"portDefinitions"`
		} `json:"app"`
	}
	if code := call(t, "GET", base+"/v2/apps"+id, "", &got); code != http.StatusOK {
		t.Fatalf("GET %s: %d", id, code)
	}
	var defs []int
	for _, pd := range got.App.PortDefinitions {
		defs = append(defs, pd.Port)
	}
	if !slices.Equal(defs, got.App.Ports) {
		t.Fatalf("%s: portDefinitions say %v, ports %v", id, defs, got.App.Ports)
	}
	return got.App.Ports
}

// TestServicePortsThroughTheAPI: apps created at the same moment get different service ports
// from the range; an update keeps them, one asking for a port more keeps the first; the ports
// are in the definition committed to the store (a new leader reads them); a deleted app's port
// goes to the next app; when the range is full the app is refused with a 422 naming the range,
// and nothing is written.
func TestServicePortsThroughTheAPI(t *testing.T) {
	svc, base := portsCluster(t, resources.Range{Begin: 12000, End: 12009}, resources.Ranges{{Begin: 31000, End: 31100}})
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = call(t, "POST", base+"/v2/apps", fmt.Sprintf(`{"id": "/web%d", "cmd": "serve", "cpus": 0.01, "mem": 32, "instances": 0}`, i), nil)
		}()
	}
	wg.Wait()
	seen := map[int]string{}
	for i, code := range codes {
		id := fmt.Sprintf("/web%d", i)
		if code != http.StatusCreated {
			t.Fatalf("POST %s: %d", id, code)
		}
		ports := appPorts(t, base, id)
		if len(ports) != 1 || ports[0] < 12000 || ports[0] > 12009 {
			t.Fatalf("%s: service ports %v, want one in 12000-12009", id, ports)
		}
		if other, dup := seen[ports[0]]; dup {
			t.Fatalf("%s and %s were both given %d", id, other, ports[0])
		}
		seen[ports[0]] = id
	}

	before := appPorts(t, base, "/web3")
	if code := call(t, "PUT", base+"/v2/apps/web3", `{"cmd": "serve --v2"}`, nil); code != http.StatusOK {
		t.Fatalf("PUT: %d", code)
	}
	if got := appPorts(t, base, "/web3"); !slices.Equal(got, before) {
		t.Fatalf("an update changed the service ports: %v, then %v", before, got)
	}
	if code := call(t, "PUT", base+"/v2/apps/web3", `{"portDefinitions": [{"port": 0, "name": "http"}, {"port": 0, "name": "admin"}]}`, nil); code != http.StatusOK {
		t.Fatalf("PUT two ports: %d", code)
	}
	two := appPorts(t, base, "/web3")
	if len(two) != 2 || two[0] != before[0] || seen[two[1]] != "" {
		t.Fatalf("with a port more: %v; want %d first and a free one", two, before[0])
	}
	view, err := svc.store.View(context.Background(), raft.Stale)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := view.Get(appKey("/web3"))
	if a, err := appStateOf(stored); err != nil || !slices.Equal(a.app.ServicePorts(), two) {
		t.Fatalf("the stored definition has %s", stored)
	}

	// 8 + 1 of 10 ports are held: one app more fits, the next is refused.
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/last", "cmd": "serve", "mem": 32, "instances": 0}`, nil); code != http.StatusCreated {
		t.Fatalf("POST /last: %d", code)
	}
	var refused ValidationError
	waitFor(t, "no deployment left (the store at rest)", func() bool {
		var deps []any
		return call(t, "GET", base+"/v2/deployments", "", &deps) == http.StatusOK && len(deps) == 0
	})
	storedBefore := frameworktest.Stored(t, svc.store)
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/full", "cmd": "serve", "mem": 32, "instances": 0}`, &refused); code != http.StatusUnprocessableEntity {
		t.Fatalf("POST with the range full: %d", code)
	}
	if len(refused.Details) != 1 || refused.Details[0].Path != "/portDefinitions(0)/port" || !strings.Contains(refused.Details[0].Errors[0], "[12000-12009]") {
		t.Fatalf("refusal: %+v", refused)
	}
	if frameworktest.Stored(t, svc.store) != storedBefore {
		t.Fatal("a refused app changed the store")
	}

	// A deleted app's port is free again.
	freed := appPorts(t, base, "/web5")[0]
	if code := call(t, "DELETE", base+"/v2/apps/web5", "", nil); code != http.StatusOK {
		t.Fatalf("DELETE: %d", code)
	}
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/next", "cmd": "serve", "mem": 32, "instances": 0}`, nil); code != http.StatusCreated {
		t.Fatalf("POST /next: %d", code)
	}
	if got := appPorts(t, base, "/next"); !slices.Equal(got, []int{freed}) {
		t.Fatalf("/next got %v, want the freed %d", got, freed)
	}
}

// TestServicePortsOfTasks: a running task shows its app's service ports beside its host ports,
// in /v2/tasks, /v2/apps/{id}/tasks and embedded in the app; with requirePorts the host ports
// are the service ports; and the text list (Accept: text/plain) shows each service port with
// the host:port of the running instances.
func TestServicePortsOfTasks(t *testing.T) {
	// The agent's ports hold the service port range's (at their top: instances without
	// requirePorts take the lowest free ports).
	_, base := portsCluster(t, resources.Range{Begin: 31050, End: 31060}, resources.Ranges{{Begin: 31000, End: 31100}})
	for _, def := range []string{
		`{"id": "/api/web", "cmd": "serve", "cpus": 0.01, "mem": 32, "instances": 2, "portDefinitions": [{"port": 0}, {"port": 0}]}`,
		`{"id": "/edge", "cmd": "serve", "cpus": 0.01, "mem": 32, "requirePorts": true}`,
	} {
		if code := call(t, "POST", base+"/v2/apps", def, nil); code != http.StatusCreated {
			t.Fatalf("POST %s: %d", def, code)
		}
	}
	type taskView struct {
		ID           string `json:"id"`
		AppID        string `json:"appId"`
		Host         string `json:"host"`
		State        string `json:"state"`
		Ports        []int  `json:"ports"`
		ServicePorts []int  `json:"servicePorts"`
	}
	var list struct {
		Tasks []taskView `json:"tasks"`
	}
	waitFor(t, "3 running tasks", func() bool {
		call(t, "GET", base+"/v2/tasks", "", &list)
		running := 0
		for _, tk := range list.Tasks {
			if tk.State == string(task.Running) {
				running++
			}
		}
		return running == 3
	})
	web, edge := appPorts(t, base, "/api/web"), appPorts(t, base, "/edge")
	if !slices.Equal(web, []int{31050, 31051}) || !slices.Equal(edge, []int{31052}) {
		t.Fatalf("service ports: /api/web %v, /edge %v", web, edge)
	}
	for _, tk := range list.Tasks {
		want := map[string][]int{"/api/web": web, "/edge": edge}[tk.AppID]
		if !slices.Equal(tk.ServicePorts, want) {
			t.Fatalf("task %s: servicePorts %v, want %v", tk.ID, tk.ServicePorts, want)
		}
		if tk.AppID == "/edge" && !slices.Equal(tk.Ports, edge) {
			t.Fatalf("requirePorts: the task's host ports are %v, not the service ports %v", tk.Ports, edge)
		}
		if tk.AppID == "/api/web" && (len(tk.Ports) != 2 || slices.Contains(tk.Ports, edge[0])) {
			t.Fatalf("task %s: host ports %v", tk.ID, tk.Ports)
		}
	}
	var one struct {
		Tasks []taskView `json:"tasks"`
	}
	call(t, "GET", base+"/v2/apps/edge/tasks", "", &one)
	var embedded struct {
		App struct {
			Tasks []taskView `json:"tasks"`
		} `json:"app"`
	}
	call(t, "GET", base+"/v2/apps/edge", "", &embedded)
	for _, got := range [][]taskView{one.Tasks, embedded.App.Tasks} {
		if len(got) != 1 || !slices.Equal(got[0].ServicePorts, edge) {
			t.Fatalf("the app's task: %+v", got)
		}
	}

	// The text list: a line per app and service port, its instances' host:port in the order
	// /v2/apps/{id}/tasks lists them.
	var webTasks struct {
		Tasks []taskView `json:"tasks"`
	}
	call(t, "GET", base+"/v2/apps/api/web/tasks", "", &webTasks)
	want := ""
	for i, sp := range web {
		want += fmt.Sprintf("api_web\t%d\t", sp)
		for _, tk := range webTasks.Tasks {
			want += fmt.Sprintf("%s:%d\t", tk.Host, tk.Ports[i])
		}
		want += "\n"
	}
	edgeLine := fmt.Sprintf("edge\t%d\t%s:%d\t\n", edge[0], one.Tasks[0].Host, edge[0])
	for _, tc := range []struct{ path, accept, want string }{
		{"/v2/tasks", "text/plain", want + edgeLine},
		{"/v2/apps/edge/tasks", "text/plain", edgeLine},
		{"/v2/tasks", "text/plain;q=0.9, application/json;q=0.5", want + edgeLine},
	} {
		req, _ := http.NewRequest("GET", base+tc.path, nil)
		req.Header.Set("Accept", tc.accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || string(b) != tc.want {
			t.Fatalf("GET %s (Accept: %s): %d %s\n%q\nwant\n%q", tc.path, tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.want)
		}
	}
}

// TestRequirePortsFit: with requirePorts an instance fits only an offer that has its service
// ports, and takes exactly those; otherwise it is InsufficientPorts naming them.
func TestRequirePortsFit(t *testing.T) {
	as := testApp(t, `{"id": "/a", "cmd": "x", "cpus": 1, "mem": 64, "requirePorts": true, "portDefinitions": [{"port": 10000}, {"port": 10007}]}`)
	o := testOffer("o", "a1", "web1", 2, 128, nil)
	if _, why := fit(as, o.Resources, o, nil); len(why) != 1 || why[0].Reason != frameworks.InsufficientPorts || why[0].Detail != "needs 2 ports, fixed 10000,10007; web1 offers [31000-31001]" {
		t.Fatalf("without the ports: %+v", why)
	}
	o.Resources.Ports = resources.Ranges{{Begin: 9990, End: 10010}}
	got, why := fit(as, o.Resources, o, nil)
	if len(why) > 0 || !slices.Equal(got.list, []int{10000, 10007}) {
		t.Fatalf("with the ports: %v, %+v", got.list, why)
	}
	// A requirePorts app given port 0 is valid: it is assigned a service port, its host port.
	a, err := Definition{"id": json.RawMessage(`"/b"`), "cmd": json.RawMessage(`"x"`), "requirePorts": json.RawMessage(`true`)}.App()
	if err != nil || a.Validate() != nil {
		t.Fatalf("requirePorts with port 0: %v, %v", err, a.Validate())
	}
}
