// Package chaos breaks real Agora clusters on purpose and checks that nothing is lost.
//
// A Cluster is 3 masters and 3 agents, each a process of the agora binary (built once by the
// tests) on loopback, the agents on the real containerd, each in its own namespace and host port
// range, all sharing a cluster secret. A Workload drives it through the public HTTP API while a
// scenario injects a fault and heals it: three apps of two health-checked instances, a job due
// every second, and a small replicated write every 200 ms; it samples the agents twice a second.
//
// After each scenario, with the cluster healed, Workload.Check verifies the invariants:
//   - no process exited on its own;
//   - every write answered 2xx is present;
//   - every app is back at its instances, all healthy;
//   - no app ran more instances at once than it wants (sampled on the agents);
//   - no agent had more resources allocated than it has (sampled);
//   - every due second of the job is exactly one run, or one missed record with its reason;
//   - every task's state on its agent is the master's (status updates delivered), and no agent
//     has an update left unacknowledged;
//   - no container is left in an agent's namespace that no live task owns.
//
// Scenarios (chaos_test.go): kill -9 the leader, an agent, a follower (each restarted); SIGSTOP
// the leader, an agent, past the failure timeouts, then SIGCONT; cut the leader or a follower
// off the network (pkg/faultnet, agora master --chaos-faults), or an agent off the masters for
// 45 s with one of its tasks killed meanwhile (agora agent --chaos-faults); fill a follower's,
// the leader's or an agent's data disk (a tmpfs of its own); kill -9 everything and start it
// again. `make test` runs the short set, `make chaos` all of them with a fixed seed, and
// `make chaos-long` random faults for as long as asked. Each prints a one-line verdict with the
// figures it measured, and on failure the timeline of what happened.
//
// With Config.PrivateContainerd the agents use a containerd of the cluster's own instead of the
// shared one, which a scenario may kill -9 and start again (containerd_test.go); a scenario's
// own invariants fail its verdict through Cluster.Violation.
package chaos
