package lb

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// configWords are the first words of every line Generate writes: a label that made a line of
// its own would start it with another.
var configWords = map[string]bool{
	"": true, "#": true, "global": true, "defaults": true, "frontend": true, "backend": true,
	"log": true, "stats": true, "spread-checks": true, "hard-stop-after": true, "option": true,
	"retries": true, "timeout": true, "default-server": true, "bind": true, "mode": true,
	"acl": true, "use_backend": true, "balance": true, "http-request": true, "retry-on": true,
	"server": true,
}

// FuzzGenerateLabels: whatever an app's labels say, Generate neither panics nor writes a line
// of the labels' own; the same labels give the same text.
func FuzzGenerateLabels(f *testing.F) {
	f.Add("external", "shop.example.com,www.example.com", "http", "10000", "roundrobin", "127.0.0.1", "/api", "5", "true")
	f.Add("*", "a\nb", "tcp", "0", "leastconn\n  lua-load /x", "::1", "-i /a /b", "x", "false")
	f.Fuzz(func(t *testing.T, group, vhost, mode, port, balance, bind, path, weight, enabled string) {
		doc := api.Services{Services: []api.ServiceEntry{{
			Framework: "marathon", Name: "/fuzz/app",
			Labels: map[string]string{"HAPROXY_GROUP": group, "HAPROXY_0_VHOST": vhost, "HAPROXY_0_MODE": mode, "HAPROXY_0_PORT": port,
				"HAPROXY_0_BALANCE": balance, "HAPROXY_0_BIND_ADDR": bind, "HAPROXY_0_PATH": path, "HAPROXY_0_BACKEND_WEIGHT": weight,
				"HAPROXY_0_ENABLED": enabled, "HAPROXY_1_GROUP": group},
			Ports:     []api.ServicePort{{Index: 0, Protocol: "tcp", ServicePort: 10000}, {Index: 1, Protocol: "tcp", ServicePort: 10001}},
			Instances: []api.ServiceInstance{{TaskID: "fuzz_app.1", Host: "node1", IP: "10.0.0.1", Ports: []int{31000, 31001}}},
		}}}
		opts := Options{Groups: []string{"external", "*"}, BindAddr: "127.0.0.1", HTTPPort: 80, StatsSocket: "/run/agora-lb/haproxy.sock"}
		cfg := Generate(doc, opts)
		for _, line := range strings.Split(cfg.Text, "\n") {
			word, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if !configWords[word] {
				t.Fatalf("a line of the labels' own: %q\n%s", line, cfg.Text)
			}
		}
		if again := Generate(doc, opts); again.Text != cfg.Text {
			t.Fatal("the same labels gave another config")
		}
	})
}

// FuzzFollowStream: whatever a master's stream carries, the follower neither panics nor hangs;
// what it hands on is a decoded document.
func FuzzFollowStream(f *testing.F) {
	f.Add("event: services\ndata: {\"index\": 3, \"services\": []}\n\n: keepalive\n\n")
	f.Add("data: {\"index\":\ndata: 4}\n\nevent: other\ndata: x\n\n")
	f.Add("event: services\ndata: not json\n\n")
	f.Fuzz(func(t *testing.T, stream string) {
		fl := &follower{idle: time.Minute, log: slog.New(slog.NewTextHandler(io.Discard, nil)), connected: func(bool) {}, doc: func(api.Services) {}}
		done := make(chan struct{})
		go func() { defer close(done); _, _ = fl.stream(context.Background(), stringMaster(stream)) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the follower did not finish a stream that ended")
		}
	})
}

// stringMaster is a master whose stream is a fixed text, then its end.
type stringMaster string

func (m stringMaster) Events(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(m))), nil
}

func (m stringMaster) Addr() string { return "fuzz" }
