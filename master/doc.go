// Package master is the replicated master of an Agora cluster: it keeps the registry of agents
// and frameworks, offers agents' resources to frameworks, and routes their decisions to agents.
//
// Today it holds only the HTTP front door a node serves (GET /ping, /health and /v1/info); the
// replicated core, the allocator and the scheduler API arrive with the issues that build them.
// Use:
//
//  1. NewServer(Config{HTTPAddr: "127.0.0.1:8080", Info: ...}) binds the listener, so a bad
//     address fails at start, not later;
//  2. Serve(ctx) answers requests until ctx ends, then shuts down gracefully.
package master
