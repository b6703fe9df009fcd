package marathon

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// side is a treeSide from app id → cmd@version (every app there) and group id → dependencies.
func side(apps map[string]string, groups map[string][]string) treeSide {
	s := treeSide{defs: map[string]Definition{}, versions: map[string]string{}, groups: map[string]groupRecord{}}
	for id, cv := range apps {
		cmd, ver, _ := strings.Cut(cv, "@")
		s.defs[id] = Definition{"id": mustJSON(id), "cmd": mustJSON(cmd), "version": mustJSON(ver)}
		s.versions[id] = ver
	}
	for id, deps := range groups {
		s.groups[id] = groupRecord{ID: id, Dependencies: deps}
	}
	return s
}

// outline writes a tree as one line: each group with its version, dependencies and apps (id=cmd).
func outline(g *PlanGroup) string {
	if g == nil {
		return "nil"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%s deps%v [", g.ID, g.Version, g.Dependencies)
	for i, def := range g.Apps {
		var id, cmd string
		json.Unmarshal(def["id"], &id)
		json.Unmarshal(def["cmd"], &cmd)
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", id, cmd)
	}
	b.WriteString("]")
	for _, sub := range g.Groups {
		b.WriteString(" {" + outline(sub) + "}")
	}
	return b.String()
}

// revertOutline writes a revert as a line: each app edit (id=cmd, or id gone) and group record.
func revertOutline(t *testing.T, edits []appEdit, groups map[string]*groupRecord) string {
	t.Helper()
	var parts []string
	for _, e := range edits {
		def, err := e.edit(nil)
		if err != nil {
			t.Fatal(err)
		}
		if def == nil {
			parts = append(parts, e.id+" gone")
			continue
		}
		var cmd string
		json.Unmarshal(def["cmd"], &cmd)
		parts = append(parts, e.id+"="+cmd)
	}
	for _, id := range sortedKeys(groups) {
		if g := groups[id]; g == nil {
			parts = append(parts, "group "+id+" gone")
		} else {
			parts = append(parts, fmt.Sprintf("group %s deps%v", id, g.Dependencies))
		}
	}
	return strings.Join(parts, "; ")
}

// TestPlanTreesAndTheirRevert: the trees of a change hold the apps it touches and the groups on
// their way (with what is untouched left out), and reverting undoes what they say, as
// Marathon's revert does, over the groups as they are now.
func TestPlanTreesAndTheirRevert(t *testing.T) {
	for _, tc := range []struct {
		name             string
		before, after    treeSide
		apps, groups     []string
		ver              string // the change's
		original, target string
		now              map[string][]string // group records when the revert is asked (nil: as after)
		revert           string
	}{{
		name: "a group changed: an app changed, one deleted, one created, dependencies added; a new group",
		before: side(map[string]string{"/base/db": "db@v0", "/shop/web": "serve v1@v1", "/shop/old": "old@v1", "/shop/deep/y": "y@v1", "/other/x": "x@v1"},
			map[string][]string{"/shop": nil}),
		after: side(map[string]string{"/base/db": "db@v0", "/shop/web": "serve v2@v2", "/shop/new": "new@v2", "/shop/deep/y": "y@v1", "/other/x": "x@v1", "/fresh/app": "app@v2"},
			map[string][]string{"/shop": {"/base"}, "/fresh": {"/base"}}),
		apps: []string{"/shop/web", "/shop/old", "/shop/new", "/fresh/app"}, groups: []string{"/shop", "/fresh"}, ver: "v2",
		original: "/@v1 deps[] [] {/shop@v1 deps[] [/shop/old=old /shop/web=serve v1]}",
		target:   "/@v2 deps[] [] {/fresh@v2 deps[/base] [/fresh/app=app]} {/shop@v2 deps[/base] [/shop/new=new /shop/web=serve v2]}",
		revert:   "/fresh/app gone; /shop/new gone; /shop/old=old; /shop/web=serve v1; group /fresh gone; group /shop deps[]",
	}, {
		name:   "a scale at the root",
		before: side(map[string]string{"/web": "serve@v1", "/db": "db@v3"}, nil),
		after:  side(map[string]string{"/web": "serve@v4", "/db": "db@v3"}, nil),
		apps:   []string{"/web"}, ver: "v4", original: "/@v3 deps[] [/web=serve]", target: "/@v4 deps[] [/web=serve]",
		revert: "/web=serve",
	}, {
		name: "groups deleted: one with dependencies, one empty, one its apps bring back",
		before: side(map[string]string{"/gone/a": "a@v1", "/implied/b": "b@v1", "/stay": "s@v1"},
			map[string][]string{"/gone": {"/stay"}, "/empty": nil}),
		after: side(map[string]string{"/stay": "s@v1"}, nil),
		apps:  []string{"/gone/a", "/implied/b"}, groups: []string{"/gone", "/empty"}, ver: "v9",
		original: "/@v1 deps[] [] {/empty@ deps[] []} {/gone@v1 deps[/stay] [/gone/a=a]} {/implied@v1 deps[] [/implied/b=b]}",
		target:   "/@v9 deps[] []",
		revert:   "/gone/a=a; /implied/b=b; group /empty deps[]; group /gone deps[/stay]",
	}, {
		name:   "dependencies changed since: only the deployment's own go back",
		before: side(map[string]string{"/g/a": "a@v1", "/x": "x@v1", "/y": "y@v1"}, map[string][]string{"/g": {"/x"}}),
		after:  side(map[string]string{"/g/a": "a@v1", "/x": "x@v1", "/y": "y@v1", "/n/b": "b@v2"}, map[string][]string{"/g": {"/y"}, "/n": {"/x"}}),
		apps:   []string{"/n/b"}, groups: []string{"/g", "/n"}, ver: "v2",
		original: "/@v1 deps[] [] {/g@v1 deps[/x] []}",
		target:   "/@v2 deps[] [] {/g@v1 deps[/y] []} {/n@v2 deps[/x] [/n/b=b]}",
		now:      map[string][]string{"/g": {"/y", "/z"}, "/n": {"/x", "/z"}},
		revert:   "/n/b gone; group /g deps[/x /z]; group /n deps[/z]",
	}, {
		name:   "a group given with nothing in it, inside one that has no record",
		before: side(map[string]string{"/x": "x@v1"}, nil),
		after:  side(map[string]string{"/x": "x@v1"}, map[string][]string{"/a/b": {"/x"}}),
		groups: []string{"/a/b"}, ver: "v2",
		original: "/@v1 deps[] []",
		target:   "/@v2 deps[] [] {/a@ deps[] [] {/a/b@ deps[/x] []}}",
		revert:   "group /a/b gone",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			// Only the touched apps' definitions are given to planTrees, as changeApps gives them.
			for _, s := range []*treeSide{&tc.before, &tc.after} {
				touched := map[string]Definition{}
				for _, id := range tc.apps {
					if def, ok := s.defs[id]; ok {
						touched[id] = def
					}
				}
				s.defs = touched
			}
			original, target := planTrees(tc.before, tc.after, tc.apps, tc.groups, tc.ver)
			if got := outline(original); got != tc.original {
				t.Errorf("original:\n got %s\nwant %s", got, tc.original)
			}
			if got := outline(target); got != tc.target {
				t.Errorf("target:\n got %s\nwant %s", got, tc.target)
			}
			// Through the store and back, as a new leader reads it.
			var d Deployment
			if err := json.Unmarshal(mustJSON(&Deployment{ID: "d", Original: original, Target: target}), &d); err != nil {
				t.Fatal(err)
			}
			now := tc.after.groups
			if tc.now != nil {
				now = side(nil, tc.now).groups
			}
			edits, groups, err := revertChange(&d, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := revertOutline(t, edits, groups); got != tc.revert {
				t.Errorf("revert:\n got %s\nwant %s", got, tc.revert)
			}
		})
	}
}

// TestRevertWithoutTreesIsRefused: a deployment recorded before the trees were kept cannot be
// reverted (what it changed from is unknown): a 409 that says what to do instead.
func TestRevertWithoutTreesIsRefused(t *testing.T) {
	_, _, err := revertChange(&Deployment{ID: "d", AffectedApps: []string{"/a"}}, nil)
	var he *httpError
	if !errors.As(err, &he) || he.code != 409 || !strings.Contains(he.msg, "?force=true") {
		t.Fatalf("revert without trees: %v", err)
	}
}

// TestPlanTreesStayBounded measures a deployment's record on a cluster of 500 apps (about 0.8
// KiB each, in 50 groups): with the trees of what a change touches, one app changed makes a
// record of a few KiB, however many apps there are; whole trees would carry every app twice.
func TestPlanTreesStayBounded(t *testing.T) {
	before, after := treeSide{defs: map[string]Definition{}, versions: map[string]string{}, groups: map[string]groupRecord{}},
		treeSide{defs: map[string]Definition{}, versions: map[string]string{}, groups: map[string]groupRecord{}}
	var all []string
	for i := range 500 {
		id := fmt.Sprintf("/team-%02d/service-%03d", i%50, i)
		def, err := Decode([]byte(fmt.Sprintf(`{"id": %q, "instances": 3, "cpus": 0.5, "mem": 512, "disk": 0,
			"container": {"type": "DOCKER", "docker": {"image": "registry.example.com/team-%02d/service-%03d:1.4.%d"}},
			"args": ["--listen", ":8080", "--log-level", "info"],
			"env": {"SERVICE_NAME": "service-%03d", "REGION": "eu-west-1", "DB_URL": "postgres://db.team-%02d.internal:5432/app"},
			"labels": {"team": "team-%02d", "HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "service-%03d.example.com"},
			"portDefinitions": [{"port": %d, "protocol": "tcp", "name": "http"}],
			"healthChecks": [{"protocol": "MESOS_HTTP", "path": "/healthz", "portIndex": 0, "intervalSeconds": 10, "timeoutSeconds": 5}],
			"constraints": [["hostname", "UNIQUE"]], "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
			"version": "2026-03-01T08:00:00.000Z",
			"versionInfo": {"lastScalingAt": "2026-03-01T08:00:00.000Z", "lastConfigChangeAt": "2026-03-01T08:00:00.000Z"}}`,
			id, i%50, i, i%10, i, i%50, i%50, i, 10000+i)))
		if err != nil {
			t.Fatal(err)
		}
		before.defs[id], after.defs[id] = def, def
		before.versions[id], after.versions[id] = "2026-03-01T08:00:00.000Z", "2026-03-01T08:00:00.000Z"
		all = append(all, id)
	}
	for i := range 50 {
		g := fmt.Sprintf("/team-%02d", i)
		before.groups[g], after.groups[g] = groupRecord{ID: g, Dependencies: []string{"/platform"}}, groupRecord{ID: g, Dependencies: []string{"/platform"}}
	}
	record := func(apps []string) int {
		dep := &Deployment{ID: "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43", Version: "2026-03-01T09:00:00.000Z", Steps: []Step{{}}}
		for _, id := range apps { // one step, as a group's scaleBy makes it
			dep.AffectedApps = append(dep.AffectedApps, id)
			dep.Steps[0].Actions = append(dep.Steps[0].Actions, Action{Action: "ScaleApplication", App: id})
		}
		dep.CurrentActions, dep.CurrentStep, dep.TotalSteps = dep.Steps[0].Actions, 1, 1
		dep.Original, dep.Target = planTrees(before, after, apps, nil, dep.Version)
		return len(mustJSON(dep))
	}
	one, every := record(all[:1]), record(all)
	// Whole trees: every app in both, for a change of one.
	whole := func() int {
		dep := &Deployment{ID: "5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43", Version: "2026-03-01T09:00:00.000Z",
			AffectedApps: all[:1], Steps: []Step{{Actions: []Action{{Action: "ScaleApplication", App: all[0]}}}}, CurrentStep: 1, TotalSteps: 1}
		dep.Original, _ = planTrees(before, after, all, nil, dep.Version)
		_, dep.Target = planTrees(before, after, all, nil, dep.Version)
		return len(mustJSON(dep))
	}()
	appSize := len(mustJSON(before.defs[all[0]]))
	t.Logf("500 apps of %d B in 50 groups: a deployment record is %.1f KiB for one app changed, %.1f KiB for all 500; with whole trees %.1f KiB",
		appSize, float64(one)/1024, float64(every)/1024, float64(whole)/1024)
	if one > 4*appSize+1024 {
		t.Errorf("one app changed makes a record of %d B: more than the app twice and its groups", one)
	}
	if whole < 100*one {
		t.Errorf("whole trees (%d B) are not much more than the touched ones (%d B): the measure is off", whole, one)
	}
}
