// Package raft is Agora's replicated store: hashicorp/raft with its log and stable store in
// bbolt (raft-boltdb), and a deterministic FSM that keeps every owner's state in memory, in its
// own namespace ("agents", "frameworks", "marathon", "chronos"), and snapshots it to disk.
//
// Use:
//
//  1. Each owner registers an Applier for its namespace in Config.Appliers. Its commands carry
//     a type tag; Apply switches on it to one small function per type. Appliers must be
//     deterministic: the command carries the proposer's time (Txn.Time) and any ids.
//  2. Open starts raft on Config.Dir (raft.db and snapshots/) and Config.BindAddr. A new
//     server is either bootstrapped (Bootstrap with the same server list on every founding
//     server) or added by the leader (AddVoter).
//  3. The leader writes with Apply: it returns once the command is committed and applied, with
//     the Applier's result. Concurrent Apply calls share raft entries (up to MaxBatch commands
//     each), and raft group-commits the entries that queue up, so many writers cost few fsyncs.
//     A caller that may retry a write sets Command.ID; the FSM applies an ID at most once within
//     DedupeWindow. Config.ObserveCommit, when set, learns how long each committed write took.
//  4. Reads take a View: Stale on any server (see Stats for how far behind it may be), or
//     Linearizable on the leader (it confirms its leadership with a quorum and waits until it
//     has applied everything committed before the read began).
//  5. LeaderEvents says when this server becomes a leader ready to serve (after a barrier) and
//     when it stops, so the master can start and stop its leader-only services.
//  6. Close stops raft and closes the files. A restarted server restores the newest snapshot
//     and replays the log after it.
//
// Snapshots are cheap to take: the state is an immutable radix tree, so a snapshot is a pointer
// to its root, and Persist writes it (with a CRC-32C) while applies go on.
package raft
