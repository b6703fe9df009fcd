// Package raft will be Agora's replicated store: hashicorp/raft with its log and stable store in
// bbolt, a deterministic FSM of typed commands in per-owner namespaces, and snapshots. It is built
// by the replicated-masters issue; for now it holds only this description.
package raft
