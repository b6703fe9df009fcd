// Package clockcheck is the masters' check of one another's wall clocks: a Guard asks the other
// voters their time over GET /v1/cluster/self once a second and judges, from those samples and
// without I/O (judgeClock), whether this master's clock may be trusted for decisions that
// depend on it — when a cron run is due. clockcheck.go walks through the measure.
//
// Where it sits: the master (package master) makes one Guard per master, runs it beside the
// API, and asks it for the verdict the embedded frameworks check (Master.CheckClock); the HTTP
// API (master/httpapi) shows its Status in GET /v1/cluster and hands leadership over through it
// (DELETE /v2/leader), so that a master with a wrong clock is never picked; its Collectors
// join the master's /metrics. It owns only its samples, in memory. It reads the raft
// configuration and hands leadership over through the store (raft/), and finds the other
// masters' API addresses in their gossip metadata (pkg/gossip).
//
// It must not import the master, the HTTP API, the scheduler or any other part of the master:
// they call it, never the other way round (pkg/layout checks it).
package clockcheck
