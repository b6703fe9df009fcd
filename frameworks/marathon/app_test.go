package marathon

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefinitionKeepsUnknownFieldsAndFillsDefaults(t *testing.T) {
	d, err := Decode([]byte(`{"id": "prod/web", "cmd": "serve", "fetch": [{"uri": "http://x/y.tgz"}], "acceptedResourceRoles": ["*"], "mem": 64}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.App()
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "/prod/web" || a.Instances != 1 || a.CPUs != 1 || a.Mem != 64 || a.BackoffFactor != 1.15 || a.KillSelection != KillYoungestFirst ||
		a.UpgradeStrategy != (UpgradeStrategy{1, 1}) || len(a.PortDefinitions) != 1 {
		t.Fatalf("typed view %+v", a)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	// A partial update changes just its fields; unknown fields survive.
	merged := d.Merge(Definition{"instances": json.RawMessage(`4`), "mem": json.RawMessage(`null`)})
	b, _ := json.Marshal(merged)
	if !strings.Contains(string(b), `"fetch":[{"uri":"http://x/y.tgz"}]`) || !strings.Contains(string(b), `"instances":4`) || strings.Contains(string(b), `"mem"`) {
		t.Fatalf("merged %s", b)
	}
	a2, _ := merged.App()
	if a2.Instances != 4 || a2.Mem != DefaultMem || a2.Cmd != "serve" {
		t.Fatalf("merged typed view %+v", a2)
	}
}

func TestValidationNamesEveryPath(t *testing.T) {
	d, err := Decode([]byte(`{
		"id": "/Bad_Id", "cpus": -1, "mem": -5, "instances": -2, "backoffFactor": 0.5,
		"upgradeStrategy": {"minimumHealthCapacity": 1.5, "maximumOverCapacity": -0.1},
		"killSelection": "RANDOM", "constraints": [["hostname", "UNIQUE", "x"], ["rack", "NEAR"]],
		"healthChecks": [{"protocol": "HTTP", "portIndex": 3}],
		"container": {"type": "DOCKER", "docker": {"image": "", "privileged": true}, "portMappings": [{"containerPort": 80, "protocol": "TCP"}]},
		"portDefinitions": [{"port": 0, "protocol": "icmp"}],
		"env": {"DB": {"secret": "missing"}}, "user": "no body"
	}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.App()
	if err != nil {
		t.Fatal(err)
	}
	err = a.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Message != "Object is not valid" {
		t.Fatalf("%v", err)
	}
	paths := map[string]bool{}
	for _, det := range ve.Details {
		paths[det.Path] = true
		if len(det.Errors) == 0 {
			t.Errorf("%s has no error text", det.Path)
		}
	}
	for _, want := range []string{"/id", "/cpus", "/mem", "/instances", "/backoffFactor", "/upgradeStrategy/minimumHealthCapacity",
		"/upgradeStrategy/maximumOverCapacity", "/killSelection", "/constraints(0)", "/constraints(1)", "/healthChecks(0)/portIndex",
		"/container/docker/image", "/container/portMappings(0)/protocol", "/portDefinitions(0)/protocol", "/env/DB", "/user"} {
		if !paths[want] {
			t.Errorf("no problem reported at %s; got %v", want, ve.Details)
		}
	}
	if _, err := Decode([]byte(`[1, 2]`)); err == nil {
		t.Error("a JSON array decoded as an app")
	}
	if _, err := Decode([]byte(`{"id": "a"} {"id": "b"}`)); err == nil {
		t.Error("two objects decoded as one app")
	}
}

func TestConstraints(t *testing.T) {
	h := func(host string, attrs ...string) Place {
		p := Place{Hostname: host, Attributes: map[string]string{}}
		for i := 0; i+1 < len(attrs); i += 2 {
			p.Attributes[attrs[i]] = attrs[i+1]
		}
		return p
	}
	placed := []Place{h("a", "rack", "r1"), h("b", "rack", "r1"), h("c", "rack", "r2")}
	for _, c := range []struct {
		constraint []string
		candidate  Place
		want       bool
	}{
		{[]string{"hostname", "UNIQUE"}, h("a"), false},
		{[]string{"hostname", "UNIQUE"}, h("d"), true},
		{[]string{"@hostname", "UNIQUE"}, h("d"), true},
		{[]string{"rack", "CLUSTER", "r1"}, h("d", "rack", "r1"), true},
		{[]string{"rack", "CLUSTER", "r1"}, h("d", "rack", "r3"), false},
		{[]string{"rack", "CLUSTER"}, h("d", "rack", "r1"), false}, // instances are on r1 and r2 already
		{[]string{"rack", "GROUP_BY"}, h("d", "rack", "r2"), true}, // r2 has fewer
		{[]string{"rack", "GROUP_BY"}, h("d", "rack", "r1"), false},
		{[]string{"rack", "GROUP_BY", "3"}, h("d", "rack", "r3"), true},
		{[]string{"rack", "GROUP_BY", "3"}, h("d", "rack", "r2"), false}, // r3 has none yet
		{[]string{"hostname", "LIKE", "[ab]"}, h("b"), true},
		{[]string{"hostname", "LIKE", "[ab]"}, h("bb"), false}, // the whole value must match
		{[]string{"hostname", "UNLIKE", "[ab]"}, h("c"), true},
		{[]string{"rack", "MAX_PER", "2"}, h("d", "rack", "r1"), false},
		{[]string{"rack", "MAX_PER", "2"}, h("d", "rack", "r2"), true},
		{[]string{"rack", "IS", "r2"}, h("d", "rack", "r2"), true},
		{[]string{"rack", "IS", "r2"}, h("d"), false}, // no such attribute
	} {
		con, err := ParseConstraint(c.constraint)
		if err != nil {
			t.Fatalf("%v: %v", c.constraint, err)
		}
		if got := con.Allows(c.candidate, placed); got != c.want {
			t.Errorf("%v on %+v: %v, want %v", c.constraint, c.candidate, got, c.want)
		}
	}
	for _, bad := range [][]string{{"hostname"}, {"hostname", "NEAR"}, {"rack", "LIKE"}, {"rack", "LIKE", "("}, {"rack", "MAX_PER", "0"}, {"", "UNIQUE"}, {"rack", "IS"}} {
		if _, err := ParseConstraint(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestExampleAppsRoundTrip: every example app decodes, validates, and comes back from its
// definition with every field it had.
func TestExampleAppsRoundTrip(t *testing.T) {
	files, err := filepath.Glob("../../examples/apps/*.json")
	if err != nil || len(files) < 3 {
		t.Fatalf("example apps: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, isGroup := d["apps"]; isGroup {
			var g groupDef
			if err := json.Unmarshal(b, &g); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var edits []appEdit
			var p problems
			flatten(g, "/", "", &edits, map[string]*groupRecord{}, &p)
			if err := p.err(); err != nil || len(edits) != len(g.Apps) {
				t.Fatalf("%s: %v (%d apps)", f, err, len(edits))
			}
			for _, e := range edits {
				def, _ := e.edit(nil)
				a, err := def.App()
				if err == nil {
					err = a.Validate()
				}
				if err != nil {
					t.Fatalf("%s: %s: %v", f, e.id, err)
				}
			}
			continue
		}
		a, err := d.App()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var orig, back map[string]any
		json.Unmarshal(b, &orig)
		out, _ := json.Marshal(d)
		json.Unmarshal(out, &back)
		if !reflect.DeepEqual(orig, back) {
			t.Fatalf("%s changed on the way through:\n%v\n%v", f, orig, back)
		}
	}
}
