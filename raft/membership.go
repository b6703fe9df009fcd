package raft

import (
	"context"
	"errors"
	"fmt"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Membership: the servers of the configuration, their addition and removal, snapshots and
// leadership transfers on an operator's request.

// Servers returns the current raft configuration.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft: configuration: %w", err)
	}
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(sv.ID), Address: string(sv.Address), Voter: sv.Suffrage == hraft.Voter})
	}
	return out, nil
}

// AddVoter adds a server to the cluster (or updates its address). Leader only.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if err := s.raft.AddVoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, timeoutOf(ctx)).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("raft: add %s at %s: %w", id, addr, err)
	}
	return nil
}

// RemoveServer removes a server from the cluster. Leader only.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	if err := s.raft.RemoveServer(hraft.ServerID(id), 0, timeoutOf(ctx)).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("raft: remove %s: %w", id, err)
	}
	return nil
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// Snapshot takes a snapshot now and compacts the log behind it.
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raft: snapshot: %w", err)
	}
	return nil
}

// LeadershipTransfer hands leadership to another voter (for a graceful leave).
func (s *Store) LeadershipTransfer() error {
	return s.raft.LeadershipTransfer().Error()
}

// LeadershipTransferTo hands leadership to the voter of that id and address (one of Servers):
// it waits until the voter has caught up, tells it to campaign at once, and returns when it
// leads, or with an error when it did not within an election timeout. Leader only.
func (s *Store) LeadershipTransferTo(id, addr string) error {
	if err := s.raft.LeadershipTransferToServer(hraft.ServerID(id), hraft.ServerAddress(addr)).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("raft: hand leadership to %s: %w", id, err)
	}
	return nil
}
