package discovery

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/clock"
)

// TestKeeperFollowerKeepsTheLastView: a follower fetches the leader's view; when the leader
// stops answering it keeps answering the last one, whose age grows past the bound; the masters
// are its own.
func TestKeeperFollowerKeepsTheLastView(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	leaderUp := true
	fetches := 0
	var changes []uint64
	k := NewKeeper(Config{Refresh: 2 * time.Second, Clock: clk,
		Build: func(*View) (*View, error) { return nil, ErrNotLeader },
		Fetch: func(ctx context.Context) (*View, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("a fetch without a deadline")
			}
			if !leaderUp {
				return nil, errors.New("connection refused")
			}
			fetches++
			return &View{Index: uint64(10 * fetches), Leader: "m1"}, nil
		},
		Masters:  func() ([]Master, string) { return []Master{{ID: "m2"}}, "m2" },
		OnChange: func(v *View, _ time.Time) { changes = append(changes, v.Index) },
	})
	if k.Bound() != 3*time.Second {
		t.Fatalf("Bound = %s, want the refresh and the fetch timeout (1 s)", k.Bound())
	}
	if v, age, _ := k.Current(); v != nil || age >= 0 {
		t.Fatalf("before a refresh: %v %s", v, age)
	}
	k.Refresh(context.Background())
	clk.Advance(1500 * time.Millisecond)
	v, age, src := k.Current()
	if v.Index != 10 || age != 1500*time.Millisecond || src != "fetched" || v.LeaderID != "m2" || v.Masters[0].ID != "m2" {
		t.Fatalf("after a fetch: %+v, age %s, %s", v, age, src)
	}
	leaderUp = false
	k.Refresh(context.Background())
	clk.Advance(5 * time.Second)
	v, age, _ = k.Current()
	if v.Index != 10 || age != 6500*time.Millisecond {
		t.Fatalf("leader gone: index %d age %s; want the last view, its age growing", v.Index, age)
	}
	leaderUp = true
	k.Refresh(context.Background())
	if v, age, _ = k.Current(); v.Index != 20 || age != 0 {
		t.Fatalf("leader back: index %d age %s", v.Index, age)
	}
	if want := []uint64{10, 10, 20}; len(changes) != 3 || changes[1] != want[1] || changes[2] != want[2] {
		t.Fatalf("OnChange got %v, want %v", changes, want)
	}
}

// TestKeeperLeaderBuildsFromTheViewBefore: a leader builds; Build is given the view it held.
func TestKeeperLeaderBuildsFromTheViewBefore(t *testing.T) {
	var prevs []*View
	k := NewKeeper(Config{
		Build: func(prev *View) (*View, error) {
			prevs = append(prevs, prev)
			return &View{Index: uint64(len(prevs))}, nil
		},
		Fetch: func(context.Context) (*View, error) { t.Fatal("a leader fetched"); return nil, nil },
	})
	k.Refresh(context.Background())
	k.Refresh(context.Background())
	if prevs[0] != nil || prevs[1] == nil || prevs[1].Index != 1 {
		t.Fatalf("Build's views before: %v", prevs)
	}
	if v, err := k.View(); err != nil || v.Index != 3 {
		t.Fatalf("View: %v %v", v, err)
	}
	if _, _, src := k.Current(); src != "built" {
		t.Fatalf("source %q", src)
	}
}

// TestKeeperRefreshesOnlyWhileRead: Run builds nothing while nobody reads the view; a reader
// that comes then gets a fresh one at once (Fresh), and one within the bound is not read again.
func TestKeeperRefreshesOnlyWhileRead(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	var builds atomic.Int64
	var active atomic.Bool
	k := NewKeeper(Config{Refresh: 2 * time.Second, Clock: clk, Active: active.Load,
		Build: func(*View) (*View, error) { return &View{Index: uint64(builds.Add(1))}, nil },
		Fetch: func(context.Context) (*View, error) { t.Error("a leader fetched"); return nil, nil },
	})
	waiting := func() { // Run is waiting for its next tick
		for deadline := time.Now().Add(10 * time.Second); clk.Waiters() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("Run never waited for its tick")
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	for range 5 {
		waiting()
		clk.Advance(2 * time.Second)
	}
	waiting()
	if n := builds.Load(); n != 0 {
		t.Fatalf("%d builds while nobody read the view", n)
	}
	k.Fresh(ctx)
	if v, _, _ := k.Current(); v == nil || v.Index != 1 {
		t.Fatalf("a reader after idleness: %+v", v)
	}
	if k.Fresh(ctx); builds.Load() != 1 {
		t.Fatalf("a view within its bound was read again: %d builds", builds.Load())
	}
	active.Store(true)
	clk.Advance(2 * time.Second)
	for deadline := time.Now().Add(10 * time.Second); builds.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no build while the view is read")
		}
	}
	cancel()
	<-done
}

// TestKeeperPokedRefreshesSoon: a poke (the leader's task table changed) refreshes the view
// PokeGap after the last refresh, not a whole period later; pokes meanwhile are one.
func TestKeeperPokedRefreshesSoon(t *testing.T) {
	clk := clock.NewFake(time.Unix(1000, 0))
	var builds atomic.Int64
	k := NewKeeper(Config{Refresh: 2 * time.Second, Clock: clk,
		Build: func(*View) (*View, error) { return &View{Index: uint64(builds.Add(1))}, nil },
		Fetch: func(context.Context) (*View, error) { t.Error("a leader fetched"); return nil, nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go k.Run(ctx)
	waitFor := func(what string, cond func() bool) {
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	waitFor("the first refresh", func() bool { return builds.Load() == 1 && clk.Waiters() == 1 })
	k.Poke()
	k.Poke()
	// Run took the poke and waits for its gap (the period's timer is still there too).
	waitFor("Run waiting for the poke's gap", func() bool { return clk.Waiters() == 2 })
	clk.Advance(PokeGap)
	waitFor("a refresh PokeGap after the poke", func() bool { return builds.Load() == 2 })
	waitFor("Run waiting for the next period", func() bool { return clk.Waiters() == 2 && len(k.poke) == 0 })
	clk.Advance(PokeGap)
	time.Sleep(20 * time.Millisecond)
	if n := builds.Load(); n != 2 {
		t.Fatalf("%d builds: two pokes made more than one refresh", n)
	}
}
