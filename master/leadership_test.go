package master

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// recorder is a leader service that records its starts and stops and checks it never runs
// twice at once.
type recorder struct {
	mu      sync.Mutex
	running int
	starts  int
	stops   int
	overlap bool
	failing bool
}

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) Run(ctx context.Context) error {
	r.mu.Lock()
	r.running++
	r.starts++
	if r.running > 1 {
		r.overlap = true
	}
	fail := r.failing
	r.mu.Unlock()
	if !fail {
		<-ctx.Done()
		time.Sleep(5 * time.Millisecond) // a service takes a moment to wind down
	}
	r.mu.Lock()
	r.running--
	r.stops++
	r.mu.Unlock()
	if fail {
		return context.DeadlineExceeded
	}
	return nil
}

func (r *recorder) snapshot() (running, starts, stops int, overlap bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, r.starts, r.stops, r.overlap
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLeadershipStartsAndStopsServices(t *testing.T) {
	l := &leadership{logger: slog.New(slog.DiscardHandler), stopTimeout: time.Second}
	a, b := &recorder{}, &recorder{}
	l.register(a)
	l.register(b)
	events := make(chan bool)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.run(ctx, events); close(done) }()

	events <- true
	waitFor(t, "both services running", func() bool {
		ra, _, _, _ := a.snapshot()
		rb, _, _, _ := b.snapshot()
		return ra == 1 && rb == 1 && l.isRunning()
	})
	events <- true // a repeated gain changes nothing
	events <- false
	waitFor(t, "services stopped", func() bool { return !l.isRunning() })
	if running, starts, stops, _ := a.snapshot(); running != 0 || starts != 1 || stops != 1 {
		t.Fatalf("after losing: running %d starts %d stops %d", running, starts, stops)
	}
	// Flapping quickly never runs two terms at once.
	for i := 0; i < 20; i++ {
		events <- true
		events <- false
	}
	events <- true
	waitFor(t, "running again", func() bool { r, _, _, _ := a.snapshot(); return r == 1 })
	cancel()
	<-done
	if running, starts, stops, overlap := a.snapshot(); running != 0 || starts != stops || overlap {
		t.Fatalf("after shutdown: running %d starts %d stops %d overlap %v", running, starts, stops, overlap)
	}
}

func TestLeadershipRestartsAFailedService(t *testing.T) {
	l := &leadership{logger: slog.New(slog.DiscardHandler), stopTimeout: time.Second}
	r := &recorder{failing: true}
	l.register(r)
	events := make(chan bool, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.run(ctx, events)
	events <- true
	waitFor(t, "a second start after the failure", func() bool { _, starts, _, _ := r.snapshot(); return starts >= 2 })
}
