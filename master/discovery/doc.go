// Package discovery is the masters' view of where the cluster's services run — each running
// task by framework and name (a Marathon app's instances, a job's runs, an external
// framework's tasks), with its agent's addresses, its ports (with their names and protocols)
// and whether it passes its health checks — for service discovery: the DNS server
// (master/dnsserver) answers from it, and so does GET /v1/services (ServicesOf, Feed), which
// load balancers follow (agora lb). Every master can keep a view, with or without DNS, but reads
// it only while someone does (Config.Active): always with DNS; with GET /v1/services alone,
// while a stream follows it and for a while after a read (a reader after idleness gets a fresh
// view at once: Keeper.Fresh). A master nobody asks spends nothing on it.
//
// What frameworks say. Labels and service ports are a framework's word, not its tasks': the
// Marathon framework describes each app from its current definition in the store
// (Input.Described, frameworks.Host's DescribeServices), so a load balancer reads an app's
// labels as they are now, and an app with no running instance is still listed.
//
// Where the view comes from. What runs, and whether it is healthy, is not in the replicated
// store: tasks' states and health are the leader's memory (master/scheduler's task table,
// rebuilt each term from agents' reports), and the store holds only what was launched
// (Marathon's instance records: agent, host and ports, but not whether the task runs or passes
// its checks). So a follower cannot make the view from its own copy of the store. Instead:
//
//  1. The leader builds the view from its memory (Build: the scheduler's live tasks, the
//     agents as the leader sees them, the framework registry), stamped with its raft applied
//     index and term, every refresh period (Config.Refresh, 2.5 s: half the DNS TTL).
//  2. Every other master fetches the leader's view every refresh period, over the masters'
//     API (GET /v1/discovery/view, the cluster secret's call; the leader builds it afresh for
//     each fetch), and keeps it with the time it sent the fetch.
//  3. A fetch that fails — no leader elected yet, the leader killed — keeps the last view: the
//     answers keep coming, from a view that grows older until a leader answers again. A new
//     leader has heard from no agent yet when its term starts: instances on agents that have not
//     registered with it ("recovered") are kept from the view before (Input.Prev), so a
//     failover empties no name.
//
// Staleness: while a leader answers, a master's view is never older than Keeper.Bound, one
// refresh period and one fetch timeout (2.5 s + 1 s by default: less than the DNS TTL, so an
// instance that ends or fails its health check leaves every master's answers within one TTL).
// The age and the raft index of each master's view are its metrics
// agora_discovery_view_age_seconds and agora_discovery_view_index, and the TXT record
// _view.<domain> of its DNS server ("index=… term=… built-by=… age=… leader=…").
//
// Each master fills in the masters (alive in its gossip, at their raft addresses) and the
// leader from its own state (Config.Masters), so leader.<domain> follows an election at once.
package discovery
