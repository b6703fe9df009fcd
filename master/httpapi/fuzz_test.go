package httpapi

// Fuzz targets for what a master decodes from agents: registrations (POST /v1/agents/register)
// and status updates (POST /v1/agents/{id}/status). Each decodes a body as its handler does and
// checks it with the handler's own functions, without a cluster. Run one with, for instance:
//
//	go test -run '^$' -fuzz '^FuzzAgentRegistration$' -fuzztime 30s ./master/httpapi/
//
// A plain `go test` runs the seeds below and those under testdata/fuzz/. The scheduler API's
// calls are fuzzed in master/scheduler (FuzzSchedulerCall).

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
)

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
			var bad *httpjson.BadRequest
			if fe := new(api.FieldError); !errors.As(err, &bad) && (!errors.As(err, &fe) || fe.Field == "" || fe.Msg == "") {
				t.Fatalf("neither a *httpjson.BadRequest nor an *api.FieldError naming a field: %T %v", err, err)
			}
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
