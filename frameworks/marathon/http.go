package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// maxBody bounds an app definition.
const maxBody = 1 << 20

// routes adds Marathon's /v2 endpoints to the master; the leader answers them (it holds the
// instances' states), other masters forward.
func (s *Service) routes() {
	h := func(pattern string, f http.HandlerFunc) { s.m.HandleLeader(pattern, checkQuery(f)) }
	h("GET /v2/apps", s.listApps)
	h("POST /v2/apps", s.createApp)
	h("PUT /v2/apps", s.putApps)
	h("PATCH /v2/apps", s.putApps)
	h("GET /v2/apps/{path...}", s.appGet)
	h("PUT /v2/apps/{path...}", s.appPut)
	h("PATCH /v2/apps/{path...}", s.appPut)
	h("POST /v2/apps/{path...}", s.appPost)
	h("DELETE /v2/apps/{path...}", s.appDelete)
	h("GET /v2/tasks", s.listTasks)
	h("POST /v2/tasks/delete", s.deleteTasks)
	h("GET /v2/deployments", s.listDeployments)
	h("DELETE /v2/deployments/{id}", s.deleteDeployment)
	h("GET /v2/info", s.info)
	h("GET /v2/events", s.events)
	h("GET /v2/queue", s.queue)
	h("GET /v2/groups", s.getGroup)
	h("GET /v2/groups/{path...}", s.getGroup)
	h("POST /v2/groups", s.createGroup)
	h("PUT /v2/groups", s.putGroup)
	h("PUT /v2/groups/{path...}", s.putGroup)
	h("DELETE /v2/groups/{path...}", s.deleteGroup)
	h("DELETE /v2/queue/{path...}", s.resetDelay)
}

// boolParams are the boolean query parameters of Marathon's /v2 endpoints: force (change what a
// deployment is changing), scale and wipe (task kills), partialUpdate (PUT of apps).
var boolParams = []string{"force", "scale", "wipe", "partialUpdate"}

// checkQuery answers 400 naming the parameter, before the handler runs, for a boolean
// parameter that is not true or false. Marathon itself reads anything else as false; Agora
// refuses it, since ?force=ture would quietly not force. embed values are not checked: Marathon
// ignores those it does not know (embedOf), and so does Agora.
func checkQuery(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for _, name := range boolParams {
			if _, err := frameworks.BoolParam(q, name, false); err != nil {
				queryError(w, err)
				return
			}
		}
		next(w, withCaller(r))
	}
}

// queryError answers 400 for a query parameter's value, naming it.
func queryError(w http.ResponseWriter, err error) {
	var qe *frameworks.QueryError
	if errors.As(err, &qe) {
		fieldError(w, http.StatusBadRequest, qe.Param, qe.Msg)
		return
	}
	marathonError(w, http.StatusBadRequest, err.Error())
}

// queryBool is a boolean query parameter that checkQuery let through.
func queryBool(r *http.Request, name string) bool {
	b, _ := frameworks.BoolParam(r.URL.Query(), name, false)
	return b
}

// partialUpdate says whether a PUT changes only the fields it gives (Marathon's default) or,
// with ?partialUpdate=false, replaces the whole definition.
func partialUpdate(r *http.Request) bool {
	return r.URL.Query().Get("partialUpdate") == "" || queryBool(r, "partialUpdate")
}

// marathonError answers with Marathon's {"message": ...}.
func marathonError(w http.ResponseWriter, code int, msg string) { httpjson.Error(w, code, msg) }

var errNotReady = errors.New("the service framework is not running on this master yet; retry")

// readyState is the leader's state for a handler holding s.mu; without one (this master does
// not lead yet) it answers 503 and returns nil.
func (s *Service) readyState(w http.ResponseWriter) *leaderState {
	if s.st == nil {
		marathonError(w, http.StatusServiceUnavailable, errNotReady.Error())
	}
	return s.st
}

// readDefinition reads a body as an app definition: 400 for what is not JSON, as Marathon.
func readDefinition(w http.ResponseWriter, r *http.Request) (Definition, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			marathonError(w, http.StatusRequestEntityTooLarge, "the app definition is larger than 1 MiB")
			return nil, false
		}
		marathonError(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	d, err := Decode(b)
	if err != nil {
		httpjson.Write(w, http.StatusBadRequest, ValidationError{Message: "Invalid JSON", Details: []ErrorDetails{{Path: "/", Errors: []string{err.Error()}}}})
		return nil, false
	}
	return withoutReadOnly(d), true
}

func (s *Service) createApp(w http.ResponseWriter, r *http.Request) {
	def, ok := readDefinition(w, r)
	if !ok {
		return
	}
	a, err := def.App()
	if err != nil {
		httpjson.Write(w, http.StatusUnprocessableEntity, ValidationError{Message: "Object is not valid", Details: []ErrorDetails{{Path: "/", Errors: []string{err.Error()}}}})
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
		if wantsText(r) {
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
		data, ok := view.Get(Namespace, versionKey(appID, v))
		if !ok {
			marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist in version "+v)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
		return
	}
	var list []string
	view.List(Namespace, versionPrefix(appID), func(key string, _ []byte) bool {
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
	data, found := view.Get(Namespace, versionKey(appID, v))
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
		s.mu.Lock()
		if s.st != nil {
			for _, in := range s.st.appInstances(appID) {
				if arg == "" || in.rec.ID == arg {
					ids = append(ids, in.rec.ID)
				}
			}
		}
		s.mu.Unlock()
		if arg != "" && len(ids) == 0 {
			marathonError(w, http.StatusNotFound, "Task '"+arg+"' does not exist")
			return
		}
		killed, res, err := s.killInstances(r.Context(), ids, queryBool(r, "scale"), forced(r))
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

func (s *Service) deleteTasks(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs []string `json:"ids"`
	}
	if err := httpjson.Decode(r, &body); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	if len(body.IDs) == 0 {
		fieldError(w, http.StatusUnprocessableEntity, "ids", "name at least one task")
		return
	}
	s.mu.Lock()
	for _, id := range body.IDs {
		if s.st == nil || s.st.instances[id] == nil {
			s.mu.Unlock()
			marathonError(w, http.StatusNotFound, "Task '"+id+"' does not exist")
			return
		}
	}
	s.mu.Unlock()
	_, res, err := s.killInstances(r.Context(), body.IDs, queryBool(r, "scale"), forced(r))
	if err != nil {
		writeChangeError(w, err)
		return
	}
	writeResult(w, http.StatusOK, res)
}

// killInstances kills instances on request: each is replaced, or, with scale, its app wants
// one instance fewer.
func (s *Service) killInstances(ctx context.Context, ids []string, scale, force bool) ([]taskWire, changeResult, error) {
	var res changeResult
	if scale {
		byApp := map[string]int{}
		s.mu.Lock()
		for _, id := range ids {
			if s.st != nil && s.st.instances[id] != nil {
				byApp[s.st.instances[id].rec.AppID]++
			}
		}
		s.mu.Unlock()
		for appID, n := range byApp {
			var err error
			res, err = s.changeApp(ctx, appID, force, func(cur *appState) (Definition, error) {
				if cur == nil {
					return nil, &httpError{http.StatusNotFound, "App '" + appID + "' does not exist"}
				}
				d := cur.def.Merge(nil)
				d["instances"], _ = json.Marshal(max(0, cur.app.Instances-n))
				return d, nil
			})
			if err != nil {
				return nil, res, err
			}
		}
	}
	c := &change{}
	var out []taskWire
	s.mu.Lock()
	st := s.st
	if st == nil {
		s.mu.Unlock()
		return nil, res, errNotReady
	}
	var kills []api.KillTask
	for _, id := range ids {
		in := st.instances[id]
		if in == nil {
			continue
		}
		out = append(out, taskWireOf(in, s.cfg.Role, st))
		if in.rec.Killing {
			continue
		}
		in.rec.Killing = true
		st.touch(in.rec.AppID)
		c.put(instanceKey(id), in.rec)
		kills = append(kills, api.KillTask{TaskID: id, AgentID: in.rec.AgentID})
	}
	s.mu.Unlock()
	// Recorded before sent, as the planner's kills are: a new leader knows of every kill.
	if err := commit(ctx, s.store, c); err != nil {
		s.mu.Lock()
		if s.st == st {
			for _, k := range kills {
				if in := st.instances[k.TaskID]; in != nil {
					in.rec.Killing = false
				}
			}
		}
		s.mu.Unlock()
		return out, res, err
	}
	for _, k := range kills {
		st.ss.Call(api.Call{Type: api.CallKill, Kill: &k})
	}
	s.poke()
	return out, res, nil
}

// deploy makes a change of apps and answers with its deployment (or why not).
func (s *Service) deploy(w http.ResponseWriter, r *http.Request, code int, edits []appEdit, groups map[string]*groupRecord) {
	res, err := s.changeApps(r.Context(), forced(r), edits, groups)
	if err != nil {
		writeChangeError(w, err)
		return
	}
	writeResult(w, code, res)
}

// writeResult answers a write that started a deployment: its id and version, and the
// Marathon-Deployment-Id header.
func writeResult(w http.ResponseWriter, code int, res changeResult) {
	setDeploymentHeader(w, res)
	httpjson.Write(w, code, res)
}

// invalid is a 422 body with one problem.
func invalid(path, msg string) *ValidationError {
	return &ValidationError{Message: "Object is not valid", Details: []ErrorDetails{{Path: path, Errors: []string{msg}}}}
}

// httpError is a refusal with its status.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// conflictError is Marathon's 409 for a change that would overlap running deployments.
type conflictError struct{ ids []string }

func (e *conflictError) Error() string {
	return "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/<DEPLOYMENT_ID>'."
}

func writeChangeError(w http.ResponseWriter, err error) {
	var he *httpError
	var ve *ValidationError
	var ce *conflictError
	switch {
	case errors.As(err, &ve):
		httpjson.Write(w, http.StatusUnprocessableEntity, ve)
	case errors.As(err, &he):
		marathonError(w, he.code, he.msg)
	case errors.As(err, &ce):
		var deps []map[string]string
		for _, id := range ce.ids {
			deps = append(deps, map[string]string{"id": id})
		}
		httpjson.Write(w, http.StatusConflict, map[string]any{"message": ce.Error(), "deployments": deps})
	case errors.Is(err, errNotReady), errors.Is(err, raft.ErrNotLeader), errors.Is(err, context.DeadlineExceeded):
		marathonError(w, http.StatusServiceUnavailable, err.Error())
	default:
		marathonError(w, http.StatusInternalServerError, err.Error())
	}
}

func forced(r *http.Request) bool { return queryBool(r, "force") }

// changeResult is what Marathon answers a change with.
type changeResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
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

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func newUUID(s *Service) string {
	u, err := s.ids.UUID()
	if err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return u
}

// embedOf reads ?embed=apps.tasks,... (or app.tasks for one app); a value Marathon does not
// know embeds nothing, as in Marathon, which ignores it.
func embedOf(r *http.Request) map[string]bool {
	out := map[string]bool{}
	for _, v := range r.URL.Query()["embed"] {
		for _, e := range strings.Split(v, ",") {
			e = strings.TrimSpace(e)
			for _, prefix := range []string{"group.apps.", "apps.", "app."} {
				e = strings.TrimPrefix(e, prefix)
			}
			out[e] = true
			if e == "failures" { // Marathon's older name for these
				out["tasks"], out["lastTaskFailure"] = true, true
			}
		}
	}
	return out
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

func (s *Service) tasksJSONLocked(st *leaderState, appID string) []taskWire {
	out := []taskWire{}
	for _, in := range st.appInstances(appID) {
		out = append(out, taskWireOf(in, s.cfg.Role, st))
	}
	return out
}

func (s *Service) listTasks(w http.ResponseWriter, r *http.Request) {
	statuses := map[string]bool{}
	for _, v := range r.URL.Query()["status"] {
		for _, st := range strings.Split(v, ",") {
			state := task.State("TASK_" + strings.ToUpper(strings.TrimSpace(st)))
			if !state.Valid() {
				fieldError(w, http.StatusBadRequest, "status", "no task state "+strconv.Quote(st)+" (running, staging, killed, ...)")
				return
			}
			statuses[string(state)] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	if wantsText(r) {
		s.tasksText(w, st, nil)
		return
	}
	out := []taskWire{}
	for _, appID := range sortedKeys(st.apps) {
		for _, in := range st.appInstances(appID) {
			if len(statuses) == 0 || statuses[string(in.state)] {
				out = append(out, taskWireOf(in, s.cfg.Role, st))
			}
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"tasks": out})
}

func (s *Service) listDeployments(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	out := []map[string]any{}
	for _, id := range sortedKeys(st.deployments) {
		out = append(out, deploymentWire(st.deployments[id]))
	}
	httpjson.Write(w, http.StatusOK, out)
}

// deleteDeployment cancels a deployment: with force=true it just stops where it is; without, it
// reverts it as Marathon does, in one new deployment (revertChange): the apps it changed or
// deleted get their definitions from before it back, those it created go, and its groups'
// dependencies go back — from the trees its record keeps, so on any leader.
func (s *Service) deleteDeployment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	var d *Deployment
	if s.st != nil {
		d = s.st.deployments[id]
	}
	s.mu.Unlock()
	if d == nil {
		marathonError(w, http.StatusNotFound, "DeploymentPlan "+id+" does not exist")
		return
	}
	if forced(r) {
		c := &change{}
		c.del(deploymentKey(id))
		if err := commit(r.Context(), s.store, c); err != nil {
			writeChangeError(w, err)
			return
		}
		s.mu.Lock()
		if s.st != nil {
			delete(s.st.deployments, id)
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	s.mu.Lock()
	current := map[string]groupRecord{}
	if s.st != nil {
		maps.Copy(current, s.st.groups)
	}
	s.mu.Unlock()
	edits, groups, err := revertChange(d, current)
	if err == nil {
		var res changeResult
		if res, err = s.changeApps(r.Context(), true, edits, groups); err == nil {
			writeResult(w, http.StatusOK, res)
			return
		}
	}
	writeChangeError(w, err)
}

func (s *Service) info(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fwID := ""
	if s.st != nil {
		fwID = s.st.ss.FrameworkID()
	}
	s.mu.Unlock()
	port := 0
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if tcp, ok := addr.(*net.TCPAddr); ok {
			port = tcp.Port
		}
	}
	httpjson.Write(w, http.StatusOK, s.infoWire(fwID, r.Host, port))
}

// queueItem is an entry of Marathon's /v2/queue; WaitingReason is Agora's: why the instances
// wait, in a line (see waitingReasonLocked).
type queueItem struct {
	Count                  int                               `json:"count"`
	Role                   string                            `json:"role"`
	Delay                  queueDelay                        `json:"delay"`
	Since                  frameworks.Timestamp              `json:"since"`
	ProcessedOffersSummary frameworks.ProcessedOffersSummary `json:"processedOffersSummary"`
	LastUnusedOffers       *[]frameworks.UnusedOffer         `json:"lastUnusedOffers,omitempty"`
	App                    map[string]any                    `json:"app"`
	WaitingReason          string                            `json:"waitingReason,omitempty"`
}

// queueDelay is Marathon's launch delay: overdue is true when nothing delays the launch.
type queueDelay struct {
	TimeLeftSeconds int  `json:"timeLeftSeconds"`
	Overdue         bool `json:"overdue"`
}

// queue is GET /v2/queue: the apps with instances waiting to launch, their launch delay and
// what the offers said (embed=lastUnusedOffers: the last unused offer of each agent).
func (s *Service) queue(w http.ResponseWriter, r *http.Request) {
	withOffers := false
	for _, v := range r.URL.Query()["embed"] {
		for _, e := range strings.Split(v, ",") {
			withOffers = withOffers || strings.TrimSpace(e) == "lastUnusedOffers"
		}
	}
	silent := frameworks.SilentAgents(r.Context(), s.m)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	now := s.cfg.Clock.Now()
	out := []queueItem{}
	for _, id := range sortedKeys(st.apps) {
		as := st.apps[id]
		if as.deleted || as.want == 0 {
			continue
		}
		out = append(out, s.queueItemLocked(st, as, now, withOffers, silent))
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"queue": out})
}

// queueItemLocked is an app's entry of /v2/queue.
func (s *Service) queueItemLocked(st *leaderState, as *appState, now time.Time, withOffers bool, silent string) queueItem {
	offers := as.offers
	if offers == nil {
		offers = frameworks.NewOfferStats(now)
	}
	left := max(0, as.delayUntil.Sub(now).Seconds())
	item := queueItem{
		Count: as.want, Role: s.cfg.Role,
		Delay: queueDelay{TimeLeftSeconds: int(math.Ceil(left)), Overdue: left == 0},
		Since: frameworks.Timestamp(offers.Since()), ProcessedOffersSummary: offers.Summary(),
		App: s.appJSONLocked(st, as, nil, ""), WaitingReason: waitingReasonLocked(as, now, silent),
	}
	delete(item.App, "waitingReason") // said once, beside the app
	if withOffers {
		last := offers.LastUnusedOffers(s.cfg.Role)
		item.LastUnusedOffers = &last
	}
	return item
}

// resetDelay is DELETE /v2/queue/{app id}/delay: the app's launch backoff starts over.
func (s *Service) resetDelay(w http.ResponseWriter, r *http.Request) {
	p := "/" + strings.Trim(r.PathValue("path"), "/")
	if !strings.HasSuffix(p, "/delay") {
		marathonError(w, http.StatusNotFound, "no such endpoint: DELETE /v2/queue"+p)
		return
	}
	appID := strings.TrimSuffix(p, "/delay")
	s.mu.Lock()
	var as *appState
	if s.st != nil {
		as = s.st.apps[appID]
	}
	if as == nil || as.deleted {
		s.mu.Unlock()
		marathonError(w, http.StatusNotFound, "App '"+appID+"' does not exist")
		return
	}
	as.failures, as.delayUntil = 0, time.Time{}
	s.st.touch(appID)
	s.mu.Unlock()
	s.poke()
	w.WriteHeader(http.StatusNoContent)
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
