package raft

import (
	"context"
	"testing"
)

// TestNamespaceSeesOnlyItsOwn: a namespace's batches land in it alone, and its views read
// nothing of another namespace's, keys of the same name included.
func TestNamespaceSeesOnlyItsOwn(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.Appliers = map[string]Applier{"a": BatchApplier("a"), "b": BatchApplier("b")}
	})
	s := c.leader().store
	ctx := context.Background()
	a, b := s.Namespace("a"), s.Namespace("b")
	for _, w := range []struct {
		ns         Namespace
		key, value string
	}{{a, "shared", "of a"}, {b, "shared", "of b"}, {b, "only-b", "x"}} {
		batch := &Batch{}
		batch.Put(w.key, w.value)
		if err := w.ns.Commit(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	v, err := a.View(ctx, Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Get("shared"); !ok || string(got) != `"of a"` {
		t.Fatalf("a's shared = %q %v, want a's own value", got, ok)
	}
	if _, ok := v.Get("only-b"); ok {
		t.Fatal("a reads b's key")
	}
	var keys []string
	v.List("", func(k string, _ []byte) bool { keys = append(keys, k); return true })
	if len(keys) != 1 || keys[0] != "shared" || v.Count("") != 1 {
		t.Fatalf("a lists %v (count %d), want only its own key", keys, v.Count(""))
	}
	if a.Name() != "a" || v.Index() == 0 {
		t.Fatalf("name %q, index %d", a.Name(), v.Index())
	}
}
