package marathon

import (
	"encoding/json"
	"testing"
)

// TestAppJSONHasWhatMarathonLBReads: an app without labels shows labels {}, and a health check
// that gives only its protocol shows the numbers marathon-lb reads (Marathon's defaults), while
// numbers the definition gives stay as given.
func TestAppJSONHasWhatMarathonLBReads(t *testing.T) {
	as := testApp(t, `{"id": "/web", "cmd": "serve", "healthChecks": [{"protocol": "HTTP", "path": "/health"}, {"protocol": "TCP", "intervalSeconds": 5, "maxConsecutiveFailures": 0}]}`)
	out := appWire(as.def.withDefaults(), as.app, "*")
	var got struct {
		Labels       *map[string]string `json:"labels"`
		HealthChecks []map[string]any   `json:"healthChecks"`
	}
	if err := json.Unmarshal(mustJSON(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Labels == nil || len(*got.Labels) != 0 {
		t.Fatalf("labels: %v", got.Labels)
	}
	want := []map[string]float64{
		{"gracePeriodSeconds": 300, "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3},
		{"gracePeriodSeconds": 300, "intervalSeconds": 5, "timeoutSeconds": 20, "maxConsecutiveFailures": 0},
	}
	for i, w := range want {
		for k, v := range w {
			if got.HealthChecks[i][k] != v {
				t.Fatalf("healthChecks(%d).%s = %v, want %v: %v", i, k, got.HealthChecks[i][k], v, got.HealthChecks[i])
			}
		}
	}
	if got.HealthChecks[0]["path"] != "/health" || got.HealthChecks[1]["protocol"] != "TCP" {
		t.Fatalf("the definition's own fields: %v", got.HealthChecks)
	}
}
