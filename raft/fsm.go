package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Errors an applied command can come back with.
var (
	// ErrUnknownNamespace: no Applier is registered for the command's namespace.
	ErrUnknownNamespace = errors.New("raft: unknown namespace")
	// ErrApplierPanic: the namespace's Applier panicked; the command was discarded on every
	// master alike.
	ErrApplierPanic = errors.New("raft: applier panicked")
)

// DefaultDedupeWindow is how long the FSM remembers the IDs of commands that asked for
// at-most-once application (see Command.ID), measured on the proposers' clocks.
const DefaultDedupeWindow = 2 * time.Minute

// cmdResult is what one command of an entry came back with.
type cmdResult struct {
	value any
	err   error
	// duplicate: a command with this ID was applied before; this one changed nothing.
	duplicate bool
}

// fsm is the replicated state machine: a dumb, deterministic function from (state, entry) to
// state. Apply switches on the command's namespace to that namespace's Applier; there is no
// clock, randomness or I/O on this path.
type fsm struct {
	appliers     map[string]Applier
	dedupeWindow time.Duration
	logger       *slog.Logger

	mu      sync.Mutex // guards the fields below; held briefly, never during Apply's work
	tree    *tree
	index   uint64        // last raft index applied
	changed chan struct{} // closed and replaced whenever index moves
}

func newFSM(appliers map[string]Applier, dedupeWindow time.Duration, logger *slog.Logger) *fsm {
	a := make(map[string]Applier, len(appliers))
	for ns, ap := range appliers {
		a[ns] = ap
	}
	return &fsm{
		appliers:     a,
		dedupeWindow: dedupeWindow,
		logger:       logger,
		tree:         newTree(),
		changed:      make(chan struct{}),
	}
}

// Apply applies one committed entry. hashicorp/raft calls ApplyBatch instead (fsm implements
// BatchingFSM); Apply is here for the FSM interface.
func (f *fsm) Apply(l *hraft.Log) any {
	return f.ApplyBatch([]*hraft.Log{l})[0]
}

// ApplyBatch applies committed entries in order and publishes the new state once.
func (f *fsm) ApplyBatch(logs []*hraft.Log) []any {
	f.mu.Lock()
	t, index := f.tree, f.index
	f.mu.Unlock()

	txn := t.Txn()
	out := make([]any, len(logs))
	for i, l := range logs {
		index = l.Index
		if l.Type != hraft.LogCommand {
			continue
		}
		cmds, err := decodeBatch(l.Data)
		if err != nil {
			// Every master decodes the same bytes the same way, so they all skip it alike.
			f.logger.Error("skipping undecodable log entry", "index", l.Index, "err", err)
			out[i] = err
			continue
		}
		results := make([]cmdResult, len(cmds))
		for j, c := range cmds {
			results[j] = f.applyCommand(txn, l.Index, c)
		}
		out[i] = results
	}
	f.publish(txn.CommitOnly(), index)
	return out
}

// applyCommand applies one command atomically into the entry's transaction: all of its writes
// or none.
func (f *fsm) applyCommand(txn *treeTxn, index uint64, c Command) cmdResult {
	if c.Namespace == sysNamespace {
		return cmdResult{err: fmt.Errorf("%w: %q is reserved", ErrUnknownNamespace, c.Namespace)}
	}
	ap, ok := f.appliers[c.Namespace]
	if !ok {
		return cmdResult{err: fmt.Errorf("%w: %q", ErrUnknownNamespace, c.Namespace)}
	}
	if c.ID != "" {
		if _, seen := txn.Get(fullKey(sysNamespace, "req/"+c.ID)); seen {
			return cmdResult{duplicate: true}
		}
	}
	tx := newCommandTxn(txn, c.Namespace, index, c.Time)
	value, err := safeApply(ap, tx, c)
	if err != nil {
		return cmdResult{err: err}
	}
	tx.commit()
	if c.ID != "" {
		f.remember(txn, index, c)
	}
	return cmdResult{value: value}
}

func safeApply(ap Applier, tx *Txn, c Command) (value any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s %s: %v", ErrApplierPanic, c.Namespace, c.Type, r)
		}
	}()
	return ap.Apply(tx, c)
}

// remember records c.ID as applied, and forgets IDs older than the dedupe window by the
// command's own clock. Two keys per ID: "req/ID" to look up, "req-t/TIME/ID" to expire in order.
func (f *fsm) remember(txn *treeTxn, index uint64, c Command) {
	txn.Insert(fullKey(sysNamespace, "req/"+c.ID), &Value{CreateIndex: index, ModifyIndex: index})
	txn.Insert(fullKey(sysNamespace, "req-t/"+timeKey(c.Time)+c.ID), &Value{Data: []byte(c.ID), CreateIndex: index, ModifyIndex: index})

	cutoff := timeKey(c.Time - int64(f.dedupeWindow))
	prefix := fullKey(sysNamespace, "req-t/")
	var expired [][]byte
	it := txn.Root().Iterator()
	it.SeekPrefix(prefix)
	for k, v, ok := it.Next(); ok; k, v, ok = it.Next() {
		if string(k[len(prefix):len(prefix)+len(cutoff)]) >= cutoff {
			break
		}
		expired = append(expired, k, fullKey(sysNamespace, "req/"+string(v.Data)))
	}
	for _, k := range expired {
		txn.Delete(k)
	}
}

// timeKey encodes a time so that keys sort in time order (negative times clamp to zero).
func timeKey(nanos int64) string {
	if nanos < 0 {
		nanos = 0
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(nanos))
	return string(b[:])
}

func (f *fsm) publish(t *tree, index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tree, f.index = t, index
	close(f.changed)
	f.changed = make(chan struct{})
}

// view returns the current state and a channel closed when it next changes.
func (f *fsm) view() (*View, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &View{root: f.tree.Root(), index: f.index}, f.changed
}

// Snapshot captures the current state: a pointer to the immutable tree. Persist does the
// writing, concurrently with further applies.
func (f *fsm) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fsmSnapshot{tree: f.tree, index: f.index}, nil
}

// Restore replaces the state with a snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	t, index, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.publish(t, index)
	return nil
}
