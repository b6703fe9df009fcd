// Package httpapi is a master's HTTP API: the operator's and agents' endpoints (/v1/...), the
// scheduler API for external frameworks (POST /api/v1/scheduler, framed in scheduler.go),
// Marathon's /v2/leader, the web UI and /metrics, and the routes the embedded frameworks add
// (Server.HandleLeader).
//
// Every answer carries the leader and staleness headers (HeaderLeader and friends); writes
// reaching a follower are proxied to the leader, and so are reads. Reads are linearizable: the
// leader answers once a barrier committed after the request arrived has confirmed that it
// still leads (reads.go); ?stale lets any master answer from its own copy. Who may call what is
// auth.go's need (NewGuard); the API's errors become JSON bodies in one place each
// (writeStoreError, writeSchedulerError, writeOperatorError).
//
// Where it sits: the master (package master) makes one Server with the parts it composed
// (Cluster: the store, the gossip pool, the scheduler, the secrets, the clock guard) and serves
// it while it runs; without a Cluster a Server answers only /ping, /health and /v1/info. It
// owns no state: it decodes and checks requests, calls the parts, and encodes their answers.
// It imports the parts (master/scheduler, master/registry, master/secrets, master/clockcheck);
// it must not import the master or mastertest (pkg/layout checks it).
package httpapi
