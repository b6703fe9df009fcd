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
// tasks from what agents report — agents are the truth. Until an agent has registered with this
// leader, a reconciliation question about a task the leader does not know, or a kill of one,
// waits for it (answered, or sent, when it registers or is declared unreachable): answered at
// once, a framework would write off a task that still runs. An agent registering from the
// hostname and API address of another supersedes it in the same raft command (an agent that
// lost its data dir comes back as a new one): the old id is removed and its tasks end at once.
// An active agent whose id no gossip member carries for AgentGossipGrace (--agent-gossip-grace)
// is unreachable and offered to nobody: gossip is how an agent proves it lives, so one
// registered by hand with nothing behind it does not stay active. Calls, agent registrations and status
// updates change the state under one mutex and never block there: calls to agents and registry
// writes run in goroutines, events queue on sessions. Allocation cycles run on a timer and after
// events (batched); liveness, offer timeouts and failover timeouts run on the timer. Liveness
// also reads each agent's gossip metadata: an agent that says it takes no tasks for now (its
// containerd does not answer) is offered to nobody until it takes them again, and its tasks
// keep their states. Ended tasks stay listed (GET /v1/tasks) up to SchedulerConfig.KeepEnded
// (10,000), the oldest forgotten first; of failed launches (tasks that ended before
// TASK_RUNNING, other than FINISHED or KILLED) only the latest per framework and task name, so
// an app or a job whose every launch fails leaves one task, not one per attempt.
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
// Clocks (clockcheck.go): every master asks the other masters their wall clock once a second
// over GET /v1/cluster/self (offset = peer's time - the probe's midpoint, error = half the
// round trip) and trusts its own (CheckClock) only while a majority of the voters, itself
// included, agree within Config.MaxClockSkew (--max-clock-skew, 500 ms); a lone master trusts
// it. A step of its own clock shows at once, through the monotonic clock, not at the next
// probe. /v1/cluster's "clock" and agora_master_clock_offset_seconds show the measure. A leader
// whose clock disagrees with a majority hands leadership to a master whose clock agrees, and
// DELETE /v2/leader never picks one that disagrees. A master with a wrong clock still
// campaigns when a leader dies: hashicorp/raft has no clean way to keep a voter from it (a long
// election timeout would also keep it voting for the dead leader and block the election), so
// the embedded frameworks' refusal to fire and the hand-over are what protect.
//
// HTTP: every answer carries the leader and staleness headers (HeaderLeader and friends);
// writes reaching a follower are proxied to the leader, and so are reads. Reads are
// linearizable: the leader answers once a barrier committed after the request arrived has
// confirmed that it still leads (reads.go); ?stale lets any master answer from its own copy
// (reads only the leader can answer, tasks and frameworks, still go to it, without the
// barrier). GET /metrics serves Prometheus metrics (metrics.go): raft's, the API's request
// durations, the scheduler's, and what embedded frameworks add.
package master
