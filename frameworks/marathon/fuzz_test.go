package marathon

// Fuzz targets for what Marathon's API decodes from its users: app definitions (and partial
// updates merged over them), group definitions, and placement constraints. Run one with, for
// instance:
//
//	go test -run '^$' -fuzz '^FuzzApp$' -fuzztime 30s ./frameworks/marathon/
//
// A plain `go test` runs the seeds below and those under testdata/fuzz/.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// App definitions as users write them: the examples (examples/apps), the tests', and the tricky.
var appSeeds = []string{
	`{"id": "/hello", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
	  "args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 2,
	  "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http"}],
	  "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 2, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}],
	  "labels": {"example": "hello"}}`,
	`{"id": "/examples/rolling", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
	  "args": ["-sleep", "24h"], "env": {"RELEASE": "1"}, "cpus": 0.1, "mem": 32, "instances": 4,
	  "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25},
	  "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 2, "timeoutSeconds": 2}],
	  "killSelection": "OLDEST_FIRST", "labels": {"example": "rolling-upgrade"}}`,
	`{"id": "/examples/one-per-host", "cmd": "echo serving on $HOST:$PORT0 && sleep 86400", "cpus": 0.1, "mem": 32, "instances": 3,
	  "constraints": [["hostname", "UNIQUE"]], "labels": {"example": "constraints"}}`,
	`{"id": "prod/web", "cmd": "serve", "fetch": [{"uri": "http://x/y.tgz"}], "acceptedResourceRoles": ["*"], "mem": 64}`,
	`{"id": "/Bad_Id", "cpus": -1, "mem": -5, "instances": -2, "backoffFactor": 0.5,
	  "upgradeStrategy": {"minimumHealthCapacity": 1.5, "maximumOverCapacity": -0.1},
	  "killSelection": "RANDOM", "constraints": [["hostname", "UNIQUE", "x"], ["rack", "NEAR"]],
	  "healthChecks": [{"protocol": "HTTP", "portIndex": 3}],
	  "container": {"type": "DOCKER", "docker": {"image": "", "privileged": true}},
	  "env": {"DB": {"secret": "missing"}}}`,
	`{"id": "/roll", "cmd": "serve", "cpus": 0.1, "mem": 32, "instances": 2, "portDefinitions": [{"port": 0, "name": "http"}], "env": {"V": "1"},
	  "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 1, "timeoutSeconds": 1}]}`,
	`{"id": "/db", "cmd": "x", "env": {"PASSWORD": {"secret": "pw"}}, "secrets": {"pw": {"source": "/db/password"}},
	  "container": {"type": "MESOS", "volumes": [{"containerPath": "data", "hostPath": "/var/data", "mode": "RO"}],
	                "portMappings": [{"containerPort": 80, "hostPort": 0, "name": "web"}]},
	  "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}, "taskKillGracePeriodSeconds": 3,
	  "dependencies": ["/a", "../b"], "requirePorts": true, "ports": [8080, 8081]}`,
	`{"id": "/far", "cmd": "serve", "constraints": [["rack", "GROUP_BY", "3"], ["rack", "MAX_PER", "2"], ["@hostname", "LIKE", "node-[0-9]+"], ["rack", "UNLIKE", "a)|(b"], ["rack", "IS", "r1"], ["rack", "CLUSTER"]]}`,
	`{"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}, {"protocol": "MESOS_TCP", "port": 99999}]}`,
	`{"id": "/a", "cmd": "x", "container": {"type": "DOCKER", "docker": {"image": "busybox"}, "volumes": [{"containerPath": "../etc", "hostPath": "/"}, {"containerPath": "x", "persistent": {"size": 1}}]}}`,
	`{"id": "/a", "cmd": "x", "instances": 1e20}`,
	`{"id": "/a", "cmd": "x", "cpus": 1e400}`,
	`{"id": "/a", "cmd": "x", "cpus": "NaN"}`,
	`{"id": "/a", "cmd": "x", "instances": -9223372036854775808}`,
	`{"id": "/a", "cmd": "x", "ports": "8080"}`,
	`{"id": "/a", "cmd": "x", "ports": null, "portDefinitions": null}`,
	`{"id": "/a", "cmd": "x", "CPUS": -1, "cpus": 1}`,
	`{"id": "/a", "cmd": "x", "id": "/b"}`,
	`{"id": "/a/../b", "cmd": "x"}`,
	`{"id": "/ünïcode", "cmd": "x"}`,
	`{"id": "` + strings.Repeat("a/", 2000) + `", "cmd": "x"}`,
	`{"id": 5}`,
	`{"id": "a"} {"id": "b"}`,
	`[1, 2]`,
	`null`,
	``,
	`{}`,
	strings.Repeat("[", 2000),
	`{"a":` + strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat("}", 2001),
}

// Partial updates (PUT or PATCH with some fields).
var patchSeeds = []string{
	`{"env": {"RELEASE": "2"}}`,
	`{"instances": 3}`,
	`{"mem": null, "cmd": null}`,
	`{"version": "2026-01-01T00:00:00.000Z"}`,
	`{"id": "/other"}`,
	`{}`,
	`null`,
}

// checkDefinition takes a definition through what a POST or a deployment does with it. An app
// that is accepted is accepted again from its own JSON, as the same app, and what a deployment
// would store of it loads back.
func checkDefinition(t *testing.T, d Definition) {
	t.Helper()
	a, err := d.App()
	if err != nil {
		return // 422, as Marathon: the typed view does not read
	}
	if err := a.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Details) == 0 {
			t.Fatalf("not a ValidationError with details: %T %v", err, err)
		}
		for _, det := range ve.Details {
			if !strings.HasPrefix(det.Path, "/") || len(det.Errors) == 0 {
				t.Fatalf("a problem without a path or a message: %+v", det)
			}
		}
		return
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("an accepted definition does not marshal: %v", err)
	}
	d2, err := Decode(b)
	if err != nil {
		t.Fatalf("the JSON of an accepted definition does not decode: %v\n%s", err, b)
	}
	a2, err := d2.App()
	if err != nil {
		t.Fatalf("the JSON of an accepted definition has no app: %v\n%s", err, b)
	}
	if err := a2.Validate(); err != nil {
		t.Fatalf("the JSON of an accepted definition is refused: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(a, a2) {
		t.Fatalf("the JSON of an accepted definition is another app:\n%+v\n%+v", a, a2)
	}
	if got := parseConstraints(a); len(got) != len(a.Constraints) {
		t.Fatalf("%d of %d accepted constraints parse", len(got), len(a.Constraints))
	}
	// What a deployment stores (see changeApps) loads back when a leader starts.
	stored := d.Merge(nil)
	stored["id"] = mustJSON(a.ID)
	stored["version"] = mustJSON("2026-01-01T00:00:00.000Z")
	stored["versionInfo"] = mustJSON(map[string]string{"lastScalingAt": "2026-01-01T00:00:00.000Z", "lastConfigChangeAt": "2026-01-01T00:00:00.000Z"})
	as, err := appStateOf(mustJSON(stored))
	if err != nil {
		t.Fatalf("what a deployment stores does not load: %v", err)
	}
	if as.app.ID != a.ID || as.configAt == "" {
		t.Fatalf("stored app %q (config %q), want %q", as.app.ID, as.configAt, a.ID)
	}
	if err := as.app.Validate(); err != nil {
		t.Fatalf("a stored app is refused: %v", err)
	}
}

// FuzzApp decodes an app definition as POST /v2/apps does, and a partial update merged over it
// as PUT /v2/apps/{id} does; neither panics, and what is accepted survives its own JSON.
func FuzzApp(f *testing.F) {
	for i, s := range appSeeds {
		f.Add([]byte(s), []byte(patchSeeds[i%len(patchSeeds)]))
	}
	f.Fuzz(func(t *testing.T, body, patch []byte) {
		d, err := Decode(body)
		if err != nil {
			return
		}
		if d == nil {
			t.Fatal("Decode accepted no definition")
		}
		checkDefinition(t, d)
		p, err := Decode(patch)
		if err != nil {
			return
		}
		merged := d.Merge(p)
		for k, v := range p {
			if string(bytes.TrimSpace(v)) == "null" {
				if _, ok := merged[k]; ok {
					t.Fatalf("%s set to null is still there", k)
				}
			} else if !bytes.Equal(merged[k], v) {
				t.Fatalf("%s: merged %s, patch %s", k, merged[k], v)
			}
		}
		checkDefinition(t, merged)
	})
}

// FuzzGroup decodes a group as POST /v2/groups and PUT /v2/groups/{id} do, and turns it into
// app edits as applyGroup does: no panic; every app lands in the group; every problem has a path.
func FuzzGroup(f *testing.F) {
	for _, s := range []string{
		`{"id": "/two-tier", "apps": [
		   {"id": "db", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}}, "args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1,
		    "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1, "timeoutSeconds": 1}]},
		   {"id": "web", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}}, "args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 2,
		    "dependencies": ["db"], "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1, "timeoutSeconds": 1}]}]}`,
		`{"id": "/prod", "groups": [{"id": "back", "apps": [{"id": "db", "cmd": "x"}], "dependencies": ["../front"]}, {"id": "/prod/front", "apps": [{"id": "/prod/front/web", "cmd": "x"}]}]}`,
		`{"id": "/prod", "apps": [{"id": "/elsewhere/web", "cmd": "x"}, {"cmd": "no id"}, 5, null]}`,
		`{"id": "/prod", "groups": [{"id": "Bad_Id"}, {"id": "../up"}, {"id": "/"}]}`,
		`{"scaleBy": 1.5}`,
		`{"scaleBy": -1}`,
		`{"id": "/g", "version": "x", "unknown": 1}`,
		`{"id": "/a", "groups": [{"id": "a", "groups": [{"id": "a", "apps": [{"id": "a", "cmd": "x", "dependencies": ["/a/a/a"]}]}]}]}`,
		`{"id": "/g", "groups": ` + strings.Repeat(`[{"groups":`, 1000) + `[]` + strings.Repeat(`}]`, 1000) + `}`,
		`null`,
		``,
		`[]`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v2/groups", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		g, ok := readGroup(rec, req)
		if !ok {
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusUnprocessableEntity {
				t.Fatalf("a refused group answers %d", rec.Code)
			}
			return
		}
		id := NormalizeID(g.ID)
		if id == "" || id == "/" {
			return // createGroup: 422
		}
		edits, groups, err := flattenGroup(g, id)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("%T %v", err, err)
			}
			for _, det := range ve.Details {
				if !strings.HasPrefix(det.Path, "/") {
					t.Fatalf("a problem without a path: %+v", det)
				}
			}
			return
		}
		apps := map[string]App{}
		known := map[string]groupRecord{}
		for gid, gr := range groups {
			if !under(gid, id) {
				t.Fatalf("group %s is outside %s", gid, id)
			}
			known[gid] = *gr
		}
		for _, e := range edits {
			if !under(e.id, id) || e.id == id {
				t.Fatalf("app %s is not in the group %s", e.id, id)
			}
			def, err := e.edit(nil)
			if err != nil || def == nil {
				t.Fatalf("edit of %s: %v, %v", e.id, def, err)
			}
			var appID string
			if err := json.Unmarshal(def["id"], &appID); err != nil || appID != e.id {
				t.Fatalf("edit of %s has the id %s", e.id, def["id"])
			}
			if a, err := def.App(); err == nil && a.Validate() == nil {
				apps[a.ID] = a
			}
		}
		dependencyCycle(apps, known)
	})
}

// FuzzConstraint parses a Marathon constraint, [field, operator, value?], and checks one more
// instance against it. An accepted LIKE or UNLIKE value is a regular expression of its own
// (not one that only compiles once wrapped in anchors): a bad one is an error, never a panic.
func FuzzConstraint(f *testing.F) {
	for _, c := range [][]string{
		{"hostname", "UNIQUE"},
		{"@hostname", "UNIQUE"},
		{"hostname", "UNIQUE", "x"},
		{"rack", "CLUSTER", "r1"},
		{"rack", "CLUSTER"},
		{"rack", "GROUP_BY"},
		{"rack", "GROUP_BY", "3"},
		{"rack", "GROUP_BY", "-1"},
		{"rack", "GROUP_BY", "99999999999999999999"},
		{"hostname", "LIKE", "[ab]"},
		{"hostname", "UNLIKE", "[ab]"},
		{"rack", "LIKE", "("},
		{"rack", "LIKE", "a)|(b"},
		{"rack", "LIKE", `\`},
		{"rack", "LIKE", "x{1001}"},
		{"rack", "LIKE", strings.Repeat("(", 999) + "a" + strings.Repeat(")", 999)}, // compiles, but not anchored
		{"rack", "MAX_PER", "2"},
		{"rack", "MAX_PER", "0"},
		{"rack", "IS", "r2"},
		{"rack", "IS"},
		{"rack", "NEAR"},
		{"", "UNIQUE"},
		{"hostname"},
		{},
		{"a", "b", "c", "d"},
	} {
		// The strings travel NUL-separated: a fuzz argument cannot be a []string.
		f.Add(strings.Join(c, "\x00"), "node-1", "r1")
	}
	f.Fuzz(func(t *testing.T, joined, host, rack string) {
		raw := strings.Split(joined, "\x00")
		if joined == "" {
			raw = nil
		}
		c, err := ParseConstraint(raw)
		if err != nil {
			return
		}
		if c.Operator == OpLike || c.Operator == OpUnlike {
			if _, err := regexp.Compile(c.Value); err != nil {
				t.Fatalf("%s accepted %q, which is not a regular expression: %v", c.Operator, c.Value, err)
			}
		}
		placed := []Place{{Hostname: host, Attributes: map[string]string{"rack": rack}}, {Hostname: "other", Attributes: map[string]string{c.Field: rack}}}
		candidate := Place{Hostname: host, Attributes: map[string]string{c.Field: rack, "rack": rack}}
		c.Allows(candidate, placed)
		c.Allows(candidate, nil)
		AllowAll([]Constraint{c, c}, Place{}, placed)
	})
}
