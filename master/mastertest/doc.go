// Package mastertest holds what tests and benchmarks of a master need and production never
// uses: SimulatedAgents, agents that report straight into the leader's scheduler, for
// benchmarks and large simulated clusters (the frameworks' tests and benchmarks run on them
// through frameworks/frameworktest).
//
// Where it sits: beside the scheduler, which it reports to (master/scheduler); only tests,
// benchmarks and test helpers import it. It must not import the master, the HTTP API or the
// other parts of the master (pkg/layout checks it), so that the master's own tests can use it.
package mastertest
