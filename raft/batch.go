package raft

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Batch is a generic command for owners whose state is plain keys: puts and deletes applied
// together, so that a change that spans keys (an app and its deployment, a job run and the
// schedule cursor it moves) commits as one. Its Type is "batch"; its JSON shape is stable
// because logs and snapshots keep it.
type Batch struct {
	Puts           map[string]json.RawMessage `json:"puts,omitempty"`
	Deletes        []string                   `json:"deletes,omitempty"`
	DeletePrefixes []string                   `json:"delete_prefixes,omitempty"`
}

// BatchApplier applies a namespace's Batch commands: prefixes deleted, then keys, then puts in
// key order. It is deterministic and does nothing else.
func BatchApplier(namespace string) Applier {
	return ApplierFunc(func(tx *Txn, cmd Command) (any, error) {
		if cmd.Type != "batch" {
			return nil, fmt.Errorf("%s: unknown command %q", namespace, cmd.Type)
		}
		var b Batch
		if err := json.Unmarshal(cmd.Data, &b); err != nil {
			return nil, fmt.Errorf("%s: batch: %w", namespace, err)
		}
		for _, p := range b.DeletePrefixes {
			tx.DeletePrefix(p)
		}
		for _, k := range b.Deletes {
			tx.Delete(k)
		}
		keys := make([]string, 0, len(b.Puts))
		for k := range b.Puts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tx.Put(k, b.Puts[k])
		}
		return nil, nil
	})
}

// Put adds a key's new value (JSON) to the batch.
func (b *Batch) Put(key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if b.Puts == nil {
		b.Puts = map[string]json.RawMessage{}
	}
	b.Puts[key] = data
	return nil
}

// Delete adds a key to delete. A Put of the key earlier in the batch is dropped (the batch
// applies its deletes before its puts, so what was called last is what holds).
func (b *Batch) Delete(key string) {
	delete(b.Puts, key)
	b.Deletes = append(b.Deletes, key)
}

// DeletePrefix adds a prefix whose keys are deleted, dropping the Puts under it made earlier
// in the batch.
func (b *Batch) DeletePrefix(prefix string) {
	for k := range b.Puts {
		if strings.HasPrefix(k, prefix) {
			delete(b.Puts, k)
		}
	}
	b.DeletePrefixes = append(b.DeletePrefixes, prefix)
}

// Empty says whether the batch changes nothing.
func (b *Batch) Empty() bool {
	return len(b.Puts) == 0 && len(b.Deletes) == 0 && len(b.DeletePrefixes) == 0
}

// CommitBatch writes a batch to a namespace through raft (nothing when it is empty), waiting
// at most 10 s for the commit.
func (s *Store) CommitBatch(ctx context.Context, namespace string, b *Batch) error {
	if b.Empty() {
		return nil
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = s.Apply(ctx, Command{Namespace: namespace, Type: "batch", Data: data})
	return err
}
