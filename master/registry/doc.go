// Package registry is the cluster's replicated registries of agents and frameworks: the raft
// namespaces "agents" (every agent that registered: its id, address, resources, attributes,
// drain mark, and a tombstone once it is given up) and "frameworks" (every framework that
// subscribed and was not torn down, with its role, failover timeout and principal), so that a
// new leader knows whom to wait for.
//
// It owns the two namespaces' appliers — deterministic, no I/O, times from the command
// (raft.Txn.Time) — the commands that change them (RegisterAgent, DrainAgent, RemoveAgent,
// RegisterFramework, RemoveFramework) and the reads of them (Agent, Agents, Frameworks).
// agents.go and frameworks.go list each namespace's commands.
//
// Where it sits: the master (package master) registers the appliers with the store; the
// scheduler (master/scheduler) rebuilds each term from the registries and commits framework
// registrations and removals and agent removals; the HTTP API (master/httpapi) commits agent
// registrations and drains. It reaches the store only (raft/).
//
// It must not import the master, the HTTP API, the scheduler or any other part of the master
// (pkg/layout checks it).
package registry
