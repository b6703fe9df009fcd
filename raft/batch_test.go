package raft

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// TestBatchKeepsWhatWasCalledLast: a Batch applies its deletes before its puts, yet a key put
// and then deleted in one batch (a deployment that advanced a step and finished in one
// decision) is gone, one deleted and then put holds the new value, and a prefix deleted after a
// put under it takes that put too.
func TestBatchKeepsWhatWasCalledLast(t *testing.T) {
	f := newFSM(map[string]Applier{"ns": BatchApplier("ns")}, time.Minute, slog.New(slog.DiscardHandler))
	seed := &Batch{}
	for _, k := range []string{"old", "dep/1", "keep"} {
		seed.Put(k, "seed")
	}
	b := &Batch{}
	b.Put("dep/2", "step 2")
	b.Delete("dep/2") // put, then deleted: gone
	b.Delete("old")
	b.Put("old", "new") // deleted, then put: the new value
	b.Put("dep/3", "x")
	b.DeletePrefix("dep/") // takes dep/1 and the put of dep/3
	b.Put("dep/4", "after")
	for i, batch := range []*Batch{seed, b} {
		data, err := json.Marshal(batch)
		if err != nil {
			t.Fatal(err)
		}
		out := f.ApplyBatch([]*hraft.Log{entry(uint64(i+1), Command{Namespace: "ns", Type: "batch", Data: data})})
		if r := out[0].([]cmdResult); r[0].err != nil {
			t.Fatal(r[0].err)
		}
	}
	v, _ := f.view()
	want := map[string]string{"old": `"new"`, "keep": `"seed"`, "dep/4": `"after"`}
	got := map[string]string{}
	v.List("ns", "", func(k string, d []byte) bool { got[k] = string(d); return true })
	if len(got) != len(want) {
		t.Fatalf("the store holds %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %s, want %s (all: %v)", k, got[k], w, got)
		}
	}
}
