package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/agora-sched/agora/pkg/hostaccess"
)

// appEdit is one app's part of a change: edit returns its new definition, nil to delete it.
// path prefixes its validation errors (a group's "/apps(2)").
type appEdit struct {
	id   string
	path string
	edit func(cur *appState) (Definition, error)
}

// groupRecord is what the store keeps of an explicit group: its dependencies (apps and groups
// it waits for).
type groupRecord struct {
	ID           string   `json:"id"`
	Dependencies []string `json:"dependencies,omitempty"`
	path         string   // where the request gave it ("" for its top), for errors; not stored
}

func groupKey(id string) string { return "group" + id }

// changeApps makes a change of one or more apps as one deployment, committed with every new
// definition and version: the apps go in steps ordered by their dependencies (an app starts
// after what it depends on is deployed; deletions go the other way). A change to an app a
// deployment is changing is refused (409) unless forced, which replaces that deployment.
// groups are explicit group records to write with it (nil values delete them).
//
// In order: what the change starts from is read under s.mu (changeBaseOf); the new
// definitions are checked and made (s.define) and the deployment planned (plan), all without
// the lock; the change is committed; then the state in memory takes it (st.apply) and its
// events are published.
func (s *Service) changeApps(ctx context.Context, force bool, edits []appEdit, groups map[string]*groupRecord) (changeResult, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	st := s.st
	if st == nil {
		s.mu.Unlock()
		return changeResult{}, errNotReady
	}
	base := st.changeBaseOf(edits)
	s.mu.Unlock()
	if len(base.blocking) > 0 && !force {
		return changeResult{}, &conflictError{ids: base.blocking}
	}
	for id, g := range groups {
		if g == nil {
			delete(base.knownGroups, id)
		} else {
			base.knownGroups[id] = *g
		}
	}

	ver := s.cfg.Clock.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	c := &change{}
	for _, id := range base.blocking {
		c.del(deploymentKey(id))
	}
	results, err := s.define(ctx, edits, base, ver, c)
	if err != nil {
		return changeResult{}, err
	}
	var problems problems
	nextApps := map[string]App{}
	for id, r := range results {
		if r.next != nil {
			nextApps[id] = r.next.app
		}
	}
	checkTargets(edits, base.curs, nextApps, base.allApps, base.knownGroups, groups, &problems)
	if err := problems.err(); err != nil {
		return changeResult{}, err
	}
	if cycle := dependencyCycle(base.allApps, base.knownGroups); cycle != nil {
		return changeResult{}, &ValidationError{Message: "Object is not valid", Details: []ErrorDetails{{Path: "/dependencies",
			Errors: []string{"dependency cycle: " + strings.Join(cycle, " → ")}}}}
	}
	if len(results) == 0 && len(groups) == 0 {
		return changeResult{}, &httpError{404, "nothing to change"}
	}
	for id, g := range groups {
		if g == nil {
			c.del(groupKey(id))
		} else {
			c.put(groupKey(id), g)
		}
	}
	dep := plan(newUUID(s), ver, base, results, groups)
	if len(dep.Steps) > 0 {
		c.put(deploymentKey(dep.ID), dep)
	}
	if err := commit(ctx, s.store, c); err != nil {
		return changeResult{}, err
	}

	// Committed: the state takes it, and its events go out before the loop can decide on the
	// new deployment (under s.mu), so that deployment_info comes before what follows it.
	s.mu.Lock()
	if s.st == st {
		a := st.apply(ctx, base, dep, results, groups, s.cfg.Role)
		s.announce(&a)
	}
	s.mu.Unlock()
	s.poke()
	s.logger.Info("deployment started", "deployment", dep.ID, "apps", strings.Join(dep.AffectedApps, ","), "steps", len(dep.Steps))
	return changeResult{DeploymentID: dep.ID, Version: ver}, nil
}

// changeBase is what a change starts from: the apps it edits as they are (curs), the
// deployments changing them (blocking), every app and group, and the tree before it.
type changeBase struct {
	curs        map[string]*appState
	blocking    []string
	allApps     map[string]App
	knownGroups map[string]groupRecord
	before      treeSide
}

// changeBaseOf reads what a change of edits starts from; the caller holds s.mu.
func (st *leaderState) changeBaseOf(edits []appEdit) changeBase {
	b := changeBase{curs: map[string]*appState{}, allApps: map[string]App{}, knownGroups: map[string]groupRecord{}}
	ids := map[string]bool{}
	for _, e := range edits {
		ids[e.id] = true
		if cur := st.apps[e.id]; cur != nil && !cur.deleted {
			b.curs[e.id] = cur
		}
	}
	for id, d := range st.deployments {
		if affects(d, ids) {
			b.blocking = append(b.blocking, id)
		}
	}
	sort.Strings(b.blocking)
	for id, as := range st.apps {
		if !as.deleted {
			b.allApps[id] = as.app
		}
	}
	for id, g := range st.groups {
		b.knownGroups[id] = g
	}
	b.before = treeSide{defs: map[string]Definition{}, versions: map[string]string{}, groups: maps.Clone(b.knownGroups)}
	for id, a := range b.allApps {
		b.before.versions[id] = a.Version
	}
	for id, cur := range b.curs {
		b.before.defs[id] = cur.def
	}
	return b
}

// appResult is one app's part of a change: its new state (nil: deleted) and its action.
type appResult struct {
	next   *appState
	action string
}

// define makes each edited app's new definition (of version ver) and adds it to c, checking it
// (Validate, the agents that could run it, its service ports); what is wrong is a
// ValidationError by path. base.allApps becomes the apps after the change.
func (s *Service) define(ctx context.Context, edits []appEdit, base changeBase, ver string, c *change) (map[string]appResult, error) {
	results := map[string]appResult{}
	var problems problems
	// Service ports: what the apps hold now (a deleted app's are free only after its change)
	// and what the new definitions fix are taken; each app's old ones are offered back to it.
	ports := newPortPool(s.cfg.ServicePorts)
	for _, a := range base.allApps {
		ports.hold(a.ServicePorts()...)
	}
	type valid struct {
		e   appEdit
		cur *appState
		def Definition
		a   App
	}
	var checked []valid
	for _, e := range edits {
		cur := base.curs[e.id]
		def, err := e.edit(cur)
		if err != nil {
			return nil, err
		}
		if def == nil {
			if cur == nil {
				continue // deleting what is not there: nothing to do
			}
			c.del(appKey(e.id))
			c.delPrefix(versionPrefix(e.id))
			results[e.id] = appResult{action: "StopApplication"}
			delete(base.allApps, e.id)
			continue
		}
		a, err := def.App()
		if err == nil {
			err = a.Validate()
		}
		if err == nil {
			err = checkResidentChange(a, cur, s.cfg.Role)
		}
		if err == nil && a.Instances > 0 {
			err = s.agentsCanRun(ctx, a)
		}
		if err != nil {
			problems.addError(e.path, err)
			continue
		}
		ports.claim(a.ServicePorts()...)
		checked = append(checked, valid{e: e, cur: cur, def: def, a: a})
	}
	for _, v := range checked {
		e, cur, a := v.e, v.cur, v.a
		var old []int
		if cur != nil {
			old = cur.app.ServicePorts()
		}
		assigned, at, err := ports.assign(a.ServicePorts(), old)
		if err != nil {
			problems.add(e.path+a.servicePortPath(at), "%s", err.Error())
			continue
		}
		next, def, action, err := nextApp(v.def, a, cur, assigned, ver)
		if err != nil {
			return nil, err
		}
		c.put(appKey(e.id), def)
		c.put(versionKey(e.id, ver), def)
		results[e.id] = appResult{next: next, action: action}
		base.allApps[e.id] = next.app
	}
	return results, problems.err()
}

// addError adds an app's validation error under path.
func (p *problems) addError(path string, err error) {
	var ve *ValidationError
	if errors.As(err, &ve) {
		for _, d := range ve.Details {
			p.add(path+d.Path, "%s", strings.Join(d.Errors, "; "))
		}
		return
	}
	var fe *fieldErr
	if errors.As(err, &fe) {
		p.add(path+fe.path, "%s", fe.msg)
		return
	}
	p.add(path+"/", "%s", err.Error())
}

// nextApp is an app's definition as stored after a change: its service ports assigned, the
// defaults filled in, version ver; a change of instances only is a scaling, which keeps the
// config version (old instances stay current).
func nextApp(def Definition, a App, cur *appState, assigned []int, ver string) (*appState, Definition, string, error) {
	def, err := def.withServicePorts(a, assigned)
	if err != nil {
		return nil, nil, "", err
	}
	def = def.withDefaults()
	def["id"], _ = json.Marshal(a.ID)
	vi := map[string]string{"lastScalingAt": ver, "lastConfigChangeAt": ver}
	action := "RestartApplication"
	switch {
	case cur == nil:
		action = "StartApplication"
	case sameConfig(cur.def, def) && configVersion(def) != "":
		action = "ScaleApplication"
		vi["lastConfigChangeAt"] = cur.configAt
	}
	def["version"], _ = json.Marshal(ver)
	def["versionInfo"], _ = json.Marshal(vi)
	next, err := appStateOf(mustJSON(def))
	return next, def, action, err
}

// plan is the deployment of a change, without I/O: starts and changes after what they depend
// on, stops before what they depend on, in steps; with the trees before and after it. One
// without steps changes no app (groups only) and is not recorded.
func plan(id, ver string, base changeBase, results map[string]appResult, groups map[string]*groupRecord) *Deployment {
	dep := &Deployment{ID: id, Version: ver}
	var changed []string
	for id := range results {
		changed = append(changed, id)
	}
	levels := orderByDependencies(changed, base.allApps, base.knownGroups, func(id string) bool { return results[id].action == "StopApplication" })
	for _, level := range levels {
		var step Step
		for _, id := range level {
			step.Actions = append(step.Actions, Action{Action: results[id].action, App: id})
			dep.AffectedApps = append(dep.AffectedApps, id)
		}
		dep.Steps = append(dep.Steps, step)
	}
	if len(dep.Steps) > 0 {
		dep.CurrentStep, dep.TotalSteps, dep.CurrentActions = 1, len(dep.Steps), dep.Steps[0].Actions
		after := treeSide{defs: map[string]Definition{}, versions: map[string]string{}, groups: base.knownGroups}
		for id, a := range base.allApps {
			after.versions[id] = a.Version
		}
		for id, r := range results {
			if r.next != nil {
				after.defs[id] = r.next.def
			}
		}
		dep.Original, dep.Target = planTrees(base.before, after, changed, sortedKeys(groups), ver)
	}
	return dep
}

// apply takes a committed change into the state in memory: superseded deployments go
// (deployment_failed), groups and apps change (api_post_event for each app written; a scaling
// keeps the app's backoff, a new config starts it over), and the deployment begins
// (deployment_info). The caller holds s.mu, and publishes the events before it lets go.
func (st *leaderState) apply(ctx context.Context, base changeBase, dep *Deployment, results map[string]appResult, groups map[string]*groupRecord, role string) actions {
	var a actions
	for _, id := range base.blocking {
		if old := st.deployments[id]; old != nil {
			a.publish(EventDeploymentFailed, map[string]any{"id": id, "plan": planWire(old, role), "reason": "superseded by deployment " + dep.ID})
		}
		delete(st.deployments, id)
	}
	for id, g := range groups {
		if g == nil {
			delete(st.groups, id)
		} else {
			st.groups[id] = *g
		}
	}
	if len(dep.Steps) > 0 {
		st.deployments[dep.ID] = dep
	}
	for id, r := range results {
		st.touch(id)
		cur := base.curs[id]
		switch {
		case r.next == nil:
			if cur != nil {
				cur.deleted = true
			}
		case cur != nil && r.action == "ScaleApplication":
			r.next.failures, r.next.failedAt, r.next.delayUntil, r.next.lastFail = cur.failures, cur.failedAt, cur.delayUntil, cur.lastFail
			st.apps[id] = r.next
		default:
			st.apps[id] = r.next // a new config: the backoff starts over
		}
		if r.next != nil {
			a.publish(EventAPIPost, apiPostEvent(ctx, appWire(r.next.def, r.next.app, role)))
		}
	}
	if len(dep.Steps) > 0 {
		a.publish(EventDeploymentInfo, map[string]any{"plan": planWire(dep, role), "currentStep": dep.Steps[0]})
	}
	return a
}

// checkTargets names what a change would leave ambiguous or waiting forever, by path: a new
// app whose id is a group's (apps are in it, or a group of that id is known) or lies inside
// another app's; and, for each app whose dependencies are new or changed (changed holds the
// created and changed apps) and each group of the request (reqGroups), a dependency on itself
// or on what is neither an app nor a group after the change. all and known are the apps and
// groups as they will be.
func checkTargets(edits []appEdit, curs map[string]*appState, changed map[string]App, all map[string]App, known map[string]groupRecord, reqGroups map[string]*groupRecord, p *problems) {
	ix := newAppIndex(all)
	// dependencies names each dependency of self (an app or a group) on itself or on nothing.
	dependencies := func(path, what, self string, deps []string) {
		for i, d := range deps {
			at := fmt.Sprintf("%s/dependencies(%d)", path, i)
			t := resolveID(self, d)
			_, isGroup := known[t]
			switch {
			case t == self:
				p.add(at, "%s is the %s itself: nothing can depend on itself", t, what)
			case !isGroup && len(ix.at(t)) == 0:
				p.add(at, "%s is neither an app nor a group, nor given in this request: the deployment would wait for it forever", t)
			}
		}
	}
	for _, e := range edits {
		a, ok := changed[e.id]
		if !ok {
			continue
		}
		cur := curs[e.id]
		if cur == nil {
			inside := slices.DeleteFunc(ix.at(e.id), func(id string) bool { return id == e.id })
			if _, isGroup := known[e.id]; isGroup || len(inside) > 0 {
				what := "a group"
				if len(inside) > 0 {
					what = "a group: the app " + inside[0] + " is in it"
				}
				p.add(e.path+"/id", "%s is %s; an app and a group cannot share an id", e.id, what)
			}
			for g := e.id; strings.Count(g, "/") > 1; {
				g = g[:strings.LastIndex(g, "/")]
				if _, isApp := all[g]; isApp {
					p.add(e.path+"/id", "%s would be inside the app %s; an app holds no others", e.id, g)
					break
				}
			}
		}
		if cur != nil && slices.Equal(cur.app.Dependencies, a.Dependencies) {
			continue // unchanged: what it waits for was judged when it was given
		}
		dependencies(e.path, "app", e.id, a.Dependencies)
	}
	for _, id := range sortedKeys(reqGroups) {
		if g := reqGroups[id]; g != nil {
			dependencies(g.path, "group", g.ID, g.Dependencies)
		}
	}
}

// resolveID makes a dependency absolute: relative ones are relative to the app's parent group.
func resolveID(base, dep string) string {
	if strings.HasPrefix(dep, "/") {
		return NormalizeID(dep)
	}
	parent := base[:strings.LastIndex(base, "/")+1]
	parts := []string{}
	for _, p := range strings.Split(strings.Trim(parent+dep, "/"), "/") {
		switch p {
		case "", ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			parts = append(parts, p)
		}
	}
	return "/" + strings.Join(parts, "/")
}

// appIndex finds the apps at or under an id in O(log n): the app ids, sorted.
type appIndex []string

func newAppIndex(apps map[string]App) appIndex { return appIndex(sortedKeys(apps)) }

// at lists the app id itself, if it is an app, and every app under it (id + "/..."): those sort
// together, between id+"/" and id+"0" ('0' follows '/').
func (ix appIndex) at(id string) []string {
	var out []string
	if i, ok := slices.BinarySearch(ix, id); ok {
		out = append(out, ix[i])
	}
	lo, _ := slices.BinarySearch(ix, id+"/")
	hi, _ := slices.BinarySearch(ix, id+"0")
	return append(out, ix[lo:hi]...)
}

// dependsOn lists the apps an app waits for: its own dependencies and its groups', each an app
// or every app of a group.
func dependsOn(id string, apps map[string]App, groups map[string]groupRecord, ix appIndex) []string {
	var targets []string
	for _, d := range apps[id].Dependencies {
		targets = append(targets, resolveID(id, d))
	}
	for g := id; strings.Contains(strings.TrimPrefix(g, "/"), "/"); {
		g = g[:strings.LastIndex(g, "/")]
		for _, d := range groups[g].Dependencies {
			targets = append(targets, resolveID(g, d))
		}
	}
	var out []string
	for _, t := range targets {
		for _, other := range ix.at(t) {
			if other != id {
				out = append(out, other)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// dependencyCycle finds a cycle among all apps' dependencies, or nil.
func dependencyCycle(apps map[string]App, groups map[string]groupRecord) []string {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	ix := newAppIndex(apps)
	var path []string
	var visit func(id string) []string
	visit = func(id string) []string {
		state[id] = onPath
		path = append(path, id)
		for _, d := range dependsOn(id, apps, groups, ix) {
			switch state[d] {
			case onPath:
				i := slices.Index(path, d)
				return append(slices.Clone(path[i:]), d)
			case unseen:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[id] = done
		return nil
	}
	for _, id := range ix {
		if state[id] == unseen {
			if c := visit(id); c != nil {
				return c
			}
		}
	}
	return nil
}

// orderByDependencies puts the changed apps in levels: an app's level comes after the levels
// of the changed apps it depends on; stops are ordered the other way round (dependants first).
func orderByDependencies(changed []string, apps map[string]App, groups map[string]groupRecord, stopping func(string) bool) [][]string {
	in := map[string]bool{}
	for _, id := range changed {
		in[id] = true
	}
	depth := map[string]int{}
	ix := newAppIndex(apps)
	var level func(id string, seen map[string]bool) int
	level = func(id string, seen map[string]bool) int {
		if d, ok := depth[id]; ok {
			return d
		}
		if seen[id] {
			return 0
		}
		seen[id] = true
		d := 0
		for _, dep := range dependsOn(id, apps, groups, ix) {
			if in[dep] {
				d = max(d, level(dep, seen)+1)
			}
		}
		depth[id] = d
		return d
	}
	maxDepth := 0
	for _, id := range changed {
		maxDepth = max(maxDepth, level(id, map[string]bool{}))
	}
	levels := make([][]string, maxDepth+1)
	for _, id := range changed {
		d := depth[id]
		if stopping(id) {
			d = maxDepth - d
		}
		levels[d] = append(levels[d], id)
	}
	var out [][]string
	for _, l := range levels {
		if len(l) > 0 {
			sort.Strings(l)
			out = append(out, l)
		}
	}
	return out
}

// heldByStep says whether an app waits for a later step of its deployment.
func (st *leaderState) heldByStep(appID string) bool {
	for _, d := range st.deployments {
		for i, step := range d.Steps {
			for _, a := range step.Actions {
				if a.App == appID {
					return i+1 > d.CurrentStep
				}
			}
		}
	}
	return false
}

// stepSettled says whether the apps of a deployment's current step have reached what it asked.
func (st *leaderState) stepSettled(d *Deployment) bool {
	if d.CurrentStep < 1 || d.CurrentStep > len(d.Steps) {
		return true
	}
	for _, a := range d.Steps[d.CurrentStep-1].Actions {
		if !st.appSettled(a.App) {
			return false
		}
	}
	return true
}

// agentsCanRun refuses an app whose needs no registered agent meets (privileged containers,
// root, host volumes): accepted, it would wait forever.
func (s *Service) agentsCanRun(ctx context.Context, a App) error {
	needs := a.Needs()
	if !needs.Privileged && !hostaccess.IsRoot(needs.User) && len(needs.Volumes) == 0 {
		return nil
	}
	agents, err := s.m.Agents(ctx)
	if err != nil {
		return err
	}
	var p problems
	for _, u := range needs.Nowhere(agents) {
		switch u.Part {
		case hostaccess.PartPrivileged:
			p.add("/container/docker/privileged", "%s", u.Why)
		case hostaccess.PartUser:
			p.add("/user", "%s", u.Why)
		case hostaccess.PartVolume:
			p.add(fmt.Sprintf("/container/volumes(%d)/hostPath", a.hostVolumeField(u.Index)), "%s", u.Why)
		default:
			p.add("/", "%s", u.Why)
		}
	}
	return p.err()
}
