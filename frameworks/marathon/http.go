package marathon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/httpjson"
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
