package raft

import (
	"encoding/json"
	"fmt"
	"slices"
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

// Txn is an Applier's view of its namespace while it applies one command. Its writes are
// held aside until the Applier returns: kept if it succeeds, dropped if it fails, so a command
// changes all it meant to or nothing. Readers see them once the whole entry is applied.
type Txn struct {
	base  *treeTxn // the entry's transaction: earlier commands' writes, read-only here
	ns    string
	index uint64
	time  int64

	writes      map[string]*Value // full key -> new value; nil means deleted
	delPrefixes []string          // full-key prefixes deleted, before the writes
}

func newCommandTxn(base *treeTxn, ns string, index uint64, time int64) *Txn {
	return &Txn{base: base, ns: ns, index: index, time: time}
}

// Index is the raft index of the entry being applied.
func (t *Txn) Index() uint64 { return t.index }

// Time is the proposer's clock for this command: the only now an Applier may use.
func (t *Txn) Time() time.Time { return time.Unix(0, t.time).UTC() }

func (t *Txn) lookup(k string) (*Value, bool) {
	if v, ok := t.writes[k]; ok {
		return v, v != nil
	}
	if t.deletedByPrefix(k) {
		return nil, false
	}
	return t.base.Get([]byte(k))
}

func (t *Txn) deletedByPrefix(k string) bool {
	for _, p := range t.delPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// Get returns the data stored under key.
func (t *Txn) Get(key string) ([]byte, bool) {
	v, ok := t.lookup(string(fullKey(t.ns, key)))
	if !ok {
		return nil, false
	}
	return v.Data, true
}

// GetValue returns the value stored under key with its indexes.
func (t *Txn) GetValue(key string) (Value, bool) {
	v, ok := t.lookup(string(fullKey(t.ns, key)))
	if !ok {
		return Value{}, false
	}
	return *v, true
}

// Put stores data under key. The store keeps data as given: callers must not change it later.
func (t *Txn) Put(key string, data []byte) {
	k := string(fullKey(t.ns, key))
	create := t.index
	if old, ok := t.lookup(k); ok {
		create = old.CreateIndex
	}
	if t.writes == nil {
		t.writes = map[string]*Value{}
	}
	t.writes[k] = &Value{Data: data, CreateIndex: create, ModifyIndex: t.index}
}

// Delete removes key and reports whether it was there.
func (t *Txn) Delete(key string) bool {
	k := string(fullKey(t.ns, key))
	_, ok := t.lookup(k)
	if ok {
		if t.writes == nil {
			t.writes = map[string]*Value{}
		}
		t.writes[k] = nil
	}
	return ok
}

// DeletePrefix removes every key that starts with prefix.
func (t *Txn) DeletePrefix(prefix string) {
	p := string(fullKey(t.ns, prefix))
	for k := range t.writes {
		if strings.HasPrefix(k, p) {
			delete(t.writes, k)
		}
	}
	t.delPrefixes = append(t.delPrefixes, p)
}

// List calls fn for each key with the prefix, in key order, until fn returns false.
func (t *Txn) List(prefix string, fn func(key string, data []byte) bool) {
	if len(t.writes) == 0 && len(t.delPrefixes) == 0 {
		walkPrefix(t.base.Root(), t.ns, prefix, fn)
		return
	}
	head := t.ns + nsSep
	type kv struct {
		key  string
		data []byte
	}
	var all []kv
	walkPrefix(t.base.Root(), t.ns, prefix, func(key string, data []byte) bool {
		if _, rewritten := t.writes[head+key]; !rewritten && !t.deletedByPrefix(head+key) {
			all = append(all, kv{key, data})
		}
		return true
	})
	p := head + prefix
	for k, v := range t.writes {
		if v != nil && strings.HasPrefix(k, p) {
			all = append(all, kv{strings.TrimPrefix(k, head), v.Data})
		}
	}
	slices.SortFunc(all, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	for _, e := range all {
		if !fn(e.key, e.data) {
			return
		}
	}
}

// commit writes the command's changes into the entry's transaction.
func (t *Txn) commit() {
	for _, p := range t.delPrefixes {
		t.base.DeletePrefix([]byte(p))
	}
	for k, v := range t.writes { // distinct keys: the order does not change the result
		if v == nil {
			t.base.Delete([]byte(k))
		} else {
			t.base.Insert([]byte(k), v)
		}
	}
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

// ListJSON decodes every value of ns with the prefix as a T, in key order; an undecodable value
// is an error naming its key.
func ListJSON[T any](v *View, ns, prefix string) ([]T, error) {
	var out []T
	var bad error
	v.List(ns, prefix, func(key string, data []byte) bool {
		var x T
		if err := json.Unmarshal(data, &x); err != nil {
			bad = fmt.Errorf("%s: %s: %w", ns, key, err)
			return false
		}
		out = append(out, x)
		return true
	})
	return out, bad
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
