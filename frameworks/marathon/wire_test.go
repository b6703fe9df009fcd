package marathon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// sameShape fails unless got has the field names and JSON types of the hand-written fixture:
// every object the same keys (a fixture's {} stands for any object), every array's first
// element the shape of the fixture's (a fixture's [] stands for any array; a non-empty one
// wants one), null only where the fixture has null.
func sameShape(t *testing.T, fixture string, got any) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata/wire", fixture))
	if err != nil {
		t.Fatal(err)
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	b, _ := json.Marshal(got)
	json.Unmarshal(b, &g)
	var problems []string
	compareShape("", w, g, &problems)
	if len(problems) > 0 {
		t.Fatalf("not the shape of %s:\n  %s\ngot: %s", fixture, strings.Join(problems, "\n  "), b)
	}
}

func compareShape(at string, want, got any, problems *[]string) {
	kind := func(v any) string {
		switch v.(type) {
		case nil:
			return "null"
		case map[string]any:
			return "object"
		case []any:
			return "array"
		case string:
			return "string"
		case float64:
			return "number"
		case bool:
			return "boolean"
		}
		return fmt.Sprintf("%T", v)
	}
	if kind(want) != kind(got) {
		*problems = append(*problems, fmt.Sprintf("%s: a %s, want a %s", at, kind(got), kind(want)))
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g := got.(map[string]any)
		if len(w) == 0 {
			return
		}
		var keys []string
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				*problems = append(*problems, fmt.Sprintf("%s/%s: not in Marathon's shape", at, k))
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s/%s: missing", at, k))
				continue
			}
			compareShape(at+"/"+k, w[k], gv, problems)
		}
	case []any:
		g := got.([]any)
		switch {
		case len(w) == 0:
		case len(g) == 0:
			*problems = append(*problems, fmt.Sprintf("%s: empty, want at least one element", at))
		default:
			compareShape(at+"(0)", w[0], g[0], problems)
		}
	}
}

// marathonTime is how Marathon writes a time: UTC, milliseconds.
var marathonTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// timesIn lists every string in v that reads as a time (RFC 3339), with its path.
func timesIn(at string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			timesIn(at+"/"+k, e, out)
		}
	case []any:
		for i, e := range x {
			timesIn(fmt.Sprintf("%s(%d)", at, i), e, out)
		}
	case string:
		if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
			out[at] = x
		}
	}
}

// getJSON GETs a /v2 path and decodes its body as generic JSON.
func getJSON(t *testing.T, url string) any {
	t.Helper()
	var out any
	if code := call(t, "GET", url, "", &out); code != http.StatusOK {
		t.Fatalf("GET %s: %d", url, code)
	}
	return out
}

// sseEvents reads a /v2/events stream into a channel of decoded events until ctx ends.
func sseEvents(t *testing.T, ctx context.Context, url string) <-chan map[string]any {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan map[string]any, 64)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev map[string]any
			if json.Unmarshal([]byte(data), &ev) == nil {
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}

// TestWireShapes: each /v2 endpoint and event answers with the fields and types Marathon 1.10
// writes (fixtures in testdata/wire written by hand from its RAML types), every time in it has
// milliseconds, and a write that starts a deployment names it in Marathon-Deployment-Id.
func TestWireShapes(t *testing.T) {
	_, base := simCluster(t, 1, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	events := sseEvents(t, ctx, base+"/v2/events")
	lightEvents := sseEvents(t, ctx, base+"/v2/events?plan-format=light&event_type="+EventDeploymentInfo)

	// POST answers the app, names its deployment in the header.
	req, _ := http.NewRequest("POST", base+"/v2/apps", strings.NewReader(`{"id": "/shop/web", "cmd": "serve --port $PORT0", "cpus": 0.25, "mem": 64}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(deploymentHeader) == "" {
		t.Fatalf("POST /v2/apps: %d, %s %q", resp.StatusCode, deploymentHeader, resp.Header.Get(deploymentHeader))
	}

	// The event stream: the POST as api_post_event (who and where), its deployment's plan.
	seen := map[string]map[string]any{}
	for len(seen) < 2 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the event stream ended; seen %v", seen)
			}
			typ, _ := ev["eventType"].(string)
			if typ == EventAPIPost || typ == EventDeploymentInfo {
				seen[typ] = ev
			}
		case <-ctx.Done():
			t.Fatalf("no api_post_event and deployment_info; seen %v", seen)
		}
	}
	sameShape(t, "api_post_event.json", seen[EventAPIPost])
	if app := seen[EventAPIPost]["appDefinition"].(map[string]any); app["id"] != "/shop/web" || app["labels"] == nil {
		t.Fatalf("api_post_event's appDefinition: %v", app)
	}
	sameShape(t, "deployment_info.json", seen[EventDeploymentInfo])
	// The trees hold the app: marathon-python reads them. A light stream (Marathon 1.8's only
	// form) has id, version and steps alone.
	target, _ := json.Marshal(seen[EventDeploymentInfo]["plan"].(map[string]any)["target"])
	if !strings.Contains(string(target), `"id":"/shop/web"`) {
		t.Errorf("deployment_info's target tree lacks the app: %s", target)
	}
	select {
	case ev := <-lightEvents:
		if plan, _ := ev["plan"].(map[string]any); len(plan) != 3 || plan["id"] == nil || plan["version"] == nil || plan["steps"] == nil {
			t.Errorf("deployment_info with plan-format=light: %v, want a plan of id, version and steps", ev)
		}
	case <-ctx.Done():
		t.Fatal("no deployment_info on the light stream")
	}
	if code := call(t, "GET", base+"/v2/events?plan-format=heavy", "", nil); code != http.StatusBadRequest {
		t.Errorf("plan-format=heavy: %d, want 400", code)
	}

	var app any
	waitFor(t, "/shop/web running", func() bool {
		got := getJSON(t, base+"/v2/apps/shop/web").(map[string]any)["app"].(map[string]any)
		app = got
		return got["tasksRunning"] == 1.0 && len(got["deployments"].([]any)) == 0
	})
	sameShape(t, "app.json", app)
	list := getJSON(t, base+"/v2/apps?embed=apps.tasks").(map[string]any)["apps"].([]any)
	sameShape(t, "app.json", list[0])
	tasks := getJSON(t, base+"/v2/tasks").(map[string]any)["tasks"].([]any)
	sameShape(t, "task.json", tasks[0])
	sameShape(t, "info.json", getJSON(t, base+"/v2/info"))

	// An app no agent can hold: its deployment stays, as GET /v2/deployments shows it.
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/shop/big", "cmd": "x", "cpus": 64}`, nil); code != http.StatusCreated {
		t.Fatalf("POST /shop/big: %d", code)
	}
	deps := getJSON(t, base+"/v2/deployments").([]any)
	if len(deps) != 1 {
		t.Fatalf("deployments: %v", deps)
	}
	sameShape(t, "deployment.json", deps[0])

	// Every time written anywhere above has Marathon's milliseconds.
	times := map[string]string{}
	for name, v := range map[string]any{"app": app, "apps": list, "tasks": tasks, "deployments": deps,
		"queue": getJSON(t, base+"/v2/queue"), "api_post_event": seen[EventAPIPost], "deployment_info": seen[EventDeploymentInfo]} {
		timesIn(name, v, times)
	}
	for _, must := range []string{"app/version", "tasks(0)/stagedAt", "tasks(0)/startedAt", "deployments(0)/version", "api_post_event/timestamp", "queue/queue(0)/since"} {
		if _, ok := times[must]; !ok {
			t.Errorf("no time at %s", must)
		}
	}
	for at, v := range times {
		if !marathonTime.MatchString(v) {
			t.Errorf("%s is %q, not Marathon's form (2026-12-06T20:24:17.909Z)", at, v)
		}
	}

	// The text form for load balancers: the app's path with '_', its port, host:port of each task.
	req, _ = http.NewRequest("GET", base+"/v2/tasks", nil)
	req.Header.Set("Accept", "text/plain")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	task0 := tasks[0].(map[string]any)
	line := fmt.Sprintf("shop_web\t%v\t%s:%v\t\n", task0["servicePorts"].([]any)[0], task0["host"], task0["ports"].([]any)[0])
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(text), line) {
		t.Fatalf("text/plain /v2/tasks: %s %q, want the line %q", resp.Header.Get("Content-Type"), text, line)
	}
}

// TestErrorsAreMarathons: a refused query parameter and a missing app answer Marathon's error
// body: a message, and details by path where a field is at fault.
func TestErrorsAreMarathons(t *testing.T) {
	_, base := simCluster(t, 0, resources.Resources{})
	var e map[string]any
	if code := call(t, "DELETE", base+"/v2/apps/none?force=ture", "", &e); code != http.StatusBadRequest {
		t.Fatalf("a misspelt force: %d", code)
	}
	details, _ := e["details"].([]any)
	if _, ok := e["message"].(string); !ok || len(details) != 1 || details[0].(map[string]any)["path"] != "/force" {
		t.Fatalf("a misspelt force: %v, want {message, details: [{path: /force, errors}]}", e)
	}
	e = nil
	if code := call(t, "GET", base+"/v2/apps/none", "", &e); code != http.StatusNotFound || e["message"] == nil {
		t.Fatalf("a missing app: %d %v", code, e)
	}
}

// TestUnknownEmbedIsIgnored: as Marathon does, an embed value it does not know embeds nothing
// and refuses nothing; the values it knows beside it still count.
func TestUnknownEmbedIsIgnored(t *testing.T) {
	_, base := simCluster(t, 0, resources.Resources{})
	if code := call(t, "POST", base+"/v2/apps", `{"id": "/shop/web", "cmd": "serve", "instances": 0}`, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	for _, tc := range []struct {
		url, embedded string
		app           func(map[string]any) map[string]any
	}{
		{"/v2/apps?embed=apps.tsks,apps.tasks", "tasks", func(m map[string]any) map[string]any { return m["apps"].([]any)[0].(map[string]any) }},
		{"/v2/apps/shop/web?embed=app.bogus&embed=app.taskStats", "tasksStats", func(m map[string]any) map[string]any { return m["app"].(map[string]any) }},
		{"/v2/groups?embed=group.bogus&embed=group.apps.tasks", "tasks", func(m map[string]any) map[string]any {
			return m["groups"].([]any)[0].(map[string]any)["apps"].([]any)[0].(map[string]any)
		}},
		{"/v2/queue?embed=nothing", "", nil},
	} {
		var got map[string]any
		if code := call(t, "GET", base+tc.url, "", &got); code != http.StatusOK {
			t.Fatalf("GET %s: %d %v, want 200", tc.url, code, got)
		}
		if tc.app == nil {
			continue
		}
		app := tc.app(got)
		if _, ok := app[tc.embedded]; !ok {
			t.Errorf("GET %s: no %s beside the unknown embed: %v", tc.url, tc.embedded, app)
		}
		for k := range app {
			if strings.Contains(k, "bogus") || strings.Contains(k, "tsks") {
				t.Errorf("GET %s: the unknown embed showed up as %q", tc.url, k)
			}
		}
	}
}

// TestStoreUrlsTakenNotShown: storeUrls (older Marathons' artifact store; Marathon 1.10 has no
// such field) is taken from a client that still sends it, on POST, PUT and in a group, and
// neither kept nor shown — nor shown for a definition stored before it was dropped.
func TestStoreUrlsTakenNotShown(t *testing.T) {
	svc, base := simCluster(t, 0, resources.Resources{})
	const urls = `"storeUrls": ["http://repo/app.tgz"]`
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/v2/apps", `{"id": "/a", "cmd": "serve", "instances": 0, ` + urls + `}`},
		{"PUT", "/v2/apps/a?force=true", `{"cmd": "serve more", ` + urls + `}`},
		{"POST", "/v2/groups", `{"id": "/g", "apps": [{"id": "b", "cmd": "serve", "instances": 0, ` + urls + `}]}`},
	} {
		if code := call(t, w.method, base+w.path, w.body, nil); code >= 300 {
			t.Fatalf("%s %s: %d", w.method, w.path, code)
		}
	}
	for _, id := range []string{"/a", "/g/b"} {
		app := getJSON(t, base+"/v2/apps"+id).(map[string]any)["app"].(map[string]any)
		if _, ok := app["storeUrls"]; ok {
			t.Errorf("GET %s shows storeUrls: %v", id, app["storeUrls"])
		}
	}
	if s := stored(t, svc); strings.Contains(s, "storeUrls") {
		t.Errorf("storeUrls was stored: %s", s)
	}
	old := Definition{"id": json.RawMessage(`"/old"`), "cmd": json.RawMessage(`"x"`), "storeUrls": json.RawMessage(`["http://repo/x"]`)}
	a, err := old.App()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := appWire(old, a, "*")["storeUrls"]; ok {
		t.Errorf("a definition stored with storeUrls shows them")
	}
}

// TestExampleLikeAppsRoundTrip: definitions written in the style of Marathon's documentation
// (testdata/wire/apps) are taken as written; what GET shows has each field given with its value
// (Marathon's normal forms aside: a container's type, a command check's {"value"}), and PUTting
// back what GET showed — counts, tasks and all — changes no field of the definition.
func TestExampleLikeAppsRoundTrip(t *testing.T) {
	_, base := simCluster(t, 0, resources.Resources{})
	files, _ := filepath.Glob("testdata/wire/apps/*.json")
	if len(files) < 4 {
		t.Fatalf("example-like apps: %v", files)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		var given map[string]any
		if err := json.Unmarshal(b, &given); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		id := given["id"].(string)
		var created map[string]any
		if code := call(t, "POST", base+"/v2/apps", string(b), &created); code != http.StatusCreated {
			t.Fatalf("%s: POST %d %v", f, code, created)
		}
		first := getJSON(t, base+"/v2/apps"+id).(map[string]any)["app"].(map[string]any)
		withServicePorts(given, first)
		for k, v := range given {
			if k == "container" || k == "healthChecks" || k == "ports" || k == "uris" {
				continue // compared below, in Marathon's normal form
			}
			if !sameJSONValue(v, first[k]) {
				t.Errorf("%s: %s is %v, given %v", f, k, first[k], v)
			}
		}
		if c, ok := given["container"].(map[string]any); ok {
			shown := first["container"].(map[string]any)
			if shown["type"] != "DOCKER" && shown["type"] != "MESOS" {
				t.Errorf("%s: container type %v", f, shown["type"])
			}
			for k, v := range c {
				if k != "type" && k != "docker" && !sameJSONValue(v, shown[k]) {
					t.Errorf("%s: container.%s is %v, given %v", f, k, shown[k], v)
				}
			}
		}
		for _, hc := range first["healthChecks"].([]any) {
			sameShapeKeys(t, f, hc.(map[string]any))
		}
		// PUT back what GET showed: the definition comes back the same.
		put, _ := json.Marshal(first)
		if code := call(t, "PUT", base+"/v2/apps"+id+"?force=true", string(put), nil); code != http.StatusOK {
			t.Fatalf("%s: PUT of what GET showed: %d", f, code)
		}
		again := getJSON(t, base+"/v2/apps"+id).(map[string]any)["app"].(map[string]any)
		for _, k := range []string{"version", "versionInfo", "deployments", "tasks", "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "waitingReason"} {
			delete(first, k)
			delete(again, k)
		}
		if !sameJSONValue(first, again) {
			a, _ := json.Marshal(first)
			b, _ := json.Marshal(again)
			t.Errorf("%s: PUT of what GET showed changed it:\nbefore %s\nafter  %s", f, a, b)
		}
	}
}

// sameShapeKeys checks a health check as GET shows it has Marathon's defaults (the numbers, and
// ipProtocol, portIndex, path for an HTTP check).
func sameShapeKeys(t *testing.T, f string, hc map[string]any) {
	t.Helper()
	want := []string{"gracePeriodSeconds", "intervalSeconds", "maxConsecutiveFailures", "timeoutSeconds", "delaySeconds", "protocol"}
	if hc["protocol"] == "COMMAND" {
		if _, ok := hc["command"].(map[string]any)["value"]; !ok {
			t.Errorf("%s: a command check's command is %v, want {\"value\": ...}", f, hc["command"])
		}
	} else {
		want = append(want, "ipProtocol")
	}
	if hc["protocol"] == "HTTP" {
		want = append(want, "path", "portIndex", "ignoreHttp1xx")
	}
	for _, k := range want {
		if _, ok := hc[k]; !ok {
			t.Errorf("%s: a %v health check without %s: %v", f, hc["protocol"], k, hc)
		}
	}
}

// withServicePorts puts into a given definition the service ports the app was assigned where
// it gave 0 (portDefinitions' port, portMappings' servicePort), as Marathon shows them.
func withServicePorts(given, shown map[string]any) {
	fill := func(giv, sh []any, key string) {
		for i := range min(len(giv), len(sh)) {
			g, _ := giv[i].(map[string]any)
			s, _ := sh[i].(map[string]any)
			if g != nil && s != nil && (g[key] == nil || g[key] == 0.0) {
				g[key] = s[key]
			}
		}
	}
	if pd, ok := given["portDefinitions"].([]any); ok {
		sh, _ := shown["portDefinitions"].([]any)
		fill(pd, sh, "port")
	}
	c, _ := given["container"].(map[string]any)
	sc, _ := shown["container"].(map[string]any)
	if pm, ok := c["portMappings"].([]any); ok && sc != nil {
		sh, _ := sc["portMappings"].([]any)
		fill(pm, sh, "servicePort")
	}
}

func sameJSONValue(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestTaskWireHealthAndAddresses: a task with a health result shows Marathon's result (alive,
// consecutiveFailures, the instance), an agent known by address shows it in ipAddresses, and
// region and zone come from the agent's attributes.
func TestTaskWireHealthAndAddresses(t *testing.T) {
	alive := false
	started := time.Date(2026, 3, 1, 8, 0, 2, 500_123_456, time.UTC)
	in := &instance{rec: InstanceRecord{ID: "web.1", AppID: "/web", Host: "10.0.0.7", AgentID: "a1", Ports: []int{31001},
		Attributes: map[string]string{"zone": "b", "region": "eu"}, StagedAt: started.Add(-time.Second)},
		state: task.Running, healthy: &alive, startedAt: &started}
	b, _ := json.Marshal(taskWireOf(in, "*", &leaderState{apps: map[string]*appState{}}))
	var got map[string]any
	json.Unmarshal(b, &got)
	if got["startedAt"] != "2026-03-01T08:00:02.500Z" || got["zone"] != "b" || got["region"] != "eu" || got["role"] != "*" {
		t.Fatalf("task: %s", b)
	}
	if ips := got["ipAddresses"].([]any); len(ips) != 1 || ips[0].(map[string]any)["ipAddress"] != "10.0.0.7" || ips[0].(map[string]any)["protocol"] != "IPv4" {
		t.Fatalf("ipAddresses: %s", b)
	}
	hc := got["healthCheckResults"].([]any)[0].(map[string]any)
	keys := []string{}
	for k := range hc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"alive", "consecutiveFailures", "firstSuccess", "instanceId", "lastFailure", "lastFailureCause", "lastSuccess", "taskId"}; !slices.Equal(keys, want) || hc["alive"] != false {
		t.Fatalf("healthCheckResults: %v, want the keys %v", hc, want)
	}
}

// TestContainerWithoutType: a container given without its type is Marathon's default (DOCKER
// with a docker image, MESOS without one).
func TestContainerWithoutType(t *testing.T) {
	for def, want := range map[string]string{
		`{"id": "/d", "container": {"docker": {"image": "nginx"}}}`:                    "DOCKER",
		`{"id": "/m", "cmd": "x", "container": {"volumes": []}}`:                       "MESOS",
		`{"id": "/t", "container": {"type": "MESOS", "docker": {"image": "busybox"}}}`: "MESOS",
	} {
		d, err := Decode([]byte(def))
		if err != nil {
			t.Fatal(err)
		}
		a, err := d.App()
		if err == nil {
			err = a.Validate()
		}
		if err != nil || a.Container.Type != want {
			t.Errorf("%s: %v, type %q, want %q", def, err, a.Container.Type, want)
		}
	}
}

// TestFilteredEventStreamAnswersAtOnce: a stream filtered to events that are not coming (not
// even event_stream_attached) still answers its headers at once, not at the first keep-alive
// 15 s later.
func TestFilteredEventStreamAnswersAtOnce(t *testing.T) {
	_, base := simCluster(t, 0, resources.Resources{})
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(base + "/v2/events?event_type=" + EventDeploymentFailed)
	if err != nil {
		t.Fatalf("GET /v2/events filtered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v2/events filtered: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
