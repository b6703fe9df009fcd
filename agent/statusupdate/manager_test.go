package statusupdate

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/task"
)

// master records what reached it and can refuse deliveries.
type master struct {
	mu    sync.Mutex
	got   []string // task/uuid
	down  bool
	ready chan struct{}
}

func (m *master) Send(ctx context.Context, u checkpoint.Update) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errors.New("connection refused")
	}
	m.got = append(m.got, u.TaskID+"/"+u.UUID)
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return nil
}

func (m *master) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func start(t *testing.T, store *checkpoint.Store, m *master, clk *clock.Fake) (*Manager, context.CancelFunc) {
	mgr := New(Config{Store: store, Sender: m, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { mgr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return mgr, func() { cancel(); <-done }
}

func u(id, uuid string) checkpoint.Update {
	return checkpoint.Update{TaskID: id, UUID: uuid, State: task.Running}
}

func TestInOrderResentUntilAckedAndAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	store, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Unix(0, 0))
	m := &master{ready: make(chan struct{}, 100)}
	mgr, stop := start(t, store, m, clk)

	for _, up := range []checkpoint.Update{u("a", "a1"), u("a", "a2"), u("b", "b1")} {
		if err := mgr.Update(up); err != nil {
			t.Fatal(err)
		}
	}
	// The head of each task goes out; a2 waits for a1's ack.
	waitFor(t, "a1 and b1 sent", func() bool { return len(m.received()) == 2 })
	waitFor(t, "the manager asleep", func() bool { return clk.Waiters() > 0 })

	// No ack: resent after the backoff, again after twice that.
	clk.Advance(InitialBackoff)
	waitFor(t, "first resend", func() bool { return len(m.received()) == 4 })
	waitFor(t, "asleep", func() bool { return clk.Waiters() > 0 })
	clk.Advance(InitialBackoff) // not yet: the second wait is 2s
	time.Sleep(20 * time.Millisecond)
	if n := len(m.received()); n != 4 {
		t.Fatalf("resent before the doubled backoff: %v", m.received())
	}
	clk.Advance(InitialBackoff)
	waitFor(t, "second resend", func() bool { return len(m.received()) == 6 })

	// An ack of a1 releases a2 at once; a stale ack changes nothing.
	if err := mgr.Ack("a", "zz"); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Ack("a", "a1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a2 sent", func() bool {
		r := m.received()
		return r[len(r)-1] == "a/a2"
	})

	// The agent restarts: what was not acknowledged (a2, b1) is sent again.
	stop()
	store.Close()
	store, err = checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m2 := &master{ready: make(chan struct{}, 100)}
	start(t, store, m2, clk)
	waitFor(t, "resend after restart", func() bool { return len(m2.received()) == 2 })
	got := m2.received()
	if !(got[0] == "a/a2" && got[1] == "b/b1" || got[0] == "b/b1" && got[1] == "a/a2") {
		t.Fatalf("after restart the master got %v, want a2 and b1", got)
	}
}

func TestMasterDownKeepsRetrying(t *testing.T) {
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	clk := clock.NewFake(time.Unix(0, 0))
	m := &master{down: true, ready: make(chan struct{}, 100)}
	mgr, _ := start(t, store, m, clk)
	if err := mgr.Update(u("a", "a1")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		waitFor(t, "asleep", func() bool { return clk.Waiters() > 0 })
		clk.Advance(MaxBackoff)
	}
	m.mu.Lock()
	m.down = false
	m.mu.Unlock()
	waitFor(t, "asleep", func() bool { return clk.Waiters() > 0 })
	clk.Advance(MaxBackoff)
	waitFor(t, "delivered once the master is back", func() bool { return len(m.received()) >= 1 })
}

func TestStatsCountResendsAndPendingUpdates(t *testing.T) {
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	clk := clock.NewFake(time.Unix(0, 0))
	m := &master{ready: make(chan struct{}, 100)}
	mgr, _ := start(t, store, m, clk)
	for _, up := range []checkpoint.Update{u("a", "a1"), u("a", "a2"), u("b", "b1")} {
		if err := mgr.Update(up); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a1 and b1 sent", func() bool { return len(m.received()) == 2 })
	waitFor(t, "three pending", func() bool { return mgr.Stats().Pending == 3 })
	if st := mgr.Stats(); st.Resent != 0 {
		t.Fatalf("after the first sends: %+v, want nothing resent", st)
	}

	// No ack within the backoff: both heads go again.
	waitFor(t, "the manager asleep", func() bool { return clk.Waiters() > 0 })
	clk.Advance(InitialBackoff)
	waitFor(t, "the resends", func() bool { return len(m.received()) == 4 })
	if st := mgr.Stats(); st.Resent != 2 || st.Pending != 3 {
		t.Fatalf("after the backoff: %+v, want 2 resent and 3 pending", st)
	}

	// An ack sends the next update for the first time: not a resend.
	if err := mgr.Ack("a", "a1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a2 sent", func() bool { return len(m.received()) == 5 })
	if st := mgr.Stats(); st.Resent != 2 || st.Pending != 2 {
		t.Fatalf("after an ack: %+v, want 2 resent and 2 pending", st)
	}

	// A flush (a new leader) resends every unacknowledged head at once.
	mgr.Flush()
	waitFor(t, "the flushed resends", func() bool { return len(m.received()) == 7 })
	if st := mgr.Stats(); st.Resent != 4 {
		t.Fatalf("after a flush: %+v, want 4 resent", st)
	}
	if err := mgr.Ack("a", "a2"); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Ack("b", "b1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nothing pending", func() bool { return mgr.Stats().Pending == 0 })
}

func TestBackoffDoublesToTheCap(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestDueSendsNewHeadsAndDueResends(t *testing.T) {
	now := time.Unix(100, 0)
	heads := map[string]checkpoint.Update{"new": u("new", "n1"), "waiting": u("waiting", "w1"), "due": u("due", "d1"), "moved": u("moved", "m2")}
	inflight := map[string]sent{
		"waiting": {uuid: "w1", attempt: 1, next: now.Add(time.Second)},
		"due":     {uuid: "d1", attempt: 2, next: now},
		"moved":   {uuid: "m1", attempt: 3, next: now.Add(time.Hour)},
	}
	send, wake := due(heads, inflight, now)
	var ids []string
	for _, s := range send {
		ids = append(ids, s.UUID)
	}
	if len(ids) != 3 || ids[0] != "d1" || ids[1] != "m2" || ids[2] != "n1" || !wake.Equal(now.Add(time.Second)) {
		t.Fatalf("due = %v, wake %v", ids, wake)
	}
}
