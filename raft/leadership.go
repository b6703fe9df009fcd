package raft

import (
	"time"

	hraft "github.com/hashicorp/raft"
)

// Leadership: which server leads, as raft says and as this server's readiness (caught up with
// its term's barrier) allows; and the store's numbers.

// runLeadership turns raft's leadership notices into LeaderEvents: true once this server leads
// and has applied everything its predecessors committed (a barrier), false when it stops.
func (s *Store) runLeadership() {
	defer s.wg.Done()
	defer close(s.leaderCh)
	for {
		var leader bool
		select {
		case leader = <-s.notifyCh:
		case <-s.closing:
			return
		}
		if !leader {
			if s.ready.Swap(false) {
				s.emitLeader(false)
			}
			continue
		}
		// A new leader's commit index may trail what its predecessor committed until an entry of
		// its own term commits; the barrier makes sure it has, and that the FSM has applied it.
		if err := s.raft.Barrier(30 * time.Second).Error(); err != nil {
			s.logger.Warn("won an election but could not catch up", "err", err)
			continue
		}
		if s.raft.State() == hraft.Leader && !s.ready.Swap(true) {
			s.emitLeader(true)
		}
	}
}

func (s *Store) emitLeader(v bool) {
	select {
	case s.leaderCh <- v:
	case <-s.closing:
	}
}

// LeaderEvents delivers true when this server becomes a leader ready to serve (caught up), and
// false when it stops being one. It has one consumer, which must keep up; it is closed when the
// store closes.
func (s *Store) LeaderEvents() <-chan bool { return s.leaderCh }

// IsLeader reports whether this server leads and has caught up.
func (s *Store) IsLeader() bool { return s.ready.Load() && s.raft.State() == hraft.Leader }

// Leader returns the id and raft address of the leader as this server knows it (empty if none).
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// ID is this server's raft id.
func (s *Store) ID() string { return s.cfg.ID }

// Addr is the raft address other servers dial.
func (s *Store) Addr() string { return string(s.transport.LocalAddr()) }

// Stats returns raft's numbers for this server.
func (s *Store) Stats() Stats {
	st := Stats{
		State:        stateName(s.raft.State()),
		Term:         s.raft.CurrentTerm(),
		LastIndex:    s.raft.LastIndex(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.raft.AppliedIndex(),
	}
	if st.State != "leader" {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		} else {
			st.LastContact = -1
		}
	}
	return st
}

// AppliedIndex is the index of the last command the FSM applied (raft's own applied index,
// in Stats, also counts the no-op and barrier entries the FSM never sees).
func (s *Store) AppliedIndex() uint64 {
	v, _ := s.fsm.view()
	return v.index
}

func stateName(st hraft.RaftState) string {
	switch st {
	case hraft.Leader:
		return "leader"
	case hraft.Follower:
		return "follower"
	case hraft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}
