// Package chaos breaks real Agora clusters on purpose and checks that nothing is lost.
//
// A Cluster is 3 masters and 3 agents, each a process of the agora binary (built once by the
// tests), the agents on the real containerd, each in its own containerd namespace and host port
// range, all sharing a cluster secret. Where the process may make network namespaces (root, ip
// and nft; netns.go) each node runs in one of its own, on a bridge in a namespace of its own,
// with an address of 10.217.0.0/24 that exists nowhere else, and an agent's tasks in its
// namespace (agora agent --task-netns); the harness reaches them from a namespace of its own
// too, and faults drop packets on the bridge (nftables): a node cut off, one way or both, or a
// share of all packets lost. Elsewhere, or with AGORA_CHAOS_NET=loopback, the nodes run on
// loopback, and the run says so once ("chaos: loopback mode: why"). A Workload drives it through the public HTTP API while a
// scenario injects a fault and heals it: three apps of two health-checked instances, a job due
// every second, and a small replicated write every 200 ms; it samples the agents twice a second.
// Three more clients write and read through a master picked at random each time, followers
// included — secrets (sets of names: values are never readable), the label of two apps without
// instances (a register each) and the runs of a job started by hand (a set) — and record every
// operation with its invocation and completion (History; an unanswered or 5xx write is
// indefinite, a refused one is none).
//
// After each scenario, with the cluster healed, Workload.Check verifies the invariants:
//   - the clients' history is linearizable: porcupine checks it against a register or a set
//     model per key (history.go); a history it cannot decide in time fails too, and a failing
//     one is saved as an HTML visualization (the test's artifact dir under -artifacts, else a
//     temp dir), its path in the verdict;
//   - no process exited on its own;
//   - every write answered 2xx is present;
//   - every app is back at its instances, all healthy;
//   - no app ran more instances at once than it wants (sampled on the agents);
//   - no agent had more resources allocated than it has (sampled);
//   - every due second of the job is exactly one run, or one missed record with its reason;
//   - every task's state on its agent is the master's (status updates delivered), and no agent
//     has an update left unacknowledged;
//   - no container is left in an agent's namespace that no live task owns.
//   - the scenario's own invariants (Cluster.Expect), and none it saw broken while it sampled
//     (Cluster.Violate).
//
// Scenarios (chaos_test.go): kill -9 the leader, an agent, a follower (each restarted); SIGSTOP
// the leader, an agent, past the failure timeouts, then SIGCONT; cut the leader or a follower
// off the network (packets dropped in network mode; on loopback pkg/faultnet, agora master
// --chaos-faults), or an agent off the masters for 45 s with one of its tasks killed meanwhile
// (agora agent --chaos-faults on loopback); fill a follower's,
// the leader's or an agent's data disk (a tmpfs of its own); kill -9 everything and start it
// again. clock-skew (clockskew_test.go) steps the leader's wall clock 90 s ahead and back
// (agora master --chaos-clock-file, Node.SetClockOffset). agent-wiped (agentwiped_test.go)
// kills -9 the busiest agent, removes its data dir and starts it again: the new agent
// supersedes the old id at once. kill-leader-mid-upgrade (upgrade_test.go) kills the leader
// in the middle of a rolling upgrade. In network mode only (netns_test.go): the leader's
// packets to the other masters dropped, or theirs to it (it sends but cannot hear); the leader
// and an agent split from the rest; two masters cut apart with the third bridging them; 25 % of
// all packets lost; every packet delayed 60 ms ± 40 ms and 10 % reordered (Cluster.Shape, with
// chaos/netem). `make test` runs the short set, `make chaos` all of them with a fixed seed, and
// `make chaos-long` random faults for as long as asked. Each prints a one-line verdict with the
// figures it measured, and on failure the timeline of what happened.
//
// With Config.PrivateContainerd the agents use a containerd of the cluster's own instead of the
// shared one, which a scenario may kill -9 and start again (containerd_test.go); a scenario's
// own invariants fail its verdict through Cluster.Violate.
package chaos
