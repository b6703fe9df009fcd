package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/clock"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestTracker(t *testing.T) {
	type step struct {
		at      time.Duration // after the start
		ok      bool
		changed bool
		kill    bool
		healthy bool
		fails   int
	}
	for _, tc := range []struct {
		name  string
		check Check
		steps []step
	}{
		{"failures in the grace period are ignored until the first success",
			Check{GracePeriodSeconds: 10, MaxConsecutiveFailures: 2},
			[]step{{at: 1, ok: false}, {at: 5, ok: false}, {at: 9, ok: true, changed: true, healthy: true}, {at: 10, ok: false, changed: true, fails: 1}, {at: 11, ok: false, kill: true, fails: 2}}},
		{"after the grace period failures count",
			Check{GracePeriodSeconds: 10, MaxConsecutiveFailures: 3},
			[]step{{at: 5, ok: false}, {at: 10, ok: false, changed: true, fails: 1}, {at: 11, ok: false, fails: 2}, {at: 12, ok: true, changed: true, healthy: true}, {at: 13, ok: false, changed: true, fails: 1}}},
		{"once healthy the grace period no longer shields",
			Check{GracePeriodSeconds: 100, MaxConsecutiveFailures: 1},
			[]step{{at: 1, ok: true, changed: true, healthy: true}, {at: 2, ok: false, changed: true, kill: true, fails: 1}}},
		{"zero max failures never kills",
			Check{GracePeriodSeconds: 0, MaxConsecutiveFailures: 0},
			[]step{{at: 1, ok: false, changed: true, fails: 1}, {at: 2, ok: false, fails: 2}, {at: 3, ok: false, fails: 3}}},
		{"success keeps quiet while healthy",
			Check{MaxConsecutiveFailures: 3},
			[]step{{at: 1, ok: true, changed: true, healthy: true}, {at: 2, ok: true, healthy: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(tc.check, t0)
			for i, s := range tc.steps {
				v := tr.Observe(s.ok, "cause", t0.Add(s.at*time.Second))
				if v.Changed != s.changed || v.Kill != s.kill || v.Status.ConsecutiveFailures != s.fails || (v.Status.Known && v.Status.Healthy != s.healthy) {
					t.Fatalf("step %d %+v: got %+v", i, s, v)
				}
			}
		})
	}
}

func TestJSONDefaultsAndExplicitZero(t *testing.T) {
	var c Check
	if err := json.Unmarshal([]byte(`{"protocol":"http","path":"/health"}`), &c); err != nil {
		t.Fatal(err)
	}
	want := Check{Protocol: HTTP, Path: "/health", GracePeriodSeconds: 300, IntervalSeconds: 60, TimeoutSeconds: 20, MaxConsecutiveFailures: 3, DelaySeconds: 15}
	if c != want {
		t.Fatalf("defaults: %+v", c)
	}
	c = Check{}
	if err := json.Unmarshal([]byte(`{"protocol":"MESOS_HTTP","path":"/health"}`), &c); err != nil || c.DelaySeconds != 15 || c.Protocol != MesosHTTP {
		t.Fatalf("MESOS_HTTP defaults: %+v %v", c, err)
	}
	c = Check{}
	if err := json.Unmarshal([]byte(`{"protocol":"MESOS_HTTP","delaySeconds":2}`), &c); err != nil || c.DelaySeconds != 2 {
		t.Fatalf("explicit delay: %+v %v", c, err)
	}
	if err := json.Unmarshal([]byte(`{"protocol":"MESOS_TCP","maxConsecutiveFailures":0,"gracePeriodSeconds":0,"delaySeconds":0}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Protocol != MesosTCP || c.MaxConsecutiveFailures != 0 || c.GracePeriodSeconds != 0 || c.DelaySeconds != 0 || c.IntervalSeconds != 60 {
		t.Fatalf("explicit zeros: %+v", c)
	}
	if err := json.Unmarshal([]byte(`{"protocol":"COMMAND","command":{"value":"test -f /ok"}}`), &c); err != nil || c.Command != "test -f /ok" {
		t.Fatalf("Marathon's command shape: %+v %v", c, err)
	}
	// What a framework sends an agent reads back the same: a MESOS_ check stays one.
	b, _ := json.Marshal(Check{Protocol: MesosHTTP, Path: "/health", IntervalSeconds: 5, TimeoutSeconds: 2, DelaySeconds: 7})
	c = Check{}
	if err := json.Unmarshal(b, &c); err != nil || c.Protocol != MesosHTTP || c.DelaySeconds != 7 || c.delay() != 7*time.Second {
		t.Fatalf("round trip of %s: %+v %v", b, c, err)
	}
}

// TestFirstProbeWaitsAsMarathonDoes: the checks Marathon 1.10 leaves to Mesos (MESOS_HTTP,
// MESOS_HTTPS, MESOS_TCP, COMMAND) wait delaySeconds (15 unless given) after the task started
// before their first probe, as Mesos's delay_seconds does; Marathon's own (HTTP, HTTPS, TCP)
// probe at once whatever delaySeconds says, as Marathon, which keeps the field without acting
// on it. Checks restarted later (the agent restarted) wait only what is left of the delay.
func TestFirstProbeWaitsAsMarathonDoes(t *testing.T) {
	for _, tc := range []struct {
		check   string
		started time.Duration // how long before Run the task started
		first   time.Duration // when the first probe comes after Run starts
	}{
		{`{"protocol":"HTTP"}`, 0, 0},
		{`{"protocol":"HTTPS","delaySeconds":30}`, 0, 0},
		{`{"protocol":"TCP","delaySeconds":30}`, 0, 0},
		{`{"protocol":"MESOS_HTTP"}`, 0, 15 * time.Second},
		{`{"protocol":"MESOS_HTTPS","delaySeconds":3}`, 0, 3 * time.Second},
		{`{"protocol":"MESOS_TCP","delaySeconds":0}`, 0, 0},
		{`{"protocol":"COMMAND","command":"true"}`, 0, 15 * time.Second},
		{`{"protocol":"COMMAND","command":"true","delaySeconds":0}`, 0, 0},
		{`{"protocol":"COMMAND","command":"true"}`, 10 * time.Second, 5 * time.Second},
		{`{"protocol":"MESOS_HTTP"}`, time.Hour, 0},
	} {
		t.Run(fmt.Sprintf("%s started %s before", tc.check, tc.started), func(t *testing.T) {
			var c Check
			if err := json.Unmarshal([]byte(tc.check), &c); err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(t0)
			probed := make(chan time.Time, 10)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				Run(ctx, RunConfig{Check: c, Started: t0.Add(-tc.started), Clock: clk,
					Probe: func(context.Context, Check, Target) error { probed <- clk.Now(); return nil }})
			}()
			defer func() { cancel(); <-done }()
			if tc.first > 0 {
				waitWaiter(t, clk)
				clk.Advance(tc.first - time.Second)
				select {
				case at := <-probed:
					t.Fatalf("probed at %s, before the delay of %s", at.Sub(t0), tc.first)
				default:
				}
				clk.Advance(time.Second)
			}
			select {
			case at := <-probed:
				if got := at.Sub(t0); got != tc.first {
					t.Fatalf("first probe %s after Run started, want %s", got, tc.first)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no probe %s after Run started", tc.first)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	base := func() Check {
		return Check{Protocol: HTTP, IntervalSeconds: 10, TimeoutSeconds: 5, GracePeriodSeconds: 1, MaxConsecutiveFailures: 1}
	}
	for _, tc := range []struct {
		field string
		edit  func(*Check)
		ports int
	}{
		{"protocol", func(c *Check) { c.Protocol = "UDP" }, 1},
		{"protocol", func(c *Check) { c.Protocol = "" }, 1},
		{"portIndex", func(c *Check) { c.PortIndex = 1 }, 1},
		{"portIndex", func(c *Check) {}, 0},
		{"portIndex", func(c *Check) { c.Protocol = MesosTCP; c.PortIndex = 1 }, 1},
		{"protocol", func(c *Check) { c.Protocol = "MESOS_UDP" }, 1},
		{"delaySeconds", func(c *Check) { c.DelaySeconds = -1 }, 1},
		{"command", func(c *Check) { c.Protocol = Command }, 0},
		{"path", func(c *Check) { c.Path = "health" }, 1},
		{"intervalSeconds", func(c *Check) { c.IntervalSeconds = 0 }, 1},
		{"timeoutSeconds", func(c *Check) { c.TimeoutSeconds = 0 }, 1},
		{"gracePeriodSeconds", func(c *Check) { c.GracePeriodSeconds = -1 }, 1},
		{"maxConsecutiveFailures", func(c *Check) { c.MaxConsecutiveFailures = -1 }, 1},
	} {
		c := base()
		tc.edit(&c)
		var fe *FieldError
		if err := c.Validate(tc.ports); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v with %d ports: %v, want a %s error", c, tc.ports, err, tc.field)
		}
	}
	c := base()
	c.Port = 8080
	if err := c.Validate(0); err != nil {
		t.Errorf("a fixed port needs no task port: %v", err)
	}
}

func portOf(t *testing.T, addr string) uint64 {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	var n uint64
	fmt.Sscan(p, &n)
	return n
}

func TestProbeHTTP(t *testing.T) {
	var mu sync.Mutex
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := status
		mu.Unlock()
		if s == 0 {
			time.Sleep(3 * time.Second)
			return
		}
		if s == 302 {
			w.Header().Set("Location", "/elsewhere-that-fails")
		}
		w.WriteHeader(s)
	}))
	defer srv.Close()
	target := Target{Ports: []uint64{1, portOf(t, srv.Listener.Addr().String())}}
	c := Check{Protocol: HTTP, Path: "/health", PortIndex: 1, TimeoutSeconds: 1}
	for _, tc := range []struct {
		status  int
		healthy bool
		says    string
	}{{200, true, ""}, {302, true, ""}, {500, false, "status 500"}, {0, false, "timeout"}} {
		mu.Lock()
		status = tc.status
		mu.Unlock()
		start := time.Now()
		err := Probe(context.Background(), c, target)
		if (err == nil) != tc.healthy || err != nil && !strings.Contains(err.Error(), tc.says) {
			t.Errorf("status %d: %v", tc.status, err)
		}
		if time.Since(start) > 2500*time.Millisecond {
			t.Errorf("status %d: the probe took %v, over its 1 s timeout", tc.status, time.Since(start))
		}
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := portOf(t, ln.Addr().String())
	for _, p := range []Protocol{TCP, MesosTCP} {
		c := Check{Protocol: p, TimeoutSeconds: 1}
		if err := Probe(context.Background(), c, Target{Ports: []uint64{open}}); err != nil {
			t.Fatalf("%s, open port: %v", p, err)
		}
	}
	ln.Close()
	if err := Probe(context.Background(), Check{Protocol: MesosTCP, TimeoutSeconds: 1}, Target{Ports: []uint64{open}}); err == nil || !strings.Contains(err.Error(), "TCP connect") {
		t.Fatalf("closed port: %v", err)
	}
}

type fakeExec struct{ code int }

func (f fakeExec) Exec(ctx context.Context, taskID string, argv []string) (int, []byte, error) {
	if taskID != "t1" || strings.Join(argv, " ") != "sh -c test -f /ok" {
		return -1, nil, fmt.Errorf("unexpected exec %s %v", taskID, argv)
	}
	return f.code, []byte("out"), nil
}

func TestProbeCommand(t *testing.T) {
	c := Check{Protocol: Command, Command: "test -f /ok", TimeoutSeconds: 1}
	if err := Probe(context.Background(), c, Target{TaskID: "t1", Exec: fakeExec{0}}); err != nil {
		t.Fatal(err)
	}
	if err := Probe(context.Background(), c, Target{TaskID: "t1", Exec: fakeExec{1}}); err == nil || !strings.Contains(err.Error(), "exited 1") {
		t.Fatalf("exit 1: %v", err)
	}
}

// TestRunKillsAfterConsecutiveFailures drives Run with a fake clock: healthy first, then failing;
// the kill comes after exactly MaxConsecutiveFailures probes.
func TestRunKillsAfterConsecutiveFailures(t *testing.T) {
	clk := clock.NewFake(t0)
	var mu sync.Mutex
	healthy := true
	probes := 0
	probed := make(chan struct{}, 100)
	verdicts := make(chan Verdict, 100)
	c := Check{Protocol: MesosTCP, IntervalSeconds: 10, TimeoutSeconds: 1, GracePeriodSeconds: 0, MaxConsecutiveFailures: 3, DelaySeconds: 5}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(context.Background(), RunConfig{Check: c, Started: t0, Clock: clk,
			Probe: func(context.Context, Check, Target) error {
				mu.Lock()
				defer mu.Unlock()
				probes++
				probed <- struct{}{}
				if healthy {
					return nil
				}
				return errors.New("down")
			},
			OnVerdict: func(v Verdict) { verdicts <- v },
		})
	}()
	step := func(d time.Duration) {
		t.Helper()
		waitWaiter(t, clk)
		clk.Advance(d)
		select {
		case <-probed:
		case <-time.After(10 * time.Second):
			t.Fatal("no probe")
		}
	}
	step(5 * time.Second) // the delay
	if v := <-verdicts; !v.Status.Healthy || !v.Changed {
		t.Fatalf("first verdict %+v", v)
	}
	mu.Lock()
	healthy = false
	mu.Unlock()
	step(10 * time.Second)
	if v := <-verdicts; v.Status.Healthy || v.Kill {
		t.Fatalf("first failure %+v", v)
	}
	step(10 * time.Second)
	step(10 * time.Second)
	v := <-verdicts
	if !v.Kill || v.Status.ConsecutiveFailures != 3 {
		t.Fatalf("third failure %+v", v)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run went on after a kill verdict")
	}
	if probes != 4 {
		t.Fatalf("%d probes, want 4", probes)
	}
}

// waitWaiter waits until Run is blocked on the fake clock.
func waitWaiter(t *testing.T, clk *clock.Fake) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}
