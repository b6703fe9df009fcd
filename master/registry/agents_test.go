package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/raft"
)

// testStore is one master's store with the agents' applier, and a raw write that stores an
// agent as a version without the address index did.
func testStore(t *testing.T) *raft.Store {
	t.Helper()
	agents := AgentsApplier()
	s, err := raft.Open(raft.Config{
		ID: "m1", Dir: t.TempDir(), BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Appliers: map[string]raft.Applier{NamespaceAgents: raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
			if cmd.Type == "test.raw" {
				var a api.Agent
				if err := json.Unmarshal(cmd.Data, &a); err != nil {
					return nil, err
				}
				tx.Put(a.ID, cmd.Data)
				return nil, nil
			}
			return agents.Apply(tx, cmd)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Bootstrap([]raft.Server{{ID: "m1", Address: s.Addr(), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

func register(t *testing.T, s *raft.Store, id, hostname, addr string) []string {
	t.Helper()
	r, err := RegisterAgent(context.Background(), s, api.Agent{ID: id, Hostname: hostname, HTTP: addr})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range r.Superseded {
		ids = append(ids, a.ID)
	}
	return ids
}

// TestRegistrationSupersedesExactlyTheAgentsOfItsAddress: a registration removes the live
// agents of its hostname (in any case) and API address and no other — after address changes,
// removals, addresses that begin like another, and agents stored before the address index.
func TestRegistrationSupersedesExactlyTheAgentsOfItsAddress(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	// Two agents as a version before the index stored them: the first registration indexes them.
	for _, a := range []api.Agent{{ID: "old-1", Hostname: "h-old", HTTP: "10.0.0.9:5051"}, {ID: "old-2", Hostname: "h-old", HTTP: "10.0.0.9:5052"}} {
		data, _ := json.Marshal(a)
		if _, err := s.Apply(ctx, raft.Command{Namespace: NamespaceAgents, Type: "test.raw", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		what, id, hostname, addr string
		superseded               []string
	}{
		{"a new agent", "a", "h1", "10.0.0.1:5051", nil},
		{"another port of the same host", "b", "h1", "10.0.0.1:5052", nil},
		{"an address that begins like a's", "c", "h1", "10.0.0.1:5051/x", nil},
		{"a's address, the hostname in capitals", "a2", "H1", "10.0.0.1:5051", []string{"a"}},
		{"an agent stored before the index", "old-3", "H-OLD", "10.0.0.9:5051", []string{"old-1"}},
		{"b moves to another address", "b", "h1", "10.0.0.1:6000", nil},
		{"b's old address", "b2", "h1", "10.0.0.1:5052", nil},
		{"b's new address", "b3", "h1", "10.0.0.1:6000", []string{"b"}},
		{"a2 registers again", "a2", "h1", "10.0.0.1:5051", nil},
	}
	for _, st := range steps {
		if got := register(t, s, st.id, st.hostname, st.addr); !slices.Equal(got, st.superseded) {
			t.Fatalf("%s (%s at %s %s): superseded %v, want %v", st.what, st.id, st.hostname, st.addr, got, st.superseded)
		}
	}
	if _, err := s.Apply(ctx, RemoveAgent("c")); err != nil {
		t.Fatal(err)
	}
	if got := register(t, s, "c2", "h1", "10.0.0.1:5051/x"); got != nil {
		t.Fatalf("a removed agent's address: superseded %v, want none", got)
	}

	v, err := s.View(ctx, raft.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	agents, err := Agents(v)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, a := range agents {
		live[a.ID] = a.RemovedAt == nil
	}
	want := map[string]bool{"old-1": false, "old-2": true, "old-3": true, "a": false, "a2": true, "b": false, "b2": true, "b3": true, "c": false, "c2": true}
	if fmt.Sprint(live) != fmt.Sprint(want) {
		t.Fatalf("registry (id: not removed) = %v, want %v", live, want)
	}
}
