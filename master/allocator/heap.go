package allocator

import "container/heap"

// ranked is what a shareHeap orders: by tier (0 first), then share, then name; it keeps its
// own position.
type ranked interface {
	rank() (share float64, name string)
	tier() int
	setIndex(i int)
	position() int
}

func (fw *frameworkState) tier() int { return 0 }

// tier puts the roles below their guarantees first (quota.go).
func (r *roleState) tier() int {
	if r.below() {
		return 0
	}
	return 1
}

func (fw *frameworkState) rank() (float64, string) { return fw.share, fw.id }
func (fw *frameworkState) setIndex(i int)          { fw.index = i }
func (fw *frameworkState) position() int           { return fw.index }
func (r *roleState) rank() (float64, string)       { return r.share, r.name }
func (r *roleState) setIndex(i int)                { r.index = i }
func (r *roleState) position() int                 { return r.index }

// shareHeap is a min-heap by share (ties by name) whose items know their index, so that a
// changed share is fixed in place and any item removed in log time. Index -1: not in a heap.
type shareHeap[T ranked] struct{ items []T }

type fwHeap = shareHeap[*frameworkState]
type roleHeap = shareHeap[*roleState]

func (h *shareHeap[T]) Len() int { return len(h.items) }
func (h *shareHeap[T]) Less(i, j int) bool {
	if ti, tj := h.items[i].tier(), h.items[j].tier(); ti != tj {
		return ti < tj
	}
	si, ni := h.items[i].rank()
	sj, nj := h.items[j].rank()
	if si != sj {
		return si < sj
	}
	return ni < nj
}
func (h *shareHeap[T]) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].setIndex(i)
	h.items[j].setIndex(j)
}
func (h *shareHeap[T]) Push(x any) {
	it := x.(T)
	it.setIndex(len(h.items))
	h.items = append(h.items, it)
}
func (h *shareHeap[T]) Pop() any {
	n := len(h.items)
	it := h.items[n-1]
	var zero T
	h.items[n-1] = zero
	h.items = h.items[:n-1]
	it.setIndex(-1)
	return it
}

func (h *shareHeap[T]) push(it T)   { heap.Push(h, it) }
func (h *shareHeap[T]) pop() T      { return heap.Pop(h).(T) }
func (h *shareHeap[T]) fix(it T)    { heap.Fix(h, it.position()) }
func (h *shareHeap[T]) remove(it T) { heap.Remove(h, it.position()) }
func (h *shareHeap[T]) init()       { heap.Init(h) }
