package master

// Fuzz targets for what a master decodes from outside: scheduler API calls (POST
// /api/v1/scheduler), agent registrations (POST /v1/agents/register) and status updates (POST
// /v1/agents/{id}/status). Each decodes a body as its handler does and checks it with the
// handler's own functions, without a cluster. Run one with, for instance:
//
//	go test -run '^$' -fuzz '^FuzzSchedulerCall$' -fuzztime 30s ./master/
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
// state, in the order schedulerCall, subscribeStream, subscribe and call check it.
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
	s := &scheduler{}
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

// decodeRegistration decodes a body as registerAgent does.
func decodeRegistration(body []byte) (api.AgentRegistration, error) {
	var reg api.AgentRegistration
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(&reg)
	return reg, err
}

// FuzzAgentRegistration decodes and validates an agent's registration. Nothing panics; a
// refusal after decoding is an *api.FieldError; an accepted registration's JSON is accepted
// again, and the agent it registers is the same agent again.
func FuzzAgentRegistration(f *testing.F) {
	for _, s := range []string{
		`{"hostname": "node-1", "http": "10.0.0.1:5051", "resources": {"cpus": 4, "mem": 8192, "disk": 20000, "ports": "[31000-32000]"}, "attributes": {"rack": "r1"}}`,
		`{"id": "agent-1", "hostname": "node-1", "http": "10.0.0.1:5051", "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}}],
		  "tasks": [{"info": {"task_id": "web.1", "framework_id": "fw-1", "resources": {"cpus": 1, "mem": 32}, "cmd": "true"},
		             "status": {"task_id": "web.1", "state": "TASK_RUNNING", "uuid": "u", "timestamp": "2026-01-01T00:00:00.123456789+05:30", "healthy": true},
		             "sandbox": "/var/lib/agora/web.1", "started_at": "2026-01-01T00:00:00Z"}]}`,
		`{"hostname": "node-1", "http": "h:1", "tasks": [{"status": {"task_id": "t", "uuid": "u", "state": "TASK_NAPPING", "timestamp": "2026-01-01T00:00:00Z"}}]}`,
		`{"hostname": "node-1", "http": "h:1", "tasks": [{"status": {"task_id": "t", "uuid": "u", "state": "TASK_RUNNING"}}]}`,
		`{"hostname": "node-1", "http": "h:1", "attributes": {"": "x", "a:b": "c"}}`,
		`{"hostname": "node-1", "http": "h:1", "resources": {"cpus": -1, "ports": "[1-99999]"}}`,
		`{"hostname": " ", "http": ""}`,
		`{"id": "a b", "hostname": "n", "http": "h:1"}`,
		`{"hostname": "n", "http": "h:1", "colour": "red"}`,
		`{"hostname": "n", "http": "h:1", "tasks": [{"status": {"timestamp": "10000-01-01T00:00:00Z"}}]}`,
		`null`,
		``,
		`{}`,
		strings.Repeat("[", 2000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reg, err := decodeRegistration(body)
		if err != nil {
			return // 400
		}
		if err := validateRegistration(reg); err != nil {
			var fe *api.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("not an *api.FieldError naming a field: %T %v", err, err)
			}
			return
		}
		out, err := json.Marshal(reg)
		if err != nil {
			t.Fatalf("an accepted registration does not marshal: %v", err)
		}
		again, err := decodeRegistration(out)
		if err != nil {
			t.Fatalf("the JSON of an accepted registration does not decode: %v\n%s", err, out)
		}
		if err := validateRegistration(again); err != nil {
			t.Fatalf("the JSON of an accepted registration is refused: %v\n%s", err, out)
		}
		a := api.Agent{ID: reg.ID, Hostname: reg.Hostname, HTTP: reg.HTTP, Resources: reg.Resources, Attributes: reg.Attributes}
		b := api.Agent{ID: again.ID, Hostname: again.Hostname, HTTP: again.HTTP, Resources: again.Resources, Attributes: again.Attributes}
		if !sameAgent(a, b) {
			t.Fatalf("the JSON of an accepted registration registers another agent:\n%+v\n%+v", a, b)
		}
	})
}

// FuzzStatusUpdate decodes and validates a status update as postStatus does. Nothing panics;
// every refusal is a *httpjson.BadRequest or an *api.FieldError; an accepted update's JSON is
// accepted again as the same update.
func FuzzStatusUpdate(f *testing.F) {
	for _, s := range []string{
		`{"task_id": "web.1", "framework_id": "fw-1", "state": "TASK_RUNNING", "uuid": "u-1", "timestamp": "2026-01-01T00:00:00Z"}`,
		`{"task_id": "web.1", "state": "TASK_FAILED", "reason": "REASON_COMMAND_EXECUTOR_FAILED", "source": "SOURCE_EXECUTOR", "message": "exit 1",
		  "exit_status": 1, "healthy": false, "uuid": "u-2", "timestamp": "2026-01-01T00:00:00.999999999-08:00"}`,
		`{"task_id": "web.1", "state": "TASK_NAPPING", "uuid": "u", "timestamp": "2026-01-01T00:00:00Z"}`,
		`{"task_id": "web.1", "state": "TASK_RUNNING", "uuid": "u"}`,
		`{"task_id": "web.1", "state": "TASK_RUNNING", "uuid": "u", "timestamp": "0000-01-01T00:00:00Z"}`,
		`{"task_id": "web.1", "state": "TASK_RUNNING", "uuid": "u", "timestamp": "9999-12-31T23:59:59-23:59"}`,
		`{"task_id": "web.1", "state": "TASK_RUNNING", "uuid": "u", "timestamp": "2026-01-01T00:00:00Z", "exit_status": 1e10}`,
		`{"task_id": "", "uuid": ""}`,
		`{"task_id": "t", "agent_id": "a", "state": "running"}`,
		`{"task_id": "t", "colour": "red"}`,
		`null`,
		``,
		`{}`,
		strings.Repeat("[", 2000),
	} {
		f.Add([]byte(s))
	}
	decode := func(b []byte) (api.TaskStatus, error) {
		var st api.TaskStatus
		if err := httpjson.Decode(httptest.NewRequest("POST", "/v1/agents/a/status", bytes.NewReader(b)), &st); err != nil {
			return st, err
		}
		return st, validateStatus(st)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := decode(body)
		if err != nil {
			wantCallError(t, err)
			return
		}
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatalf("an accepted update does not marshal: %v", err)
		}
		again, err := decode(out)
		if err != nil {
			t.Fatalf("the JSON of an accepted update is refused: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) || !again.Timestamp.Equal(st.Timestamp) {
			t.Fatalf("the JSON of an accepted update is another update:\n%s\n%s", out, out2)
		}
	})
}
