package scheduler

// A fuzz target for the scheduler API's calls (POST /api/v1/scheduler, and Session.Call): a
// body is decoded as the API decodes it and checked with the scheduler's own functions, without
// a cluster. Run it with:
//
//	go test -run '^$' -fuzz '^FuzzSchedulerCall$' -fuzztime 30s ./master/scheduler/
//
// A plain `go test` runs the seeds below and those under testdata/fuzz/.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/resources"
)

// wantCallError fails unless err is what the scheduler API answers 4xx with naming a field: a
// *httpjson.BadRequest from decoding, or an *api.FieldError.
func wantCallError(t *testing.T, err error) {
	t.Helper()
	var bad *httpjson.BadRequest
	var fe *api.FieldError
	switch {
	case errors.As(err, &bad):
	case errors.As(err, &fe):
		if fe.Field == "" || fe.Msg == "" {
			t.Fatalf("a FieldError without a field or a message: %+v", fe)
		}
	default:
		t.Fatalf("neither a *httpjson.BadRequest nor an *api.FieldError: %T %v", err, err)
	}
}

// checkCall is what POST /api/v1/scheduler checks of a call before it needs the scheduler's
// state, in the order the API's schedulerCall and subscribeStream, then Subscribe and call,
// check it.
func checkCall(body []byte) (api.Call, error) {
	var c api.Call
	if err := httpjson.Decode(httptest.NewRequest("POST", "/api/v1/scheduler", bytes.NewReader(body)), &c); err != nil {
		return c, err
	}
	if c.Type == api.CallSubscribe {
		if c.Subscribe == nil {
			return c, &api.FieldError{Field: "subscribe", Msg: "is required for a SUBSCRIBE call"}
		}
		return c, validateFrameworkInfo(&c.Subscribe.FrameworkInfo)
	}
	return c, checkCallBody(c)
}

// FuzzSchedulerCall decodes and checks a scheduler API call, and each task of an ACCEPT's
// launches as acceptLocked does against a large offer. Nothing panics; every refusal names a
// field; the JSON of an accepted call is accepted again.
func FuzzSchedulerCall(f *testing.F) {
	for _, s := range []string{
		`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "ext", "role": "web", "failover_timeout": 60, "capabilities": ["PARTITION_AWARE"], "labels": {"a": "b"}}}}`,
		`{"type": "SUBSCRIBE", "framework_id": "fw-1", "subscribe": {"framework_info": {"id": "fw-1", "name": "ext", "registered_at": "2026-01-01T00:00:00Z"}}}`,
		`{"type": "ACCEPT", "framework_id": "fw-1", "accept": {"offer_ids": ["o-1", "o-2"], "filters": {"refuse_seconds": 5},
		  "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"task_id": "web.1", "name": "web", "resources": {"cpus": 0.5, "mem": 64, "ports": "[31000-31000]"},
		    "image": "agora.local/testapp:latest", "args": ["-sleep", "1h"], "health_checks": [{"protocol": "HTTP", "path": "/health"}]},
		    {"task_id": "web.1", "cmd": "true", "resources": {"cpus": 1, "mem": 1}}]}},
		    {"type": "KILL", "kill": {"task_id": "old.1", "agent_id": "a-1", "grace_period_seconds": 3}}]}}`,
		`{"type": "ACCEPT", "framework_id": "fw-1", "accept": {"offer_ids": ["o"], "operations": [{"type": "LAUNCH"}]}}`,
		`{"type": "ACCEPT", "framework_id": "fw-1", "accept": {"offer_ids": ["o"], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"task_id": "../x", "cmd": "x", "resources": {"cpus": 1e308, "mem": -1}}]}}]}}`,
		`{"type": "ACCEPT", "framework_id": "fw-1", "accept": {"offer_ids": []}}`,
		`{"type": "DECLINE", "framework_id": "fw-1", "decline": {"offer_ids": ["o-1"], "filters": {"refuse_seconds": -5}}}`,
		`{"type": "DECLINE", "framework_id": "fw-1", "decline": {"offer_ids": ["o-1"], "filters": {"refuse_seconds": 1e308}}}`,
		`{"type": "KILL", "framework_id": "fw-1", "kill": {"task_id": "web.1", "grace_period_seconds": -1}}`,
		`{"type": "ACKNOWLEDGE", "framework_id": "fw-1", "acknowledge": {"agent_id": "a-1", "task_id": "web.1", "uuid": "u"}}`,
		`{"type": "RECONCILE", "framework_id": "fw-1", "reconcile": {"tasks": [{"task_id": "web.1"}, {"task_id": ""}]}}`,
		`{"type": "REVIVE", "framework_id": "fw-1"}`,
		`{"type": "SUPPRESS", "framework_id": "fw-1"}`,
		`{"type": "TEARDOWN", "framework_id": "fw-1"}`,
		`{"type": "EXPLODE"}`,
		`{"type": "SUBSCRIBE"}`,
		`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": ""}}}`,
		`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x", "role": "a b"}}}`,
		`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x", "capabilities": ["Z"]}}}`,
		`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x", "id": "../no-such", "failover_timeout": -1}}}`,
		`{"type": 7}`,
		`{"type": "REVIVE"`,
		`{"bogus": 1}`,
		`{"type": "ACCEPT", "accept": {"operations": [{"launch": {"task_infos": [{"resources": {"cpu": 1}}]}}]}}`,
		`null`,
		``,
		`[]`,
		strings.Repeat("[", 2000),
		`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "` + strings.Repeat("ü", 150) + `"}}}`,
	} {
		f.Add([]byte(s))
	}
	pool, err := resources.Parse("cpus:1000;mem:1000000;disk:1000000;ports:[0-65535]")
	if err != nil {
		f.Fatal(err)
	}
	s := &Scheduler{}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := checkCall(body)
		if err != nil {
			wantCallError(t, err)
			return
		}
		if c.Type == api.CallAccept {
			term := &schedTerm{tasks: map[string]*taskEntry{}}
			seen := map[string]bool{}
			left := pool
			for _, op := range c.Accept.Operations {
				if op.Type != api.OperationLaunch {
					continue
				}
				for _, ti := range op.Launch.TaskInfos {
					if err := s.checkTaskLocked(term, ti, left, seen); err != nil {
						wantCallError(t, err)
						continue
					}
					seen[ti.TaskID] = true
					if left, err = left.Subtract(ti.Resources); err != nil {
						t.Fatalf("a task that fits does not subtract: %v", err)
					}
				}
			}
		}
		out, err := json.Marshal(c)
		if err != nil {
			// Only resources past float64 once rounded (cpus 1e308) do not marshal, and
			// checkTaskLocked refuses them.
			if c.Type != api.CallAccept || !hasInvalidResources(c.Accept) {
				t.Fatalf("an accepted call does not marshal: %v", err)
			}
			return
		}
		again, err := checkCall(out)
		if err != nil {
			t.Fatalf("the JSON of an accepted call is refused: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("the JSON of an accepted call is another call:\n%s\n%s", out, out2)
		}
	})
}

func hasInvalidResources(a *api.Accept) bool {
	for _, op := range a.Operations {
		if op.Launch == nil {
			continue
		}
		for _, ti := range op.Launch.TaskInfos {
			if ti.Resources.Validate() != nil {
				return true
			}
		}
	}
	return false
}
