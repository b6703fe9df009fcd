// Package frameworks holds the frameworks that ship inside the agora binary: marathon/ for
// long-running services and chronos/ for cron-driven batch jobs. Each talks to the master through
// the same Scheduler contract an external framework uses over HTTP (master.Subscribe, the in-process
// twin of POST /api/v1/scheduler). What they share lives here: their Config, with its defaults,
// and how they subscribe (again as the same framework on every new leader).
package frameworks
