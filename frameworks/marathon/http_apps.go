package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/endpoints"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

func (s *Service) createApp(w http.ResponseWriter, r *http.Request) {
	def, ok := readDefinition(w, r)
	if !ok {
		return
	}
	a, err := def.App()
	if err != nil {
		path, msg := "/", err.Error()
		if fe := (*fieldErr)(nil); errors.As(err, &fe) {
			path, msg = fe.path, fe.msg // a field of the wrong form, named
		}
		httpjson.Write(w, http.StatusUnprocessableEntity, ValidationError{Message: "Object is not valid", Details: []ErrorDetails{{Path: path, Errors: []string{msg}}}})
		return
	}
	res, err := s.changeApp(r.Context(), a.ID, forced(r), func(cur *appState) (Definition, error) {
		if cur != nil {
			return nil, &httpError{http.StatusConflict, "An app with id [" + a.ID + "] already exists."}
		}
		return def, nil
	})
	if err != nil {
		writeChangeError(w, err)
		return
	}
	setDeploymentHeader(w, res)
	w.Header().Set("Location", "/v2/apps"+a.ID)
	s.mu.Lock()
	body := s.appJSONLocked(s.st, s.st.apps[a.ID], embedOf(r), "")
	s.mu.Unlock()
	httpjson.Write(w, http.StatusCreated, body)
}

// splitAppPath splits /v2/apps/{path...} into the app id and what follows it (tasks,
// tasks/{id}, versions, versions/{v}, restart).
func splitAppPath(p string) (appID, sub, arg string) {
	p = "/" + strings.Trim(p, "/")
	for _, suffix := range []string{"/tasks", "/versions"} {
		if i := strings.LastIndex(p, suffix+"/"); i > 0 {
			return p[:i], suffix[1:], p[i+len(suffix)+1:]
		}
		if strings.HasSuffix(p, suffix) && len(p) > len(suffix) {
			return strings.TrimSuffix(p, suffix), suffix[1:], ""
		}
	}
	if strings.HasSuffix(p, "/restart") && len(p) > len("/restart") {
		return strings.TrimSuffix(p, "/restart"), "restart", ""
	}
	return p, "", ""
}

func (s *Service) appGet(w http.ResponseWriter, r *http.Request) {
	appID, sub, arg := splitAppPath(r.PathValue("path"))
	silent := ""
	if sub == "" {
		silent = frameworks.SilentAgents(r.Context(), s.m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	as := st.apps[appID]
	if sub == "versions" {
		s.versions(w, r, appID, arg)
		return
	}
	if as == nil || as.deleted {
		marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist")
		return
	}
	switch sub {
	case "tasks":
		if endpoints.WantsText(r) {
			s.tasksText(w, st, []string{appID})
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"tasks": s.tasksJSONLocked(st, appID)})
	case "":
		// One app comes, as Marathon's does, with its tasks and last failure whatever embed says.
		embed := embedOf(r)
		embed["tasks"], embed["lastTaskFailure"] = true, true
		httpjson.Write(w, http.StatusOK, map[string]any{"app": s.appJSONLocked(st, as, embed, silent)})
	default:
		marathonError(w, http.StatusNotFound, "no such endpoint")
	}
}

// versions answers /v2/apps/{id}/versions[/{version}] from the store.
func (s *Service) versions(w http.ResponseWriter, r *http.Request, appID, v string) {
	view, err := s.store.View(r.Context(), raft.Stale)
	if err != nil {
		marathonError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if v != "" {
		data, ok := view.Get(versionKey(appID, v))
		if !ok {
			marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist in version "+v)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
		return
	}
	var list []string
	view.List(versionPrefix(appID), func(key string, _ []byte) bool {
		list = append(list, strings.TrimPrefix(key, versionPrefix(appID)))
		return true
	})
	if len(list) == 0 {
		marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist")
		return
	}
	sort.Sort(sort.Reverse(sort.StringSlice(list)))
	httpjson.Write(w, http.StatusOK, map[string]any{"versions": list})
}

func (s *Service) appPut(w http.ResponseWriter, r *http.Request) {
	appID, sub, _ := splitAppPath(r.PathValue("path"))
	if sub != "" {
		marathonError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+sub)
		return
	}
	patch, ok := readDefinition(w, r)
	if !ok {
		return
	}
	if raw, ok := patch["id"]; ok {
		var id string
		if json.Unmarshal(raw, &id) != nil || NormalizeID(id) != appID {
			httpjson.Write(w, http.StatusUnprocessableEntity, ValidationError{Message: "Object is not valid", Details: []ErrorDetails{{Path: "/id", Errors: []string{"the id in the body differs from the id in the path " + appID}}}})
			return
		}
	}
	rollback, ok := s.rollbackDefinition(w, r, appID, patch)
	if !ok {
		return
	}
	created, partial := false, r.Method == http.MethodPatch || partialUpdate(r)
	res, err := s.changeApp(r.Context(), appID, forced(r), func(cur *appState) (Definition, error) {
		if rollback != nil {
			if cur == nil {
				return nil, &httpError{http.StatusNotFound, "App '" + appID + "' does not exist"}
			}
			return rollback, nil
		}
		if cur == nil {
			if r.Method == http.MethodPatch {
				return nil, &httpError{http.StatusNotFound, "App '" + appID + "' does not exist"}
			}
			created = true
			d := patch.Merge(nil)
			d["id"], _ = json.Marshal(appID)
			return d, nil
		}
		if !partial {
			d := patch.Merge(nil)
			d["id"], _ = json.Marshal(appID)
			return d, nil
		}
		return cur.def.Merge(patch), nil
	})
	if err != nil {
		writeChangeError(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeResult(w, code, res)
}

// rollbackDefinition reads Marathon's rollback, a PUT of {"version": V}: the app's definition
// becomes the one it had in version V (instances included), as a new version. It answers nil
// for any other change, and false after writing an error (422 for a version that is not a
// string, 404 for one the app never had).
func (s *Service) rollbackDefinition(w http.ResponseWriter, r *http.Request, appID string, patch Definition) (Definition, bool) {
	raw, ok := patch["version"]
	if !ok {
		return nil, true
	}
	var v string
	if json.Unmarshal(raw, &v) != nil || v == "" {
		httpjson.Write(w, http.StatusUnprocessableEntity, ValidationError{Message: "Object is not valid", Details: []ErrorDetails{{Path: "/version", Errors: []string{"must be one of the app's versions (GET /v2/apps" + appID + "/versions)"}}}})
		return nil, false
	}
	view, err := s.store.View(r.Context(), raft.Stale)
	if err != nil {
		marathonError(w, http.StatusServiceUnavailable, err.Error())
		return nil, false
	}
	data, found := view.Get(versionKey(appID, v))
	if !found {
		marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist in version "+v)
		return nil, false
	}
	old, err := Decode(data)
	if err != nil {
		marathonError(w, http.StatusInternalServerError, "stored version "+v+" of "+appID+": "+err.Error())
		return nil, false
	}
	delete(old, "version")
	delete(old, "versionInfo")
	return old, true
}

func (s *Service) appPost(w http.ResponseWriter, r *http.Request) {
	appID, sub, _ := splitAppPath(r.PathValue("path"))
	if sub != "restart" {
		marathonError(w, http.StatusNotFound, "no such endpoint: POST /v2/apps"+r.PathValue("path"))
		return
	}
	res, err := s.changeApp(r.Context(), appID, forced(r), func(cur *appState) (Definition, error) {
		if cur == nil {
			return nil, &httpError{http.StatusNotFound, "App '" + appID + "' does not exist"}
		}
		d := cur.def.Merge(nil)
		d["versionInfo"] = json.RawMessage(`{}`) // a restart is a config change without one
		return d, nil
	})
	if err != nil {
		writeChangeError(w, err)
		return
	}
	writeResult(w, http.StatusOK, res)
}

func (s *Service) appDelete(w http.ResponseWriter, r *http.Request) {
	appID, sub, arg := splitAppPath(r.PathValue("path"))
	switch sub {
	case "":
		res, err := s.changeApp(r.Context(), appID, forced(r), func(cur *appState) (Definition, error) {
			if cur == nil {
				return nil, &httpError{http.StatusNotFound, "App '" + appID + "' does not exist"}
			}
			return nil, nil // nil: delete
		})
		if err != nil {
			writeChangeError(w, err)
			return
		}
		writeResult(w, http.StatusOK, res)
	case "tasks":
		var ids []string
		wipe := queryBool(r, "wipe")
		s.mu.Lock()
		if s.st != nil {
			for _, in := range s.st.appInstances(appID) {
				if arg == "" || in.rec.ID == arg {
					ids = append(ids, in.rec.ID)
				}
			}
			// A suspended instance is named by the id it is listed by; all of them are wiped
			// with the app's tasks.
			for _, res := range s.st.suspended(appID) {
				if arg == res.shownID() || arg == res.ID || arg == "" && wipe {
					ids = append(ids, res.shownID())
				}
			}
		}
		s.mu.Unlock()
		if arg != "" && len(ids) == 0 {
			marathonError(w, http.StatusNotFound, "Task '"+arg+"' does not exist")
			return
		}
		killed, res, err := s.killInstances(r.Context(), ids, queryBool(r, "scale"), wipe, forced(r))
		if err != nil {
			writeChangeError(w, err)
			return
		}
		if queryBool(r, "scale") {
			writeResult(w, http.StatusOK, res)
			return
		}
		if arg != "" {
			httpjson.Write(w, http.StatusOK, map[string]any{"task": killed[0]})
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"tasks": killed})
	default:
		marathonError(w, http.StatusMethodNotAllowed, "DELETE is not allowed on "+sub)
	}
}

// changeApp makes one change of one app as a deployment (see changeApps).
func (s *Service) changeApp(ctx context.Context, appID string, force bool, edit func(cur *appState) (Definition, error)) (changeResult, error) {
	return s.changeApps(ctx, force, []appEdit{{id: appID, edit: edit}}, nil)
}

// sameConfig says whether two definitions differ in nothing but instances and versions.
func sameConfig(a, b Definition) bool {
	strip := func(d Definition) Definition {
		out := d.withDefaults()
		for _, k := range []string{"instances", "version", "versionInfo"} {
			delete(out, k)
		}
		return out
	}
	return string(mustJSON(strip(a))) == string(mustJSON(strip(b)))
}

func (s *Service) listApps(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	embed := embedOf(r)
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	apps := []map[string]any{}
	for _, id := range sortedKeys(st.apps) {
		as := st.apps[id]
		if as.deleted {
			continue
		}
		if f := q.Get("id"); f != "" && !strings.Contains(as.app.ID, f) {
			continue
		}
		if f := q.Get("cmd"); f != "" && !strings.Contains(as.app.Cmd, f) {
			continue
		}
		if f := q.Get("label"); f != "" && !matchLabel(as.app.Labels, f) {
			continue
		}
		apps = append(apps, s.appJSONLocked(st, as, embed, silent))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"apps": apps})
}

// matchLabel reads Marathon's label selector: "key", "key==value" or "key!=value".
func matchLabel(labels map[string]string, sel string) bool {
	if k, v, ok := strings.Cut(sel, "!="); ok {
		return labels[strings.TrimSpace(k)] != strings.TrimSpace(v)
	}
	if k, v, ok := strings.Cut(sel, "=="); ok {
		got, has := labels[strings.TrimSpace(k)]
		return has && got == strings.TrimSpace(v)
	}
	_, has := labels[strings.TrimSpace(sel)]
	return has
}

// appJSONLocked is an app as Marathon shows it: its definition with counts and deployments,
// and the embeds asked for (tasks, lastTaskFailure, readiness, taskStats as Marathon's
// tasksStats). Agora adds waitingReason while the app waits for instances to start and
// something holds them (see waitingReasonLocked; silent is which agents make no offers).
func (s *Service) appJSONLocked(st *leaderState, as *appState, embed map[string]bool, silent string) map[string]any {
	out := appWire(as.def.withDefaults(), as.app, s.cfg.Role)
	out["ports"] = append([]int{}, as.app.ServicePorts()...) // Marathon's older list of them
	insts := st.appInstances(as.app.ID)
	c := countTasks(insts)
	out["tasksStaged"], out["tasksRunning"], out["tasksHealthy"], out["tasksUnhealthy"] = c.Staged, c.Running, c.Healthy, c.Unhealthy
	deps := []map[string]string{}
	for _, id := range sortedKeys(st.deployments) {
		for _, a := range st.deployments[id].AffectedApps {
			if a == as.app.ID {
				deps = append(deps, map[string]string{"id": id})
			}
		}
	}
	out["deployments"] = deps
	if embed["tasks"] {
		out["tasks"] = s.tasksJSONLocked(st, as.app.ID)
	}
	if embed["lastTaskFailure"] && as.lastFail != nil {
		out["lastTaskFailure"] = taskFailureWireOf(as.lastFail)
	}
	if embed["readiness"] && len(as.app.ReadinessChecks) > 0 {
		results := []map[string]any{}
		for _, in := range insts {
			for _, rc := range as.app.ReadinessChecks {
				results = append(results, map[string]any{"name": rc.Name, "taskId": in.rec.ID, "ready": in.ready})
			}
		}
		out["readinessCheckResults"] = results
	}
	now := s.cfg.Clock.Now()
	if embed["taskStats"] {
		out["tasksStats"] = tasksStatsOf(as, insts, now)
	}
	if why := waitingReasonLocked(as, now, silent); why != "" {
		out["waitingReason"] = why
	}
	return out
}

// taskCounts are Marathon's counts of an app's tasks.
type taskCounts struct {
	Staged    int `json:"staged"`
	Running   int `json:"running"`
	Healthy   int `json:"healthy"`
	Unhealthy int `json:"unhealthy"`
}

func countTasks(insts []*instance) taskCounts {
	var c taskCounts
	for _, in := range insts {
		switch in.state {
		case task.Running:
			c.Running++
			if in.healthy != nil {
				if *in.healthy {
					c.Healthy++
				} else {
					c.Unhealthy++
				}
			}
		case task.Staging, task.Starting:
			c.Staged++
		}
	}
	return c
}

// taskStatsJSON is Marathon's {"stats": {"counts", "lifeTime"}}; lifeTime only when some task
// runs.
type taskStatsJSON struct {
	Stats struct {
		Counts   taskCounts `json:"counts"`
		LifeTime *struct {
			AverageSeconds float64 `json:"averageSeconds"`
			MedianSeconds  float64 `json:"medianSeconds"`
		} `json:"lifeTime,omitempty"`
	} `json:"stats"`
}

// tasksStatsOf is Marathon's tasksStats (embed=apps.taskStats): counts and life times of the
// app's tasks, of all of them and of those with the latest config, an outdated one, or started
// after the last scaling (by when they were staged: Agora keeps an instance's config version,
// not the app version it was launched at). A group without tasks is left out.
func tasksStatsOf(as *appState, insts []*instance, now time.Time) map[string]*taskStatsJSON {
	stats := func(keep func(*instance) bool) *taskStatsJSON {
		var some []*instance
		var lives []float64
		for _, in := range insts {
			if !keep(in) {
				continue
			}
			some = append(some, in)
			if in.state == task.Running && in.startedAt != nil {
				lives = append(lives, max(0, now.Sub(*in.startedAt).Seconds()))
			}
		}
		if len(some) == 0 {
			return nil
		}
		out := &taskStatsJSON{}
		out.Stats.Counts = countTasks(some)
		if len(lives) > 0 {
			sort.Float64s(lives)
			sum := 0.0
			for _, l := range lives {
				sum += l
			}
			median := lives[len(lives)/2]
			if len(lives)%2 == 0 {
				median = (lives[len(lives)/2-1] + lives[len(lives)/2]) / 2
			}
			out.Stats.LifeTime = &struct {
				AverageSeconds float64 `json:"averageSeconds"`
				MedianSeconds  float64 `json:"medianSeconds"`
			}{sum / float64(len(lives)), median}
		}
		return out
	}
	out := map[string]*taskStatsJSON{}
	put := func(name string, v *taskStatsJSON) {
		if v != nil {
			out[name] = v
		}
	}
	put("totalSummary", stats(func(*instance) bool { return true }))
	if as.configAt != "" {
		put("withLatestConfig", stats(func(in *instance) bool { return in.rec.Version >= as.configAt }))
		put("withOutdatedConfig", stats(func(in *instance) bool { return in.rec.Version < as.configAt }))
	}
	if scaled, err := time.Parse(time.RFC3339, lastScalingAt(as.def)); err == nil {
		put("startedAfterLastScaling", stats(func(in *instance) bool { return !in.rec.StagedAt.Before(scaled) }))
	}
	return out
}

// lastScalingAt is versionInfo.lastScalingAt of a definition, "" without one.
func lastScalingAt(def Definition) string {
	var vi struct {
		LastScalingAt string `json:"lastScalingAt"`
	}
	if raw, ok := def["versionInfo"]; ok {
		json.Unmarshal(raw, &vi)
	}
	return vi.LastScalingAt
}

// waitingReasonLocked says in a line why an app's instances wait to start, "" when none waits
// or nothing holds them yet: its launch backoff, the offers declined and why (Marathon's reason
// names with Agora's words), no offer at all for a while, the agents that make no offers
// (silent), and the last failure of its tasks (the agent's message) while it keeps failing.
func waitingReasonLocked(as *appState, now time.Time, silent string) string {
	if as.deleted || as.want == 0 || as.offers == nil {
		return ""
	}
	var parts []string
	switch declined := as.offers.Declined(); {
	case now.Before(as.delayUntil):
		left := int(math.Ceil(as.delayUntil.Sub(now).Seconds()))
		line := fmt.Sprintf("%d of %d instances wait: next launch in %d s", as.want, as.app.Instances, left)
		if as.failures > 0 {
			line += fmt.Sprintf(" (backoff after %d failed %s)", as.failures, frameworks.Plural(as.failures, "launch", "launches"))
		}
		parts = append(parts, line)
	case declined != "":
		parts = append(parts, declined)
	case as.offers.Processed() == 0 && now.Sub(as.offers.Since()) >= frameworks.QuietAfter:
		parts = append(parts, fmt.Sprintf("no offer in %s", now.Sub(as.offers.Since()).Round(time.Second)))
	}
	if f := as.lastFail; f != nil && (as.failures > 0 || !f.Timestamp.Before(as.offers.Since())) {
		line := "last failure: " + f.State
		if f.Host != "" {
			line += " on " + f.Host
		}
		parts = append(parts, line+": "+f.Message)
	}
	if len(parts) == 0 {
		return ""
	}
	if silent != "" {
		parts = append(parts, silent)
	}
	return strings.Join(parts, "; ")
}

// putApps is PUT (or PATCH) /v2/apps: several apps created or changed at once, each with only
// the fields it gives, as one deployment.
func (s *Service) putApps(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8*maxBody))
	var raws []json.RawMessage
	if err == nil {
		err = json.Unmarshal(b, &raws)
	}
	if err != nil {
		httpjson.Write(w, http.StatusBadRequest, ValidationError{Message: "Invalid JSON", Details: []ErrorDetails{{Path: "/", Errors: []string{"want a list of apps: " + err.Error()}}}})
		return
	}
	var edits []appEdit
	var p problems
	seen := map[string]string{} // app id → the path it was first given at
	partial := r.Method == http.MethodPatch || partialUpdate(r)
	for i, raw := range raws {
		path := fmt.Sprintf("(%d)", i)
		patch, err := Decode(raw)
		if err != nil {
			p.add(path, "%s", err.Error())
			continue
		}
		patch = withoutReadOnly(patch)
		var id string
		json.Unmarshal(patch["id"], &id)
		if id = NormalizeID(id); id == "" {
			p.add(path+"/id", "must not be empty")
			continue
		}
		if first, dup := seen[id]; dup {
			p.add(path+"/id", "the app %s is given twice in this request (also at %s): which one is meant?", id, first)
			continue
		}
		seen[id] = path
		edits = append(edits, appEdit{id: id, path: path, edit: func(cur *appState) (Definition, error) {
			if cur == nil || !partial {
				d := patch.Merge(nil)
				d["id"], _ = json.Marshal(id)
				return d, nil
			}
			return cur.def.Merge(patch), nil
		}})
	}
	if err := p.err(); err != nil {
		httpjson.Write(w, http.StatusUnprocessableEntity, err)
		return
	}
	if len(edits) == 0 {
		httpjson.Write(w, http.StatusUnprocessableEntity, invalid("/", "no app given"))
		return
	}
	s.deploy(w, r, http.StatusOK, edits, nil)
}
