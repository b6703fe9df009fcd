package raft

import (
	"strings"
	"time"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// Value is one stored value with the raft indexes that created and last changed it.
type Value struct {
	Data        []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// The state is one immutable radix tree keyed by namespace + nsSep + key. Immutability makes a
// consistent view (for readers and snapshots) a pointer copy.
type (
	tree    = iradix.Tree[*Value]
	treeTxn = iradix.Txn[*Value]
)

func newTree() *tree { return iradix.New[*Value]() }

const nsSep = "\x00"

// sysNamespace holds the store's own bookkeeping (applied command IDs); owners may not use it.
const sysNamespace = "_sys"

func fullKey(ns, key string) []byte { return []byte(ns + nsSep + key) }

// Txn is an Applier's view of its namespace while it applies one command. Writes become visible
// to readers only when the whole raft entry has been applied.
type Txn struct {
	txn   *treeTxn
	ns    string
	index uint64
	time  int64
}

// Index is the raft index of the entry being applied.
func (t *Txn) Index() uint64 { return t.index }

// Time is the proposer's clock for this command: the only now an Applier may use.
func (t *Txn) Time() time.Time { return time.Unix(0, t.time).UTC() }

// Get returns the data stored under key.
func (t *Txn) Get(key string) ([]byte, bool) {
	v, ok := t.txn.Get(fullKey(t.ns, key))
	if !ok {
		return nil, false
	}
	return v.Data, true
}

// GetValue returns the value stored under key with its indexes.
func (t *Txn) GetValue(key string) (Value, bool) {
	v, ok := t.txn.Get(fullKey(t.ns, key))
	if !ok {
		return Value{}, false
	}
	return *v, true
}

// Put stores data under key. The store keeps data as given: callers must not change it later.
func (t *Txn) Put(key string, data []byte) {
	k := fullKey(t.ns, key)
	create := t.index
	if old, ok := t.txn.Get(k); ok {
		create = old.CreateIndex
	}
	t.txn.Insert(k, &Value{Data: data, CreateIndex: create, ModifyIndex: t.index})
}

// Delete removes key and reports whether it was there.
func (t *Txn) Delete(key string) bool {
	_, ok := t.txn.Delete(fullKey(t.ns, key))
	return ok
}

// DeletePrefix removes every key that starts with prefix.
func (t *Txn) DeletePrefix(prefix string) bool {
	return t.txn.DeletePrefix(fullKey(t.ns, prefix))
}

// List calls fn for each key with the prefix, in key order, until fn returns false.
func (t *Txn) List(prefix string, fn func(key string, data []byte) bool) {
	walkPrefix(t.txn.Root(), t.ns, prefix, fn)
}

// View is a consistent read-only view of the replicated state at one applied index.
type View struct {
	root  *iradix.Node[*Value]
	index uint64
}

// Index is the last raft index applied in this view.
func (v *View) Index() uint64 { return v.index }

// Get returns the data stored under key in namespace ns.
func (v *View) Get(ns, key string) ([]byte, bool) {
	val, ok := v.root.Get(fullKey(ns, key))
	if !ok {
		return nil, false
	}
	return val.Data, true
}

// GetValue returns the value stored under key in namespace ns, with its indexes.
func (v *View) GetValue(ns, key string) (Value, bool) {
	val, ok := v.root.Get(fullKey(ns, key))
	if !ok {
		return Value{}, false
	}
	return *val, true
}

// List calls fn for each key of ns with the prefix, in key order, until fn returns false.
func (v *View) List(ns, prefix string, fn func(key string, data []byte) bool) {
	walkPrefix(v.root, ns, prefix, fn)
}

// Count is the number of keys of ns with the prefix.
func (v *View) Count(ns, prefix string) int {
	n := 0
	walkPrefix(v.root, ns, prefix, func(string, []byte) bool { n++; return true })
	return n
}

func walkPrefix(root *iradix.Node[*Value], ns, prefix string, fn func(key string, data []byte) bool) {
	head := ns + nsSep
	root.WalkPrefix([]byte(head+prefix), func(k []byte, v *Value) bool {
		return !fn(strings.TrimPrefix(string(k), head), v.Data)
	})
}
