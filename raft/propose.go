package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Writes: Apply queues a command; one batcher packs queued commands into a batch command
// (at most maxBatchBytes) and proposes it, with at most maxInflight batches in flight; one
// waiter delivers each batch's outcome to its callers.

// maxBatchBytes caps the data packed into one raft entry.
const maxBatchBytes = 1 << 20

// maxInflight caps the entries proposed and not yet committed. A lone writer never waits for
// a slot; many writers find it taken, and their proposals share the next entry. One is best on
// 2 cores: 64 writers commit ~32 commands per entry and ~18,000 writes/s, where 4 slots give
// 9 per entry and ~15,000/s, and no limit gives 1 per entry and ~8,000/s.
const maxInflight = 1

type proposal struct {
	cmd   Command
	done  chan proposalResult // buffered 1
	start time.Time           // when Apply was called, for ObserveCommit
}

type proposalResult struct {
	res Result
	err error
}

type inflightBatch struct {
	future hraft.ApplyFuture
	batch  []*proposal
}

// Apply proposes cmd and waits until it is committed and applied, ctx ends, or leadership is
// lost. It only works on the leader. Commands from concurrent callers are packed into shared
// raft entries, and raft writes entries that queue up with one fsync.
func (s *Store) Apply(ctx context.Context, cmd Command) (Result, error) {
	if s.raft.State() != hraft.Leader {
		return Result{}, s.notLeader()
	}
	if cmd.Time == 0 {
		cmd.Time = s.cfg.Now().UnixNano()
	}
	p := &proposal{cmd: cmd, done: make(chan proposalResult, 1), start: time.Now()}
	select {
	case s.proposeCh <- p:
	case <-ctx.Done():
		return Result{}, ctx.Err() // not proposed: nothing happened
	case <-s.closing:
		return Result{}, ErrClosed
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
}

func (s *Store) notLeader() error {
	addr, id := s.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// runBatcher packs waiting proposals into raft entries. It does not wait for an entry to commit
// before proposing the next: raft pipelines them, and runWaiter hands out the results in order.
func (s *Store) runBatcher() {
	defer s.wg.Done()
	defer close(s.inflight)
	for {
		var first *proposal
		select {
		case first = <-s.proposeCh:
		case <-s.closing:
			s.failQueued()
			return
		}
		// Wait for a free pipeline slot before packing: while the slots are full, proposals
		// pile up in proposeCh and the next entry carries all of them.
		select {
		case s.slots <- struct{}{}:
		case <-s.closing:
			deliver([]*proposal{first}, proposalResult{err: ErrClosed})
			s.failQueued()
			return
		}
		batch := []*proposal{first}
		size := len(first.cmd.Data)
	fill:
		for len(batch) < s.cfg.MaxBatch && size < maxBatchBytes {
			select {
			case p := <-s.proposeCh:
				batch = append(batch, p)
				size += len(p.cmd.Data)
			default:
				break fill
			}
		}
		cmds := make([]Command, len(batch))
		for i, p := range batch {
			cmds[i] = p.cmd
		}
		f := s.raft.Apply(encodeBatch(cmds), 10*time.Second)
		select {
		case s.inflight <- inflightBatch{future: f, batch: batch}:
		case <-s.closing:
			deliver(batch, proposalResult{err: ErrUnknownOutcome})
			s.failQueued()
			return
		}
	}
}

func (s *Store) failQueued() {
	for {
		select {
		case p := <-s.proposeCh:
			p.done <- proposalResult{err: ErrClosed}
		default:
			return
		}
	}
}

func deliver(batch []*proposal, r proposalResult) {
	for _, p := range batch {
		p.done <- r
	}
}

// runWaiter waits for each proposed entry in order and gives every proposer its own result.
func (s *Store) runWaiter() {
	defer s.wg.Done()
	for b := range s.inflight {
		err := b.future.Error()
		<-s.slots
		if err != nil {
			deliver(b.batch, proposalResult{err: s.applyError(err)})
			continue
		}
		results, ok := b.future.Response().([]cmdResult)
		if !ok || len(results) != len(b.batch) {
			err, _ := b.future.Response().(error)
			deliver(b.batch, proposalResult{err: fmt.Errorf("raft: entry %d was not applied: %v", b.future.Index(), err)})
			continue
		}
		now := time.Now()
		for i, p := range b.batch {
			if s.cfg.ObserveCommit != nil {
				s.cfg.ObserveCommit(now.Sub(p.start))
			}
			r := results[i]
			p.done <- proposalResult{res: Result{Index: b.future.Index(), Value: r.value, Duplicate: r.duplicate}, err: r.err}
		}
	}
}

// applyError maps raft's errors to the store's: "not the leader" when the entry was never
// appended, "unknown outcome" when it was and may still commit.
func (s *Store) applyError(err error) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader):
		return s.notLeader()
	case errors.Is(err, hraft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrClosed)
	default: // ErrLeadershipLost, ErrEnqueueTimeout and the like
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
}
