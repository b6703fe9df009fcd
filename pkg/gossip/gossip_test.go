package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/faultnet"
)

func newNode(t *testing.T, role Role, id string, events chan<- Event) *Gossip {
	t.Helper()
	g, err := New(Config{BindAddr: "127.0.0.1:0", Meta: Meta{Role: role, ID: id, HTTP: "127.0.0.1:80"}, Timing: TimingLocal, Events: events})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statusOf(g *Gossip, name string) Status {
	for _, m := range g.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func TestMembersJoinThroughOneSeedAndSeeMeta(t *testing.T) {
	events := make(chan Event, 100)
	m := newNode(t, RoleMaster, "m1", events)
	a1 := newNode(t, RoleAgent, "a1", nil)
	a2 := newNode(t, RoleAgent, "a2", nil)
	for _, g := range []*Gossip{a1, a2} {
		if _, err := g.Join(context.Background(), []string{m.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []*Gossip{m, a1, a2} {
		eventually(t, "all see three", func() bool { return len(g.Members()) == 3 })
		if ms := g.Masters(); len(ms) != 1 || ms[0].Meta.ID != "m1" || ms[0].Meta.HTTP != "127.0.0.1:80" {
			t.Fatalf("masters = %+v", ms)
		}
		if as := g.Agents(); len(as) != 2 || as[0].Name != "a1" || as[1].Name != "a2" {
			t.Fatalf("agents = %+v", as)
		}
	}
	if err := a1.UpdateMeta(Meta{Role: RoleAgent, ID: "a1", Cluster: "c42"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the update spreads", func() bool {
		for _, mem := range m.Agents() {
			if mem.Name == "a1" && mem.Meta.Cluster == "c42" {
				return true
			}
		}
		return false
	})
	joins := 0
	for len(events) > 0 {
		if e := <-events; e.Type == EventJoin {
			joins++
		}
	}
	if joins != 3 {
		t.Errorf("join events = %d, want 3 (self and two agents)", joins)
	}
}

func TestLeaveIsNotFailure(t *testing.T) {
	events := make(chan Event, 100)
	m := newNode(t, RoleMaster, "m1", events)
	left := newNode(t, RoleAgent, "left", nil)
	crashed := newNode(t, RoleAgent, "crashed", nil)
	for _, g := range []*Gossip{left, crashed} {
		if _, err := g.Join(context.Background(), []string{m.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "three members", func() bool { return len(m.Agents()) == 2 })
	if err := left.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	left.Shutdown()
	crashed.Shutdown()
	eventually(t, "left is left and crashed is dead", func() bool {
		return statusOf(m, "left") == StatusLeft && statusOf(m, "crashed") == StatusDead
	})
	got := map[string]EventType{}
	for len(events) > 0 {
		e := <-events
		got[e.Member.Name] = e.Type
	}
	if got["left"] != EventLeave || got["crashed"] != EventFail {
		t.Fatalf("last events = %v, want left: leave, crashed: fail", got)
	}
	if len(m.Agents()) != 0 {
		t.Fatalf("alive agents = %v, want none", m.Agents())
	}
}

func TestJoinGivesUpNamingTheSeeds(t *testing.T) {
	g := newNode(t, RoleAgent, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := g.Join(ctx, []string{"127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("err = %v, want one naming the seed", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := New(Config{BindAddr: ln.Addr().String(), Meta: Meta{ID: "x"}}); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("port in use: %v", err)
	}
	if _, err := New(Config{BindAddr: "127.0.0.1:0", Meta: Meta{ID: strings.Repeat("x", 600)}}); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("big meta: %v", err)
	}
	if _, err := New(Config{BindAddr: "nope", Meta: Meta{ID: "x"}}); err == nil {
		t.Error("bad address accepted")
	}
}

// TestASlowEventReaderNeverBlocksGossip: nobody reads the events channel, yet members converge.
func TestASlowEventReaderNeverBlocksGossip(t *testing.T) {
	unread := make(chan Event) // never read
	m := newNode(t, RoleMaster, "m1", unread)
	for i := 0; i < 4; i++ {
		g := newNode(t, RoleAgent, fmt.Sprintf("a%d", i), nil)
		if _, err := g.Join(context.Background(), []string{m.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "five members", func() bool { return len(m.Members()) == 5 })
}

// TestALongPartitionHeals: two members cut apart for longer than memberlist gossips to the dead
// see each other fail, and alive again once the network is back; the one that knows the other
// only as its seed finds it too.
func TestALongPartitionHeals(t *testing.T) {
	sw := &faultnet.Switch{}
	seed := newNode(t, RoleMaster, "m1", nil)
	g, err := New(Config{BindAddr: "127.0.0.1:0", Meta: Meta{Role: RoleAgent, ID: "a1"}, Timing: TimingLocal, Faults: sw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	if _, err := g.Join(t.Context(), []string{seed.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	status := func(of *Gossip, name string) Status {
		for _, m := range of.Members() {
			if m.Name == name {
				return m.Status
			}
		}
		return ""
	}
	eventually(t, "both to see each other alive", func() bool {
		return status(seed, "a1") == StatusAlive && status(g, "m1") == StatusAlive
	})
	sw.Cut(true)
	eventually(t, "both to declare the other dead", func() bool {
		return status(seed, "a1") == StatusDead && status(g, "m1") == StatusDead
	})
	time.Sleep(4 * time.Second) // past GossipToTheDeadTime (2 s with TimingLocal)
	sw.Cut(false)
	eventually(t, "both to see each other alive again after the healing", func() bool {
		return status(seed, "a1") == StatusAlive && status(g, "m1") == StatusAlive
	})
}
