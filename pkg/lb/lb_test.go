package lb

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/client"
	"github.com/agora-sched/agora/pkg/lb/lbtest"
)

// fakeMaster serves GET /v1/services as the masters' contract says: asked for
// text/event-stream, a "services" event with the whole document at once, then again at each
// change, and a keepalive comment between.
type fakeMaster struct {
	mu      sync.Mutex
	doc     api.Services
	changed chan struct{}
	streams atomic.Int32
}

func newFakeMaster(doc api.Services) *fakeMaster {
	return &fakeMaster{doc: doc, changed: make(chan struct{})}
}

func (f *fakeMaster) set(doc api.Services) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.doc = doc
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeMaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != ServicesPath || r.Header.Get("Accept") != "text/event-stream" {
		http.Error(w, `{"message": "want GET /v1/services, Accept: text/event-stream"}`, http.StatusNotAcceptable)
		return
	}
	f.streams.Add(1)
	w.Header().Set("Content-Type", "text/event-stream")
	keepalive := time.NewTicker(100 * time.Millisecond)
	defer keepalive.Stop()
	for {
		f.mu.Lock()
		doc, changed := f.doc, f.changed
		f.mu.Unlock()
		b, _ := json.Marshal(doc)
		fmt.Fprintf(w, "event: services\ndata: %s\n\n", b)
		w.(http.Flusher).Flush()
	wait:
		for {
			select {
			case <-r.Context().Done():
				return
			case <-changed:
				break wait
			case <-keepalive.C:
				fmt.Fprint(w, ": keepalive\n\n")
				w.(http.Flusher).Flush()
			}
		}
	}
}

// instance is a small HTTP server on loopback standing for one instance of an app: it answers
// its name.
type instance struct {
	name string
	port int
	srv  *http.Server
}

func startInstance(t *testing.T, name string) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{name: name, port: ln.Addr().(*net.TCPAddr).Port}
	in.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s", name, r.Host)
	})}
	go in.srv.Serve(ln)
	t.Cleanup(func() { in.srv.Close() })
	return in
}

// webDoc is the document of one Marathon app /shop/web on servicePort with a vhost, and the
// instances given.
func webDoc(servicePort int, labels map[string]string, ins ...*instance) api.Services {
	s := api.ServiceEntry{Framework: "marathon", Name: "/shop/web", Labels: map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop.example.com"},
		Ports: []api.ServicePort{{Index: 0, Name: "http", Protocol: "tcp", ServicePort: servicePort}}}
	for k, v := range labels {
		s.Labels[k] = v
	}
	for _, in := range ins {
		s.Instances = append(s.Instances, api.ServiceInstance{TaskID: "shop_web." + in.name, AgentID: "a-1", Host: "localhost", IP: "127.0.0.1", Ports: []int{in.port}})
	}
	return api.Services{Index: 1, Term: 1, Leader: "m-1", Services: []api.ServiceEntry{s}}
}

// testWriter sends HAProxy's log to the test's.
type testWriter struct {
	t      *testing.T
	prefix string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type runningLB struct {
	*LB
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runningLB) stop() { r.cancel(); <-r.done }

func startLB(t *testing.T, s Settings) *runningLB {
	t.Helper()
	s.Logger = slog.New(slog.NewTextHandler(testWriter{t, "lb: "}, nil))
	s.HAProxyOutput = testWriter{t, "haproxy: "}
	l, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningLB{LB: l, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); _ = l.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// value is a counter's or gauge's value now.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// waitFor polls cond every 50 ms for at most d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// reaches says whether requests through HAProxy reach exactly the instances named (by their
// answers, over enough requests for roundrobin to visit each).
func reaches(port int, host string, names ...string) bool {
	seen := map[string]bool{}
	for range 4 * len(names) {
		code, body, err := lbtest.Get(port, host)
		if err != nil || code != http.StatusOK {
			return false
		}
		seen[strings.Fields(body)[0]] = true
	}
	if len(seen) != len(names) {
		return false
	}
	for _, n := range names {
		if !seen[n] {
			return false
		}
	}
	return true
}

// TestFollowAndReload: agora lb follows a master's services stream (after a master that does
// not answer), runs HAProxy with the config, and reloads it as instances change: requests by
// Host header and on the service port reach the instances; a bounded loop of requests across
// a rolling replacement (an instance stopped before the masters stop listing it) all get 200;
// a config HAProxy refuses is not applied and is counted invalid; with the masters gone,
// HAProxy serves on, and a new lb serves the last config before any master answers.
func TestFollowAndReload(t *testing.T) {
	haproxy := lbtest.HAProxy(t)
	dir := t.TempDir()
	one, two, three := startInstance(t, "one"), startInstance(t, "two"), startInstance(t, "three")
	httpPort, servicePort := lbtest.FreePort(t), lbtest.FreePort(t)
	fm := newFakeMaster(webDoc(servicePort, nil, one))
	master := httptest.NewServer(fm)
	t.Cleanup(func() { master.CloseClientConnections(); master.Close() }) // after the lb stops
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // a master that does not answer: the lb goes on to the next
	deadClient, _ := client.New(dead.URL)
	liveClient, _ := client.New(master.URL)

	settings := Settings{
		Masters:    []Master{deadClient, liveClient},
		Options:    Options{Groups: []string{"external"}, BindAddr: "127.0.0.1", HTTPPort: httpPort, StatsSocket: filepath.Join(dir, "run", "haproxy.sock")},
		ConfigPath: filepath.Join(dir, "haproxy.cfg"),
		HAProxy:    haproxy,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	l := startLB(t, settings)
	waitFor(t, "HAProxy serving the first instance by Host header", 20*time.Second, func() bool { return reaches(httpPort, "shop.example.com", "one") })
	if !reaches(servicePort, "anything", "one") {
		t.Fatal("the service port's frontend does not reach the instance")
	}
	if code, _, err := lbtest.Get(httpPort, "other.example.com"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a host no app has: %d %v, want HAProxy's 503", code, err)
	}
	if fi, err := os.Stat(settings.Options.StatsSocket); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the admin socket: %v %v, want a unix socket of mode 600", fi, err)
	}
	if got := value(l.metrics.connected); got != 1 {
		t.Fatalf("agora_lb_master_connected %v, want 1", got)
	}

	// Scaled to 2: both get requests.
	fm.set(webDoc(servicePort, nil, one, two))
	waitFor(t, "both instances served", 20*time.Second, func() bool { return reaches(httpPort, "shop.example.com", "one", "two") })

	// A rolling replacement: three starts, one stops, and only then do the masters stop listing
	// it (their view refreshes every 2.5 s). A bounded loop of requests runs across it all.
	loop := lbtest.StartLoop(t, httpPort, "shop.example.com", 5000, 60*time.Second, func(code int, _ string, err error) bool {
		return err == nil && code == http.StatusOK
	})
	reloads := value(l.metrics.reloads.WithLabelValues(resultOK))
	fm.set(webDoc(servicePort, nil, one, two, three))
	waitFor(t, "the third instance served", 20*time.Second, func() bool { return reaches(httpPort, "shop.example.com", "one", "two", "three") })
	one.srv.Close()
	stopped := loop.Total() // requests meet the stopped instance before the masters drop it
	waitFor(t, "50 requests with an instance stopped", 30*time.Second, func() bool { return loop.Total() >= stopped+50 })
	fm.set(webDoc(servicePort, nil, two, three))
	waitFor(t, "the stopped instance out of the config", 20*time.Second, func() bool {
		return value(l.metrics.reloads.WithLabelValues(resultOK))-reloads == 2
	})
	after := loop.Total()
	waitFor(t, "50 more requests after the reload", 30*time.Second, func() bool { return loop.Total() >= after+50 })
	total, failed := loop.Stop()
	if failed > 0 || total < 20 {
		t.Fatalf("%d of %d requests across the replacement failed", failed, total)
	}
	if got := value(l.metrics.reloads.WithLabelValues(resultOK)) - reloads; got != 2 {
		t.Fatalf("%v reloads for 2 changes", got)
	}
	t.Logf("%d requests across a rolling replacement, all 200", total)

	// The same services again (a newer view): no reload.
	same := webDoc(servicePort, nil, two, three)
	same.Index = 99
	fm.set(same)
	waitFor(t, "the lb at index 99", 10*time.Second, func() bool { return l.Status().Index == 99 })
	if got := value(l.metrics.reloads.WithLabelValues(resultOK)) - reloads; got != 2 {
		t.Fatalf("an unchanged config reloaded HAProxy: %v reloads", got)
	}

	// A label HAProxy refuses: the config is not applied, it is counted invalid, and HAProxy
	// serves on with the config it has.
	before, _ := os.ReadFile(settings.ConfigPath)
	fm.set(webDoc(servicePort, map[string]string{"HAPROXY_0_BALANCE": "nonsense"}, two, three))
	waitFor(t, "the refused config counted", 10*time.Second, func() bool {
		return value(l.metrics.reloads.WithLabelValues(resultInvalid)) == 1
	})
	if after, _ := os.ReadFile(settings.ConfigPath); string(after) != string(before) {
		t.Fatal("the refused config replaced the file")
	}
	if !reaches(httpPort, "shop.example.com", "two", "three") {
		t.Fatal("HAProxy stopped serving after a refused config")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 { // haproxy.cfg and run/, no temp file
		t.Fatalf("left in the config's directory: %v", entries)
	}

	// The masters go away: HAProxy serves on with the last config.
	master.CloseClientConnections()
	master.Close()
	waitFor(t, "agora_lb_master_connected 0", 10*time.Second, func() bool { return value(l.metrics.connected) == 0 })
	if !reaches(httpPort, "shop.example.com", "two", "three") {
		t.Fatal("HAProxy stopped serving when the masters went away")
	}

	// agora lb stops (HAProxy with it), and starts again with no master answering: it serves
	// the config it wrote last.
	l.stop()
	if code, _, err := lbtest.Get(httpPort, "shop.example.com"); err == nil {
		t.Fatalf("HAProxy still answers (%d) after agora lb stopped", code)
	}
	settings.Masters = []Master{deadClient}
	startLB(t, settings)
	waitFor(t, "the last config served without a master", 20*time.Second, func() bool { return reaches(httpPort, "shop.example.com", "two", "three") })
}
