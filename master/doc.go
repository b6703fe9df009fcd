// Package master is a master of an Agora cluster: a server of the replicated store (raft/), a
// member of the gossip pool (pkg/gossip) and the HTTP API. The allocator, offers, the agent and
// framework registries and the scheduler API will live here too, as leader services over the
// replicated store; today the leader runs the membership reconciler.
//
// Use:
//
//  1. New(Config) opens the data dir (node-id, cluster-id, raft/) and binds the raft, gossip
//     and HTTP ports, so a port in use or a damaged data dir fails at once.
//  2. RegisterLeaderService adds work that runs only on the leader: started when this master
//     becomes a leader that has caught up, stopped (and waited for) when it stops leading. One
//     term's services have all returned before the next term's start.
//  3. Run joins the gossip pool (--join), founds the cluster (alone, or with --bootstrap-expect
//     masters, all computing the same server list and cluster id) or waits for the leader to
//     add it, serves the API, and on ctx's end leaves gossip gracefully and closes the store.
//
// Membership: the leader adds masters that are new to the cluster as raft voters; masters that
// stop keep their seat (so rolling restarts never shrink the cluster) until an operator removes
// them with DELETE /v1/cluster/masters/{id}. A master whose data dir belongs to another cluster
// stops with ErrOtherCluster when it meets that cluster's masters.
//
// HTTP: every answer carries the leader and staleness headers (HeaderLeader and friends);
// writes reaching a follower are proxied to the leader.
package master
