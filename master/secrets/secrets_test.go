package secrets

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/raft"
)

// TestPlanResealBatches: re-sealing goes in batches bounded in count and bytes, skips what the
// primary key sealed, and sets aside what no key opens.
func TestPlanResealBatches(t *testing.T) {
	key := func(id string) keyring.Key {
		sum := sha256.Sum256([]byte(id))
		return keyring.Key{ID: id, Bytes: sum[:]}
	}
	old, _ := keyring.New(key("old"))
	keys, _ := keyring.New(key("new"), key("old"))
	lost, _ := keyring.New(key("lost"))
	var stored []raftSecret
	add := func(k *keyring.Keyring, name string, size int) {
		value := bytes.Repeat([]byte("v"), size)
		b := value
		if k != nil {
			b, _ = k.Seal(rand.Reader, name, value)
		}
		stored = append(stored, raftSecret{Name: name, Value: raft.Value{Data: b, ModifyIndex: uint64(len(stored) + 1)}})
	}
	for i := range 150 {
		add(old, fmt.Sprintf("small/%03d", i), 10)
	}
	for i := range 10 {
		add(old, fmt.Sprintf("big/%02d", i), 60<<10)
	}
	add(nil, "plain", 5)
	add(keys, "current", 5)
	add(lost, "lost", 5)
	p, err := planReseal(keys, rand.Reader, stored)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range p.batches {
		size := 0
		for _, s := range b {
			size += len(s.Sealed)
			if id, _ := keyring.KeyID(s.Sealed); id != "new" || s.Index == 0 {
				t.Fatalf("%s: sealed with %s, index %d", s.Name, id, s.Index)
			}
		}
		if len(b) > resealBatch || len(b) > 1 && size > resealBatchBytes {
			t.Fatalf("a batch of %d secrets, %d bytes", len(b), size)
		}
		n += len(b)
	}
	if n != 161 || p.plain != 1 || len(p.stuck["lost"]) != 1 || len(p.stuck) != 1 {
		t.Fatalf("planned %d, plain %d, stuck %v", n, p.plain, p.stuck)
	}
}
