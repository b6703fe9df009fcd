package marathon

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
)

// A deployment keeps, in its record in the replicated store, the root group as it was before
// the change (Original) and as the change makes it (Target), as Marathon's deployment plans do:
// a new leader has them as the old one had, and DELETE /v2/deployments/{id} reverts the change
// from them, as Marathon's revert does. Marathon 1.10 writes neither tree on the wire (its
// plans in events and in GET /v2/deployments are id, version and steps), and Agora neither.
//
// The trees hold what the change touches, not the whole tree: the apps it creates, changes or
// deletes (their stored definitions), the groups whose records it writes or deletes, and the
// groups on the way from the root to each of those, with their dependencies and versions; what
// it leaves alone is left out. Whole trees would grow with every app of the cluster, in every
// deployment record, rewritten at each of its steps and carried in every snapshot. Measured
// (TestPlanTreesStayBounded) on 500 apps of 0.85 KiB each in 50 groups: a scale of one app
// makes a record of 2.4 KiB, where whole trees would make it 856 KiB; a change of all 500 (a
// group's scaleBy) makes one of 925 KiB, about what the change commits beside it anyway (each
// app's new definition, twice: the app and its version).

// PlanGroup is a group of a deployment's original or target tree, in the shape GET /v2/groups
// shows a group: its id, its apps (their definitions as stored), its groups, its dependencies
// and its version (the newest of the apps under it; the target root's is the deployment's).
type PlanGroup struct {
	ID           string       `json:"id"`
	Apps         []Definition `json:"apps"`
	Groups       []*PlanGroup `json:"groups"`
	Dependencies []string     `json:"dependencies"`
	Version      string       `json:"version,omitempty"`
}

// treeSide is one side of a change, before or after, for planTree: the definitions of the apps
// the change touches (absent: not there on this side), the version of every app, and the
// group records.
type treeSide struct {
	defs     map[string]Definition
	versions map[string]string
	groups   map[string]groupRecord
}

// planTrees decides, without I/O, the original and target trees of a change that touches apps
// (created, changed or deleted) and writes or deletes the records of groups; ver is its version.
func planTrees(before, after treeSide, apps, groups []string, ver string) (original, target *PlanGroup) {
	apps = slices.Sorted(slices.Values(apps))
	var nodes []string
	for _, id := range apps {
		nodes = append(nodes, ancestors(id)...)
	}
	for _, id := range groups {
		nodes = append(nodes, id)
		nodes = append(nodes, ancestors(id)...)
	}
	sort.Strings(nodes)
	nodes = slices.Compact(nodes)
	original = before.tree(nodes, apps)
	target = after.tree(nodes, apps)
	target.Version = ver
	return original, target
}

// ancestors lists the groups an id is in, the root first: /a/b/c → /, /a, /a/b.
func ancestors(id string) []string {
	out := []string{"/"}
	for i := 1; i < len(id); i++ {
		if id[i] == '/' {
			out = append(out, id[:i])
		}
	}
	return out
}

// parentOf is the group an id is directly in.
func parentOf(id string) string {
	if i := strings.LastIndex(id, "/"); i > 0 {
		return id[:i]
	}
	return "/"
}

// tree builds the side's tree of the given groups (those that exist on this side: the root,
// or a group with a record, apps or recorded groups under it) with the given apps (those this
// side has).
func (s treeSide) tree(nodes, apps []string) *PlanGroup {
	ix := appIndex(sortedKeys(s.versions))
	gix := appIndex(sortedKeys(s.groups)) // sorted ids, as apps' are: at finds those under an id
	byID := map[string]*PlanGroup{}
	for _, id := range nodes { // sorted: a parent comes before what is in it
		rec := s.groups[id]
		under := ix.at(id)
		if id != "/" && len(under) == 0 && len(gix.at(id)) == 0 {
			continue
		}
		if id == "/" {
			under = ix
		}
		g := &PlanGroup{ID: id, Apps: []Definition{}, Groups: []*PlanGroup{}, Dependencies: append([]string{}, rec.Dependencies...)}
		for _, appID := range under {
			g.Version = max(g.Version, s.versions[appID])
		}
		byID[id] = g
		if id != "/" {
			if p := byID[parentOf(id)]; p != nil {
				p.Groups = append(p.Groups, g)
			}
		}
	}
	for _, id := range apps {
		if def, ok := s.defs[id]; ok {
			if p := byID[parentOf(id)]; p != nil {
				p.Apps = append(p.Apps, def)
			}
		}
	}
	return byID["/"]
}

// planApps lists the apps of a tree by id.
func (g *PlanGroup) planApps(out map[string]Definition) {
	if g == nil {
		return
	}
	for _, def := range g.Apps {
		var id string
		json.Unmarshal(def["id"], &id)
		out[id] = def
	}
	for _, sub := range g.Groups {
		sub.planApps(out)
	}
}

// planGroups lists the groups of a tree (the root aside) by id.
func (g *PlanGroup) planGroups(out map[string]*PlanGroup) {
	if g == nil {
		return
	}
	for _, sub := range g.Groups {
		out[sub.ID] = sub
		sub.planGroups(out)
	}
}

// errNoTrees refuses to revert a deployment whose record keeps no trees (written by a build
// before they were kept): what it changed from is not known.
var errNoTrees = &httpError{http.StatusConflict, "this deployment was started by an older Agora and keeps no record of what it changed from: cancel it with ?force=true and roll its apps back with PUT /v2/apps/{id} {\"version\": ...}"}

// revertChange decides, without I/O, the change that reverts a deployment, as Marathon's revert
// does (the reverse of what its trees say, laid over what is now): an app it changed or deleted
// gets its original definition back, one it created goes; a group whose dependencies it changed
// gets back those it removed and loses those it added; a group it created goes once it is as
// the deployment left it (else it only loses the dependencies the deployment gave it); a group
// it removed comes back where it had dependencies or nothing in it (otherwise its apps, back,
// bring it). current is every group record now.
func revertChange(d *Deployment, current map[string]groupRecord) ([]appEdit, map[string]*groupRecord, error) {
	if d.Original == nil || d.Target == nil {
		return nil, nil, errNoTrees
	}
	was, will := map[string]Definition{}, map[string]Definition{}
	d.Original.planApps(was)
	d.Target.planApps(will)
	var edits []appEdit
	for _, id := range sortedKeys(union(was, will)) {
		def, ok := was[id]
		if !ok {
			edits = append(edits, appEdit{id: id, edit: func(*appState) (Definition, error) { return nil, nil }})
			continue
		}
		edits = append(edits, appEdit{id: id, edit: func(*appState) (Definition, error) { return def.Merge(nil), nil }})
	}
	oldGroups, newGroups := map[string]*PlanGroup{}, map[string]*PlanGroup{}
	d.Original.planGroups(oldGroups)
	d.Target.planGroups(newGroups)
	groups := map[string]*groupRecord{}
	for _, id := range sortedKeys(union(oldGroups, newGroups)) {
		o, n := oldGroups[id], newGroups[id]
		cur, has := current[id]
		switch {
		case o != nil && n != nil:
			removed, added := minus(o.Dependencies, n.Dependencies), minus(n.Dependencies, o.Dependencies)
			if len(removed) == 0 && len(added) == 0 {
				continue
			}
			deps := minus(append(append([]string{}, cur.Dependencies...), removed...), added)
			groups[id] = &groupRecord{ID: id, Dependencies: slices.Compact(deps)}
		case o != nil: // the deployment removed it
			if len(o.Dependencies) > 0 || len(o.Apps) == 0 && len(o.Groups) == 0 {
				groups[id] = &groupRecord{ID: id, Dependencies: append([]string{}, o.Dependencies...)}
			}
		case has && slices.Equal(cur.Dependencies, n.Dependencies): // it created it, as it is
			groups[id] = nil
		case has:
			groups[id] = &groupRecord{ID: id, Dependencies: minus(cur.Dependencies, n.Dependencies)}
		}
	}
	return edits, groups, nil
}

// union is the keys of a and b, as a set.
func union[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// minus is a without what b has, sorted.
func minus(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
