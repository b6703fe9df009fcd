// Package scheduler is the leader's half of two-level scheduling: it offers agents' free
// resources to frameworks (master/allocator decides who gets what), checks their launches
// against the offers, sends tasks to agents (AgentConn), routes status updates and their
// acknowledgements, follows agents' liveness, and answers reconciliation.
//
// Use:
//
//  1. New makes the Scheduler of a master; it runs as a leader service (Name, Run): each term
//     starts from the registries (master/registry) and ends when this master stops leading.
//  2. Frameworks Subscribe (an embedded one through Master.Subscribe, an external one through
//     the HTTP API's POST /api/v1/scheduler) and get a Session: Next for events, Call (Accept,
//     Decline, Kill, Acknowledge, Reconcile, ...) for calls.
//  3. Agents' registrations and status updates come in through AgentsRegistered and
//     AgentStatus (the HTTP API calls them, once a registration is committed); the operator's
//     reads and actions through the views (TasksView, AgentViews, ...), TaskAt, OperatorKill and
//     SetDraining.
//
// The leader's state is memory rebuilt each term. Frameworks come from the framework registry,
// disconnected until they subscribe again; agents from theirs, "recovered" until they register
// again or are asked; tasks from what agents report — agents are the truth. Until an agent has
// registered with this leader, a reconciliation question about a task the leader does not
// know, or a kill of one, waits for it (answered, or sent, when it registers or is declared
// unreachable): answered at once, a framework would write off a task that still runs. An agent
// registering from the hostname and API address of another supersedes it in the same raft
// command (an agent that lost its data dir comes back as a new one): the old id is removed and
// its tasks end at once. An active agent whose id no gossip member carries for
// AgentGossipGrace is unreachable and offered to nobody: gossip is how an agent proves it
// lives. Calls, agent registrations and status updates change the state under one mutex and
// never block there: calls to agents and registry writes run in goroutines, events queue on
// sessions. Allocation cycles run on a timer and after events (batched); liveness, offer
// timeouts and failover timeouts run on the timer (Step). An agent that says through gossip
// that it takes no tasks for now is offered to nobody until it takes them again, and its tasks
// keep their states. Ended tasks stay listed up to Config.KeepEnded, the oldest forgotten
// first; of failed launches only the latest per framework and task name.
//
// Files: scheduler.go declares the Scheduler, its Config and errors, and runs its loop (a term,
// Step); the behaviour is in files that, from the bottom up, call only into those before
// them: term.go (the term's state and the task table's books), session.go (a subscription's
// event queue), status.go (tasks' states, and what goes out of the lock: updates to
// frameworks, kills and acknowledgements to agents, registry changes; kills and reconciliation
// questions that wait for an agent), offers.go (offers made, rescinded, declined and accepted;
// launches), reservations.go (an accept's RESERVE, UNRESERVE, CREATE and DESTROY, checked against
// its offers, committed, then carried out; the offers' reserved part and free volumes), agents.go (registrations, liveness, drains), frameworks.go (subscriptions,
// teardown, owners) and calls.go (a framework's calls). views.go reads the term for the API;
// agentconn.go (how agents are reached) and metrics.go stand apart. An accepted offer reads
// down: calls.go's call, offers.go's acceptLocked, checkTaskLocked and launchLocked, then
// status.go's setStatusLocked as the agent's updates come (AgentStatus).
//
// Where it sits: the master (package master) makes it and runs it while it leads; the HTTP API
// (master/httpapi) frames it for external frameworks and serves the operator; mastertest's
// simulated agents report to it in process. It owns the leader's memory (offers, the task
// table, sessions) and commits only registry and reservation changes (master/registry,
// master/reservation) through the store
// (raft/). It must not import the master, the HTTP API, or the secrets and clock parts
// (pkg/layout checks it).
package scheduler
