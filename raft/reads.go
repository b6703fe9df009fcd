package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Reads: stale from this server's applied state, or linearizable through a barrier the leader
// commits and concurrent reads share.

// Consistency says how fresh a read must be.
type Consistency int

const (
	// Stale reads serve this server's applied state, whatever its lag (see Staleness).
	Stale Consistency = iota
	// Linearizable reads reflect every write committed before the read began. They need the
	// leader, which commits a barrier (shared by concurrent reads) before answering.
	Linearizable
)

// View returns the state to read, as fresh as c asks.
func (s *Store) View(ctx context.Context, c Consistency) (*View, error) {
	if c == Stale {
		v, _ := s.fsm.view()
		return v, nil
	}
	if s.raft.State() != hraft.Leader || !s.ready.Load() {
		return nil, s.notLeader()
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	v, _ := s.fsm.view()
	return v, nil
}

// readRound is one barrier shared by the linearizable reads that joined it.
type readRound struct {
	done chan struct{}
	err  error
}

// readBarrier returns once a barrier proposed after the call began has committed and every
// entry before it has been applied. A committed barrier proves this server still led when the
// read began (a quorum accepted an entry of its term) and that its state holds every write
// acknowledged before. Raft does not hand no-op and barrier entries to the FSM, so the FSM's
// own index cannot tell when a read index is reached; the barrier can. Reads that arrive while
// one barrier is in flight share the next, so many readers cost one entry per round trip.
func (s *Store) readBarrier(ctx context.Context) error {
	s.readMu.Lock()
	r := s.nextRead
	if r == nil {
		r = &readRound{done: make(chan struct{})}
		s.nextRead = r
		select {
		case s.readKick <- struct{}{}:
		default:
		}
	}
	s.readMu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
}

// runReads proposes one barrier per round of waiting linearizable reads.
func (s *Store) runReads() {
	defer s.wg.Done()
	for {
		select {
		case <-s.readKick:
		case <-s.closing:
			return
		}
		s.readMu.Lock()
		r := s.nextRead
		s.nextRead = nil
		s.readMu.Unlock()
		if r == nil {
			continue
		}
		if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
			r.err = s.notLeader()
			if !errors.Is(err, hraft.ErrNotLeader) && !errors.Is(err, hraft.ErrLeadershipLost) {
				r.err = fmt.Errorf("raft: linearizable read: %w", err)
			}
		}
		close(r.done)
	}
}

// waitApplied returns a view once index has been applied.
func (s *Store) waitApplied(ctx context.Context, index uint64) (*View, error) {
	for {
		v, changed := s.fsm.view()
		if v.index >= index {
			return v, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closing:
			return nil, ErrClosed
		}
	}
}
