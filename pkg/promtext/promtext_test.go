package promtext

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	page := `# HELP agora_tasks Tasks.
# TYPE agora_tasks gauge
agora_tasks{state="TASK_RUNNING"} 3
agora_raft_term 7

agora_http_request_duration_seconds_sum{code="200",route="GET /v1/cluster"} 0.0125
`
	got, err := Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{`agora_tasks{state="TASK_RUNNING"}`: 3, "agora_raft_term": 7, `agora_http_request_duration_seconds_sum{code="200",route="GET /v1/cluster"}`: 0.0125}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %g, want %g", k, got[k], v)
		}
	}
	for _, bad := range []string{"agora_tasks", "agora_tasks x"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
}
