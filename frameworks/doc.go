// Package frameworks holds what the frameworks that ship inside the agora binary share:
// marathon/ for long-running services and chronos/ for cron-driven batch jobs.
//
// The framework contract. An embedded framework knows the node it runs in only as a Host
// (host.go), and imports no master package (pkg/layout checks it):
//
//   - the scheduler: Host.Subscribe gives an api.Session — events (offers, status updates) in,
//     calls (accept, decline, kill, acknowledge, reconcile) out — the contract an external
//     framework speaks over POST /api/v1/scheduler; Agents and AgentViews tell what offers
//     cannot (whether any agent could ever run a task, which make no offers and why);
//   - its namespace of the replicated store (Host.Store), whose applier the node is made with;
//   - Embed: run while the node leads, the framework's name reserved for it;
//   - HandleLeader: its API's routes, answered by the leader;
//   - Metrics, Secret (api.ErrNoSecret when there is none), and the clock (Clock, CheckClock,
//     MaxClockSkew).
//
// A master implements Host (master.FrameworkHost); cmd/agora lists the embedded frameworks
// once (their namespaces, appliers and constructors) for agora master and agora dev.
//
// What the frameworks share besides: Config, with its defaults, and Driver (driver.go), their
// life on a leader — subscribe again as the same framework on every new leader, load the state,
// reconcile, then step on events, wakes and ticks until leadership ends — to which each gives
// its own Begin, Step and End; offer statistics (why things wait, by Marathon's reason names)
// and secret references.
package frameworks
