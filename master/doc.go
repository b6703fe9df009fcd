// Package master is a master of an Agora cluster: a server of the replicated store (raft/), a
// member of the gossip pool (pkg/gossip), the HTTP API, and — on the leader — the two-level
// scheduler, for embedded and external frameworks alike. This package composes the parts and
// runs them; the work is in the parts:
//
//	master/scheduler   the leader's scheduling: offers, launches, agents' tasks, status
//	                   updates, reconciliation, sessions (allocator: master/allocator)
//	master/registry    the replicated agent and framework registries (raft namespaces)
//	master/secrets     secrets sealed at rest, and their re-sealing on the leader
//	master/clockcheck  the masters' check of one another's wall clocks
//	master/httpapi     the HTTP API, the scheduler API's framing, reads and forwarding
//	master/discovery   the service-discovery view: built on the leader, fetched by the others
//	master/dnsserver   the DNS server (--dns) that answers from that view
//	master/mastertest  simulated agents, for tests and benchmarks only
//
// Arrows point down: httpapi uses the scheduler, registry, secrets and clock checks; the
// scheduler uses the registry and the allocator; discovery and dnsserver take what this package
// hands them and import no other part; none of them imports this package, and only
// tests import mastertest (pkg/layout checks it). This package keeps the master's own work:
// its data dir (datadir.go), founding or joining its cluster and keeping its voters
// (cluster.go), leader services (leadership.go), the metrics registry (metrics.go), and the
// API the embedded frameworks use (embedded.go: thin forwards to the parts; FrameworkHost is
// what they are given, frameworks.Host, for they import no master package).
//
// Use:
//
//  1. New(Config) opens the data dir (node-id, cluster-id, raft/) and binds the raft, gossip
//     and HTTP ports, so a port in use or a damaged data dir fails at once.
//  2. RegisterLeaderService adds work that runs only on the leader: started when this master
//     becomes a leader that has caught up, stopped (and waited for) when it stops leading. One
//     term's services have all returned before the next term's start. The scheduler is one.
//  3. Run joins the gossip pool (--join), founds the cluster (alone, or with --bootstrap-expect
//     masters, all computing the same server list and cluster id) or waits for the leader to
//     add it, serves the API, and on ctx's end leaves gossip gracefully and closes the store.
//  4. Frameworks: an embedded one is given FrameworkHost (frameworks.Host), whose Embed, before
//     Run, names it and runs it as a leader service; it subscribes (Subscribe) and gets a
//     Session (api.Session): Next or Events for events, Call (Accept, Decline, ...) for calls.
//     External ones use the same contract over POST /api/v1/scheduler (master/httpapi says how
//     it is framed). A framework belongs to the principal that registered it (its
//     token's name; auth.Embedded for embedded ones): no other may subscribe as it or call for
//     it.
//
// Scheduling (master/scheduler): the leader's state is memory rebuilt each term, from the
// registries and from what agents report — agents are the truth. Its doc says how agents that
// have not registered yet, superseded agents, agents missing from gossip and unavailable ones
// are handled, and how long ended tasks stay listed.
//
// Membership: the leader adds masters that are new to the cluster as raft voters; masters that
// stop keep their seat (so rolling restarts never shrink the cluster) until an operator removes
// them with DELETE /v1/cluster/masters/{id}. A master whose data dir belongs to another cluster
// stops with ErrOtherCluster when it meets that cluster's masters.
//
// Secrets (master/secrets): PUT /v1/secrets seals the value with Config.SecretsKeyring's first
// key (pkg/keyring; nil: a key of this master's own, made in the data dir) before it proposes
// it, so raft's log and snapshots hold only ciphertext; Secret opens it for the frameworks, or
// says which key it lacks. A leader service seals again, with the first key, what is stored
// under another key or in plain text (by earlier builds) at the start of each term and after
// SetSecretsKeyring.
//
// Clocks (master/clockcheck): every master asks the other masters their wall clock once a
// second over GET /v1/cluster/self and trusts its own (CheckClock) only while a majority of the
// voters, itself included, agree within Config.MaxClockSkew (--max-clock-skew, 500 ms); a lone
// master trusts it. /v1/cluster's "clock" and agora_master_clock_offset_seconds show the
// measure. A leader whose clock disagrees with a majority hands leadership to a master whose
// clock agrees, and DELETE /v2/leader never picks one that disagrees. A master with a wrong
// clock still campaigns when a leader dies: hashicorp/raft has no clean way to keep a voter
// from it, so the embedded frameworks' refusal to fire and the hand-over are what protect.
//
// Service discovery (master/discovery, master/dnsserver; discovery.go): with Config.DNS.Addr
// (--dns) every master answers DNS for the cluster's names from its view of where services
// run. The leader builds that view from its memory; the others fetch it from the leader every
// half TTL (GET /v1/discovery/view) and keep the last one while no leader answers, so answers
// keep coming through a failover; master/discovery's doc says why and how stale a view may be.
//
// HTTP (master/httpapi): every answer carries the leader and staleness headers; writes reaching
// a follower are proxied to the leader, and so are reads. Reads are linearizable unless asked
// ?stale. GET /metrics serves Prometheus metrics: raft's, the API's request durations, the
// scheduler's, the clock checks', and what embedded frameworks add (Metrics).
package master
