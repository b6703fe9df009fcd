package marathon

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/pkg/resources"
)

// stored is every key and value of the framework's namespace, as one string to compare.
func stored(t *testing.T, svc *Service) string { return frameworktest.Stored(t, svc.store) }

// errorBody is Marathon's error: a message and the problems by path (a query parameter's path
// is "/" and its name).
type errorBody struct {
	Message string         `json:"message"`
	Details []ErrorDetails `json:"details"`
}

// TestBadInputIsRefusedAtTheDoor sends /v2 what can never run or is ambiguous — ids too long or
// not paths, memory runc cannot hold, an app given twice, booleans that are not, dependencies
// on nothing or on oneself, cycles, privileged containers, root and host volumes no agent
// allows — and wants each refused (422 naming the JSON path, 400 naming the query parameter)
// saying why, with nothing written to the store.
func TestBadInputIsRefusedAtTheDoor(t *testing.T) {
	svc, base := simCluster(t, 1, resources.Resources{CPUs: 4, Mem: 4096, Disk: 100, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
	deployed := func() {
		t.Helper()
		// The list shows a finished deployment gone as soon as the leader decided so; its record
		// leaves the store at the commit right after, which the checks below would see.
		defer func() {
			if t.Failed() {
				t.Log(stored(t, svc))
			}
		}()
		waitFor(t, "no deployment in progress, none in the store", func() bool {
			var deps []Deployment
			return call(t, "GET", base+"/v2/deployments", "", &deps) == http.StatusOK && len(deps) == 0 &&
				!strings.Contains(stored(t, svc), "\ndeployment/") && !strings.HasPrefix(stored(t, svc), "deployment/")
		})
	}
	create := func(body string) {
		t.Helper()
		if code := call(t, "POST", base+"/v2/apps", body, nil); code != http.StatusCreated {
			t.Fatalf("POST %s: %d", body, code)
		}
	}

	// No agent registered yet (the simulated ones are not in the registry): nothing to judge
	// by, so an app that asks for what only some agents allow is taken — it waits for one.
	create(`{"id": "/early", "cmd": "x", "instances": 1, "container": {"type": "DOCKER", "docker": {"image": "a", "privileged": true}}}`)
	if code := call(t, "DELETE", base+"/v2/apps/early?force=true", "", nil); code != http.StatusOK {
		t.Fatalf("DELETE /early: %d", code)
	}
	// One agent in the registry that allows nothing beyond the default: from now on, what it
	// does not allow no agent does.
	if code := call(t, "POST", base+"/v1/agents/register", `{"hostname": "plain", "http": "127.0.0.1:1", "resources": {}}`, nil); code != http.StatusOK {
		t.Fatalf("register an agent: %d", code)
	}
	create(`{"id": "/exist", "cmd": "x", "instances": 0}`)
	create(`{"id": "/grp/a", "cmd": "x", "instances": 0}`)
	deployed()

	app := func(id string, extra ...string) string {
		return `{"id": "` + id + `", "cmd": "x", "instances": 0` + strings.Join(extra, "") + `}`
	}
	priv := `, "instances": 1, "container": {"type": "DOCKER", "docker": {"image": "a", "privileged": true}}`
	secrets := `, "secrets": {"db": {"source": "db/pw"}}`
	maxID := "/" + strings.Repeat("a", MaxIDLength-1)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		at, reason               string // the detail's path (or the query parameter) and words of its error
	}{
		// Ids as Marathon defines them, within what a task id can hold.
		{"id of 10,000 characters", "POST", "/v2/apps", app("/" + strings.Repeat("a", 10000)), 422, "/id", "is 10001 characters long; at most 164"},
		{"id one too long", "POST", "/v2/apps", app(maxID + "a"), 422, "/id", "at most 164"},
		{"id with capitals", "POST", "/v2/apps", app("/Hello"), 422, "/id", "is not a valid path"},
		{"id with ..", "POST", "/v2/apps", app("/x/../hello"), 422, "/id", "has a '..' segment"},
		{"id with .", "POST", "/v2/apps", app("/x/./hello"), 422, "/id", "has a '.' segment"},
		{"id ending in a reserved word", "POST", "/v2/apps", app("/web/restart"), 422, "/id", "reserved words restart, tasks, versions"},
		{"id through tasks", "POST", "/v2/apps", app("/team/tasks/worker"), 422, "/id", "the app could not be reached by its id"},
		{"group id with ..", "POST", "/v2/groups", `{"id": "/g/../h", "apps": []}`, 422, "/id", "has a '..' segment"},
		{"relative app id leaving its group", "POST", "/v2/groups", `{"id": "/rel", "apps": [` + app("../out") + `]}`, 422, "/apps(0)/id", "has a '..' segment"},
		// Memory runc can honour.
		{"mem 1", "POST", "/v2/apps", app("/m", `, "mem": 1`), 422, "/mem", "got 1, expected at least 6 (MiB)"},
		{"mem 0", "POST", "/v2/apps", app("/m", `, "mem": 0`), 422, "/mem", "expected at least 6 (MiB)"},
		{"mem 5.9 by PUT", "PUT", "/v2/apps/exist", `{"mem": 5.9}`, 422, "/mem", "expected at least 6 (MiB)"},
		// One id twice in one request.
		{"PUT list with an id twice", "PUT", "/v2/apps", "[" + app("/d") + "," + app("d") + "]", 422, "(1)/id", "the app /d is given twice in this request (also at (0))"},
		{"group with an app twice", "POST", "/v2/groups", `{"id": "/g2", "apps": [` + app("a") + "," + app("/g2/a") + `]}`, 422, "/apps(1)/id", "the app /g2/a is given twice"},
		{"group with a group twice", "POST", "/v2/groups", `{"id": "/g3", "groups": [{"id": "s", "apps": [` + app("a") + `]}, {"id": "/g3/s", "apps": [` + app("b") + `]}]}`, 422, "/groups(1)/id", "the group /g3/s is given twice"},
		{"group with an app and a group of one id", "POST", "/v2/groups", `{"id": "/g4", "apps": [` + app("x") + `], "groups": [{"id": "x"}]}`, 422, "/apps(0)/id", "is also a group in this request"},
		{"app inside an app", "POST", "/v2/apps", app("/exist/sub"), 422, "/id", "would be inside the app /exist"},
		{"app where a group is", "POST", "/v2/apps", app("/grp"), 422, "/id", "is a group: the app /grp/a is in it"},
		// Booleans in the query, on every endpoint that takes them.
		{"force not a boolean on DELETE", "DELETE", "/v2/apps/exist?force=notabool", "", 400, "force", `got "notabool", expected true or false`},
		{"force empty", "DELETE", "/v2/apps/exist?force", "", 400, "force", `got "", expected true or false`},
		{"force 1 (false to Marathon)", "POST", "/v2/apps/exist/restart?force=1", "", 400, "force", `got "1"`},
		{"force both ways", "PUT", "/v2/apps/exist?force=true&force=false", `{"instances": 2}`, 400, "force", "given as both true and false"},
		{"force on POST", "POST", "/v2/apps?force=yes", app("/new"), 400, "force", `got "yes"`},
		{"force on groups", "DELETE", "/v2/groups/grp?force=truee", "", 400, "force", `got "truee"`},
		{"force on deployments", "DELETE", "/v2/deployments/x?force=sure", "", 400, "force", `got "sure"`},
		{"scale not a boolean", "DELETE", "/v2/apps/exist/tasks?scale=maybe", "", 400, "scale", `got "maybe"`},
		{"wipe not a boolean", "POST", "/v2/tasks/delete?wipe=2", `{"ids": ["x"]}`, 400, "wipe", `got "2"`},
		{"partialUpdate not a boolean", "PUT", "/v2/apps?partialUpdate=nope", "[" + app("/p") + "]", 400, "partialUpdate", `got "nope"`},
		// Dependencies on oneself, on nothing, in a circle.
		{"app depending on itself", "POST", "/v2/apps", app("/selfish", `, "dependencies": ["/selfish"]`), 422, "/dependencies(0)", "/selfish is the app itself"},
		{"group app depending on itself", "POST", "/v2/groups", `{"id": "/gs", "apps": [` + app("a", `, "dependencies": ["a"]`) + `]}`, 422, "/apps(0)/dependencies(0)", "/gs/a is the app itself"},
		{"app depending on nothing", "POST", "/v2/apps", app("/lonely", `, "dependencies": ["/nowhere"]`), 422, "/dependencies(0)", "/nowhere is neither an app nor a group"},
		{"group app depending on nothing", "POST", "/v2/groups", `{"id": "/gn", "apps": [` + app("a", `, "dependencies": ["b"]`) + `]}`, 422, "/apps(0)/dependencies(0)", "/gn/b is neither an app nor a group, nor given in this request"},
		{"group depending on itself", "POST", "/v2/groups", `{"id": "/gd", "dependencies": ["/gd"], "apps": [` + app("a") + `]}`, 422, "/dependencies(0)", "/gd is the group itself: nothing can depend on itself"},
		{"subgroup depending on nothing", "POST", "/v2/groups", `{"id": "/gx", "groups": [{"id": "sub", "dependencies": ["none"], "apps": [` + app("a") + `]}]}`, 422, "/groups(0)/dependencies(0)", "/gx/none is neither an app nor a group"},
		{"cycle in one group", "POST", "/v2/groups", `{"id": "/gc", "apps": [` + app("a", `, "dependencies": ["b"]`) + "," + app("b", `, "dependencies": ["a"]`) + `]}`, 422, "/dependencies", "dependency cycle: /gc/a → /gc/b → /gc/a"},
		// What no registered agent allows, with the agent flag that would.
		{"privileged", "POST", "/v2/apps", app("/priv", priv), 422, "/container/docker/privileged", "no registered agent runs privileged containers: start one with agora agent --allow-privileged"},
		{"privileged in a PUT list", "PUT", "/v2/apps", "[" + app("/priv", priv) + "]", 422, "(0)/container/docker/privileged", "--allow-privileged"},
		{"privileged in a group", "POST", "/v2/groups", `{"id": "/gp", "apps": [` + app("a", priv) + `]}`, 422, "/apps(0)/container/docker/privileged", "--allow-privileged"},
		{"root", "POST", "/v2/apps", app("/rooted", `, "instances": 1, "user": "root"`), 422, "/user", "no registered agent runs tasks as root: start one with agora agent --allow-root-tasks"},
		{"a host volume no agent declares", "POST", "/v2/apps", app("/vol", `, "instances": 1, "container": {"type": "MESOS", "volumes": [{"containerPath": "/d", "hostPath": "/srv/d", "mode": "RO"}]}`), 422, "/container/volumes(0)/hostPath", "(agora agent --host-volume NAME=PATH[:rw])"},
		{"a host volume no agent declares, after a secret volume", "POST", "/v2/apps", app("/vol2", `, "instances": 1, "secrets": {"s": {"source": "db"}}, "container": {"type": "MESOS", "volumes": [{"containerPath": "s", "secret": "s"}, {"containerPath": "/d", "hostPath": "/srv/d", "mode": "RO"}]}`), 422, "/container/volumes(1)/hostPath", "(agora agent --host-volume NAME=PATH[:rw])"},
		// Secret volumes: a secret the app defines, no host path or mode, an absolute path only
		// with an image.
		{"a secret volume of an undefined secret", "POST", "/v2/apps", app("/sv", `, "container": {"type": "MESOS", "volumes": [{"containerPath": "pw", "secret": "db"}]}`), 422, "/container/volumes(0)/secret", `references the secret "db", which /secrets does not define`},
		{"a secret volume with a hostPath", "POST", "/v2/apps", app("/sv", secrets, `, "container": {"type": "MESOS", "volumes": [{"containerPath": "pw", "secret": "db", "hostPath": "/srv/d"}]}`), 422, "/container/volumes(0)/secret", "no hostPath or mode"},
		{"a secret volume with a mode", "POST", "/v2/apps", app("/sv", secrets, `, "container": {"type": "MESOS", "volumes": [{"containerPath": "pw", "secret": "db", "mode": "RO"}]}`), 422, "/container/volumes(0)/secret", "no hostPath or mode"},
		{"an absolute secret volume without an image", "POST", "/v2/apps", app("/sv", secrets, `, "container": {"type": "MESOS", "volumes": [{"containerPath": "/etc/pw", "secret": "db"}]}`), 422, "/container/volumes(0)/containerPath", "only a task with an image may have"},
	} {
		before := stored(t, svc)
		var e errorBody
		code := call(t, tc.method, base+tc.path, tc.body, &e)
		switch {
		case code != tc.code:
			t.Errorf("%s: %d %+v, want %d", tc.name, code, e, tc.code)
		case code == http.StatusBadRequest && !hasProblem(e.Details, "/"+tc.at, tc.reason):
			t.Errorf("%s: %+v, want the parameter %s named: %q", tc.name, e, tc.at, tc.reason)
		case code == http.StatusUnprocessableEntity && !hasProblem(e.Details, tc.at, tc.reason):
			t.Errorf("%s: %+v, want a problem at %s: %q", tc.name, e.Details, tc.at, tc.reason)
		case len(fmt.Sprint(e)) > 2000:
			t.Errorf("%s: the answer is %d characters long: it echoes the input", tc.name, len(fmt.Sprint(e)))
		}
		if after := stored(t, svc); after != before {
			t.Errorf("%s: the refused request changed the store:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}

	// The edges are taken: an id of MaxIDLength characters, 6 MiB, TRUE, a dependency on an app
	// of the same request; an app without instances has Marathon's default, 1, as the API shows
	// it (and with it cpus, mem and disk).
	create(app(maxID, `, "mem": 6`))
	if code := call(t, "PUT", base+"/v2/apps/exist?force=TRUE&partialUpdate=true", `{"instances": 0}`, nil); code != http.StatusOK {
		t.Fatalf("PUT with force=TRUE: %d", code)
	}
	if code := call(t, "POST", base+"/v2/groups", `{"id": "/ok", "apps": [`+app("a", `, "dependencies": ["b"]`)+","+app("b", `, "dependencies": ["/exist"]`)+`]}`, nil); code != http.StatusCreated {
		t.Fatalf("a group whose apps depend on each other and on an app that exists: %d", code)
	}
	create(`{"id": "/plain", "cmd": "x"}`)
	var got struct {
		App map[string]any `json:"app"`
	}
	if code := call(t, "GET", base+"/v2/apps/plain?embed=app.counts&embed=group.apps.failures", "", &got); code != http.StatusOK ||
		got.App["instances"] != float64(1) || got.App["cpus"] != float64(1) || got.App["mem"] != float64(128) || got.App["disk"] != float64(0) {
		t.Fatalf("an app posted without instances: %d %v, want instances 1, cpus 1, mem 128, disk 0", code, got.App)
	}
	if !strings.Contains(stored(t, svc), `"instances":1`) {
		t.Fatalf("the stored definition of /plain has no instances: %s", stored(t, svc))
	}
	// ?partialUpdate=false replaces the definition: what it leaves out goes back to defaults.
	deployed()
	if code := call(t, "PUT", base+"/v2/apps/exist?partialUpdate=false", `{"cmd": "y", "instances": 0, "mem": 64}`, nil); code != http.StatusOK {
		t.Fatalf("PUT partialUpdate=false: %d", code)
	}
	deployed()
	if code := call(t, "PUT", base+"/v2/apps/exist?partialUpdate=false", `{"cmd": "y", "instances": 0}`, nil); code != http.StatusOK {
		t.Fatalf("PUT partialUpdate=false: %d", code)
	}
	if call(t, "GET", base+"/v2/apps/exist", "", &got); got.App["mem"] != float64(128) || got.App["cmd"] != "y" {
		t.Fatalf("after a full replacement: %v, want cmd y and mem back to 128", got.App)
	}
}

// hasProblem says whether the details hold an error at path with the words.
func hasProblem(details []ErrorDetails, path, words string) bool {
	for _, d := range details {
		for _, e := range d.Errors {
			if d.Path == path && strings.Contains(e, words) {
				return true
			}
		}
	}
	return false
}
