package marathon

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
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

// TestServiceInfoIsWhatALoadBalancerReads: service discovery describes an app by its labels and
// its ports in order — a port mapping's name, protocols and service port, or a port
// definition's — as marathon-lb reads an app's.
func TestServiceInfoIsWhatALoadBalancerReads(t *testing.T) {
	mapped := testApp(t, `{"id": "/shop/web", "labels": {"HAPROXY_0_VHOST": "shop.example.com"}, "container": {"type": "DOCKER",
		"docker": {"image": "web"}, "portMappings": [{"containerPort": 80, "name": "http", "servicePort": 10010},
		{"containerPort": 53, "protocol": "udp,tcp", "servicePort": 10011}]}}`).app
	got := serviceInfo(mapped)
	want := api.ServiceInfo{Name: "/shop/web", Labels: map[string]string{"HAPROXY_0_VHOST": "shop.example.com"}, Ports: []api.ServicePort{
		{Index: 0, Name: "http", Protocol: "tcp", ServicePort: 10010}, {Index: 1, Protocol: "udp,tcp", ServicePort: 10011}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("port mappings: %+v, want %+v", got, want)
	}
	plain := testApp(t, `{"id": "/api", "cmd": "serve", "portDefinitions": [{"port": 10020, "name": "admin", "protocol": "udp"}]}`).app
	if got := serviceInfo(plain); len(got.Labels) != 0 || !reflect.DeepEqual(got.Ports, []api.ServicePort{{Index: 0, Name: "admin", Protocol: "udp", ServicePort: 10020}}) {
		t.Fatalf("port definitions: %+v", got)
	}
}
