// Package secrets keeps the cluster's secrets — values frameworks pass to tasks (Marathon's
// secret references) that the API never shows — in the replicated store, sealed: a value is
// encrypted with the primary key of this master's keyring (pkg/keyring) before it is proposed,
// so neither raft's log nor its snapshots hold it in plain text, and opened with whichever key
// of the keyring sealed it. Reseal, a leader service, seals again with the primary key what is
// stored under another key or in plain text (by earlier builds).
//
// Where it sits: it owns the store's "secrets" namespace (Applier, which the master registers)
// and nothing in memory but the keyring. The master (package master) makes one Store and runs
// Reseal while it leads; the HTTP API (master/httpapi) puts, deletes and lists through it; the
// frameworks read values through Master.Secret. It reaches the store only (raft/).
//
// It must not import the master, the HTTP API, the scheduler or any other part of the master
// (pkg/layout checks it).
package secrets
