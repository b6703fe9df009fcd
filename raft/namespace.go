package raft

import "context"

// Namespace is one namespace of a Store as its owner sees it: reads of its own keys and batches
// into it, nothing of another owner's. The embedded frameworks get theirs from their host, so
// that one cannot read or write another's state by mistake.
type Namespace struct {
	s    *Store
	name string
}

// Namespace is the namespace name of s (its Applier must be in Config.Appliers for batches
// to apply).
func (s *Store) Namespace(name string) Namespace { return Namespace{s: s, name: name} }

// Name is the namespace's name.
func (n Namespace) Name() string { return n.name }

// View reads the namespace as of now (Store.View's consistency).
func (n Namespace) View(ctx context.Context, c Consistency) (NamespaceView, error) {
	v, err := n.s.View(ctx, c)
	if err != nil {
		return NamespaceView{}, err
	}
	return NamespaceView{v: v, ns: n.name}, nil
}

// Commit writes a batch into the namespace through raft (Store.CommitBatch).
func (n Namespace) Commit(ctx context.Context, b *Batch) error {
	return n.s.CommitBatch(ctx, n.name, b)
}

// NamespaceView is a View of one namespace.
type NamespaceView struct {
	v  *View
	ns string
}

// Index is the last raft index applied in this view.
func (v NamespaceView) Index() uint64 { return v.v.Index() }

// Get returns the data stored under key.
func (v NamespaceView) Get(key string) ([]byte, bool) { return v.v.Get(v.ns, key) }

// GetValue returns the value stored under key, with its indexes.
func (v NamespaceView) GetValue(key string) (Value, bool) { return v.v.GetValue(v.ns, key) }

// List calls fn for each key with the prefix, in key order, until fn returns false.
func (v NamespaceView) List(prefix string, fn func(key string, data []byte) bool) {
	v.v.List(v.ns, prefix, fn)
}

// Count is the number of keys with the prefix.
func (v NamespaceView) Count(prefix string) int { return v.v.Count(v.ns, prefix) }
