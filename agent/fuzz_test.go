package agent

// Fuzz targets for what an agent decodes from outside: its --attributes flag and the launch
// requests (POST /v1/tasks) the leader sends. Run one with, for instance:
//
//	go test -run '^$' -fuzz '^FuzzTaskInfo$' -fuzztime 30s ./agent/
//
// A plain `go test` runs the seeds below and those under testdata/fuzz/.

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
)

// FuzzParseAttributes reads an --attributes flag. What is accepted has names and values without
// the separators, trimmed, and written back as a flag it reads the same.
func FuzzParseAttributes(f *testing.F) {
	for _, s := range []string{
		"rack:r1;zone:a",
		"rack:r1; zone : a ;",
		"url:http://x:8080/y",
		"rack:",
		":r1",
		"rack",
		"rack:r1;rack:r2",
		";;;",
		"",
		"é:ü;\u00a0a\u00a0:\u2028b",
		"a b:c",
		strings.Repeat("k:v;", 1000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		attrs, err := ParseAttributes(s)
		if err != nil {
			return
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			v := attrs[k]
			if k == "" || strings.ContainsAny(k, ":;") || strings.Contains(v, ";") ||
				k != strings.TrimSpace(k) || v != strings.TrimSpace(v) {
				t.Fatalf("ParseAttributes(%q) gave %q: %q", s, k, v)
			}
			parts = append(parts, k+":"+v)
		}
		again, err := ParseAttributes(strings.Join(parts, ";"))
		if err != nil || !maps.Equal(again, attrs) {
			t.Fatalf("%q → %v → %q → %v, %v", s, attrs, strings.Join(parts, ";"), again, err)
		}
	})
}

// FuzzTaskInfo decodes a launch request as handleLaunch does and checks it as launch does. Every
// refusal is an *api.FieldError (422) or a *httpjson.BadRequest (400); an accepted task makes an
// executor spec with all its ports, and its JSON (what the checkpoint keeps and GET /v1/tasks
// answers) is accepted again as the same task.
func FuzzTaskInfo(f *testing.F) {
	for _, s := range []string{
		`{"task_id": "web.1", "framework_id": "fw-1", "name": "web", "resources": {"cpus": 0.1, "mem": 32, "ports": "[31000-31001]"},
		  "image": "agora.local/testapp:latest", "args": ["-sleep", "24h"], "env": {"A": "1"}, "secret_env": {"PW": "x"},
		  "labels": {"l": "v"}, "volumes": [{"container_path": "data", "host_path": "/var/data", "read_only": true}],
		  "port_names": ["http", ""], "kill_grace_period_seconds": 3,
		  "health_checks": [{"protocol": "HTTP", "path": "/health", "portIndex": 1}, {"protocol": "COMMAND", "command": {"value": "true"}}]}`,
		`{"task_id": "t", "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1}}, {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 65535}]}}], "cmd": "true"}`,
		`{"task_id": "t", "resources": {"cpus": 1, "ports": {"range": [{"begin": 0, "end": 18446744073709551615}]}}, "cmd": "true"}`,
		`{"task_id": "t", "resources": {"cpus": 1, "ports": "[0-18446744073709551615]"}, "cmd": "true", "health_checks": [{"protocol": "TCP"}]}`,
		`{"task_id": "t", "resources": {"cpus": -1}, "cmd": "true"}`,
		`{"task_id": "t", "resources": {"cpus": 1e308}, "cmd": "true"}`,
		`{"task_id": "t", "cmd": "true", "image": "UPPER/Case:tag"}`,
		`{"task_id": "t", "cmd": "true", "image": "busybox@sha256:abc"}`,
		`{"task_id": "t", "cmd": "true", "volumes": [{"container_path": "../../etc", "host_path": "/"}]}`,
		`{"task_id": "t", "cmd": "true", "kill_grace_period_seconds": -1}`,
		`{"task_id": "t", "cmd": "true", "secret_files": [{"container_path": "creds/db", "value": "pw"}, {"container_path": "other", "value": ""}]}`,
		`{"task_id": "t", "cmd": "true", "secret_files": [{"container_path": "/etc/db", "value": "pw"}]}`,
		`{"task_id": "t", "image": "a", "secret_files": [{"container_path": "/run/db", "value": "pw"}, {"container_path": "/run/db", "value": "pw"}]}`,
		`{"task_id": "t", "cmd": "true", "health_checks": [{"protocol": "MESOS_HTTP", "port": 99999}]}`,
		`{"task_id": "../t", "cmd": "true"}`,
		`{"task_id": "` + strings.Repeat("t", 201) + `", "cmd": "true"}`,
		`{"task_id": "t"}`,
		`{"task_id": "t", "cmd": "true", "colour": "red"}`,
		`{"task_id": "t", "cmd": "true", "health_checks": [{"protocol": "HTTP", "intrval": 1}]}`,
		`null`,
		``,
		`[]`,
		strings.Repeat("[", 2000),
	} {
		f.Add([]byte(s))
	}
	ts := &taskSet{taskSetConfig: taskSetConfig{host: "node-1", agentID: func() string { return "agent-1" }}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var info api.TaskInfo
		if err := httpjson.Decode(httptest.NewRequest("POST", "/v1/tasks", bytes.NewReader(body)), &info); err != nil {
			var bad *httpjson.BadRequest
			if !errors.As(err, &bad) {
				t.Fatalf("not a *httpjson.BadRequest: %T %v", err, err)
			}
			return
		}
		if err := validateTaskInfo(info); err != nil {
			var fe *api.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("not an *api.FieldError naming a field: %T %v", err, err)
			}
			return
		}
		spec, err := ts.spec(info)
		if err != nil {
			var fe *api.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "volumes[") {
				t.Fatalf("a spec error not naming a volume: %T %v", err, err)
			}
			return // the agent offers no host volume: every volume is refused
		}
		if uint64(len(spec.Ports)) != info.Resources.Ports.Count() {
			t.Fatalf("%d ports in the spec, %d in the task", len(spec.Ports), info.Resources.Ports.Count())
		}
		out, err := json.Marshal(info)
		if err != nil {
			t.Fatalf("an accepted task does not marshal: %v", err)
		}
		var again api.TaskInfo
		if err := httpjson.Decode(httptest.NewRequest("POST", "/v1/tasks", bytes.NewReader(out)), &again); err != nil {
			t.Fatalf("the JSON of an accepted task does not decode: %v\n%s", err, out)
		}
		if err := validateTaskInfo(again); err != nil {
			t.Fatalf("the JSON of an accepted task is refused: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("the JSON of an accepted task is another task:\n%s\n%s", out, out2)
		}
	})
}
