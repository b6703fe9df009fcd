// Package lb is agora lb: it keeps an HAProxy's config in step with the cluster, as
// marathon-lb does for Marathon, from the same labels (HAPROXY_GROUP, HAPROXY_{n}_VHOST,
// HAPROXY_{n}_MODE, HAPROXY_{n}_PORT, ...).
//
// Use:
//
//  1. Generate is the whole policy: a pure function from the masters' services document
//     (GET /v1/services) and the lb's Options to an HAProxy config text. Same input, same
//     text; the document's raft index is not in it, so only a change of what is served makes
//     a new config.
//  2. New makes an LB from Settings: the masters to follow, the config file, how HAProxy is
//     reloaded (run as a child in master-worker mode, or an operator's reload command).
//  3. Run follows one master's Server-Sent Events stream of the document at a time, moving to
//     the next after a bounded backoff when it ends or goes silent; for each document it
//     generates the config and, only when the text changed, writes it to a temp file beside
//     the config, validates it with haproxy -c (a config HAProxy refuses is logged with its
//     message, counted as invalid, and not applied), renames it into place and reloads
//     HAProxy gracefully. While no master answers, HAProxy keeps the config it has; a config
//     left by an earlier run is served at start, before any master answers.
//  4. Handler serves /metrics (agora_lb_*) and /health.
//
// The package reads the API as any proxy would, with pkg/api's types, and imports no master
// code.
package lb
