// Package frameworks holds the frameworks that ship inside the agora binary: marathon/ for
// long-running services and chronos/ for cron-driven batch jobs. Each talks to the master through
// the same Scheduler contract an external framework uses over HTTP (master.Subscribe, the in-process
// twin of POST /api/v1/scheduler). marathon/ runs; chronos/ has its schedule planner so far.
package frameworks
