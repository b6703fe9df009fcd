// Package agent is the Agora agent daemon. Today it joins the cluster's gossip, registers with
// the leading master (keeping its agent id in its data dir) and registers again with every new
// leader, and serves /ping, /health and /v1/info.
//
// Its parts for running tasks are built and tested on their own, not yet wired into the daemon:
// agent/containerd (launch, wait, kill real containers), agent/checkpoint (tasks and
// unacknowledged status updates in bbolt) and agent/statusupdate (in-order delivery with
// retries until acknowledged).
package agent
