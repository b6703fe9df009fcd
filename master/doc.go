// Package master is a master of an Agora cluster: a server of the replicated store (raft/), a
// member of the gossip pool (pkg/gossip), the HTTP API, and — on the leader — the two-level
// scheduler: the allocator (allocator/), offers, the agent and framework registries, task
// routing, status updates and reconciliation, for embedded and external frameworks alike.
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
//  4. Frameworks: an embedded one calls Subscribe (as a leader service) and gets a Session:
//     Next for events, Call (Accept, Decline, ...) for calls; RegisterEmbedded, before Run,
//     names it. External ones use the same contract over POST /api/v1/scheduler
//     (scheduler_http.go says how it is framed). A framework belongs to the principal that
//     registered it (its token's name; auth.Embedded for embedded ones): no other may subscribe
//     as it or call for it.
//
// Scheduling (scheduler.go): the leader's state is memory rebuilt each term. Frameworks come
// from the replicated registry (NamespaceFrameworks), disconnected until they subscribe again;
// agents from theirs (NamespaceAgents), "recovered" until they register again or are asked;
// tasks from what agents report — agents are the truth. Calls, agent registrations and status
// updates change the state under one mutex and never block there: calls to agents and registry
// writes run in goroutines, events queue on sessions. Allocation cycles run on a timer and after
// events (batched); liveness, offer timeouts and failover timeouts run on the timer. Liveness
// also reads each agent's gossip metadata: an agent that says it takes no tasks for now (its
// containerd does not answer) is offered to nobody until it takes them again, and its tasks
// keep their states.
//
// Membership: the leader adds masters that are new to the cluster as raft voters; masters that
// stop keep their seat (so rolling restarts never shrink the cluster) until an operator removes
// them with DELETE /v1/cluster/masters/{id}. A master whose data dir belongs to another cluster
// stops with ErrOtherCluster when it meets that cluster's masters.
//
// Secrets (secrets.go): PUT /v1/secrets seals the value with Config.SecretsKeyring's first key
// (pkg/keyring; nil: a key of this master's own, made in the data dir) before it proposes it,
// so raft's log and snapshots hold only ciphertext; Secret opens it for the frameworks, or says
// which key it lacks. A leader service seals again, with the first key, what is stored under
// another key or in plain text (by earlier builds) at the start of each term and after
// SetSecretsKeyring.
//
// HTTP: every answer carries the leader and staleness headers (HeaderLeader and friends);
// writes reaching a follower are proxied to the leader, and so are reads only the leader can
// answer (tasks, frameworks). GET /metrics serves Prometheus metrics (metrics.go): raft's, the
// API's request durations, the scheduler's, and what embedded frameworks add.
package master
