// Package chronos is Agora's batch framework: Metronome's JSON job specs with cron schedules
// (github.com/robfig/cron/v3) and Chronos's job DAGs, on the two-level scheduler. It is a
// framework like any other: work of the leading master (frameworks.Driver) that subscribes
// through frameworks.Host, takes offers and launches tasks; its state is the "chronos"
// namespace of the replicated store (see Namespace).
//
// How a run happens:
//
// Wire formats: every answer of Metronome's API (/v1/jobs, /v1/queue, /v0/scheduled-jobs) is
// written by the Metronome codec (metronome.go), every job of Chronos's (/scheduler/*,
// /v1/scheduler/*) read and written by the Chronos codec (chronosapi.go): the handlers hand
// them the framework's own types, so that shapes cannot drift from handler to handler.
//
//  1. A job is POSTed to /v1/jobs (or Chronos's /scheduler/iso8601, /scheduler/dependency):
//     checked on its own (Normalize: every error names its field; ids within 128 characters,
//     run.mem at least resources.MinTaskMem (MetronomeMinMem on Metronome's API), no schedule firing more often than once a second)
//     and against the graph (no missing parent, no cycle) and the registered agents (root and
//     host volumes some agent allows, once any is registered), then committed with a cursor
//     per schedule set to now. A refusal is Metronome's 422, {"message", "details": [{"path",
//     "errors"}]}, with Agora's "field"; a query parameter the API does not take is a 400
//     naming it (checkQuery).
//  2. The leader's loop asks each due schedule's Plan (schedule.go, decisions without I/O) what
//     to do since its cursor: at most one run starts — the latest due time, if within
//     startingDeadlineSeconds — the rest are recorded missed, and the concurrencyPolicy
//     (ALLOW, FORBID, REPLACE) decides about runs still active. The new run (INITIAL), the
//     missed runs and the moved cursor are one raft batch: a leader change at any moment
//     neither skips a due run nor creates it twice.
//  3. An offer that fits a waiting run gets an attempt: its task id is committed with the run
//     (STARTING) before the task is launched. Status updates move the run to ACTIVE, then
//     SUCCESS or FAILED (ON_FAILURE: again after exponential backoff, up to backoffLimit; a
//     launch that never reached an agent, TASK_DROPPED, again without using a retry — at once
//     the first time, then after the same backoff — its attempt taking the place of the last);
//     updates are acknowledged only after what they changed is committed. activeDeadlineSeconds
//     and the stop action kill the task; maxLaunchDelay fails a run no offer fits. While a run
//     waits, each offer that does not fit it records why (frameworks.OfferStats, Marathon's
//     reason names with Agora's words): the run's view says it in waitingReason, with Marathon's
//     processedOffersSummary, and maxLaunchDelay's failure in its reason. Secrets (run.env
//     {"secret": ref} and run.volumes {"containerPath", "secret": ref}, with run.secrets {ref:
//     {source}}) are read from the masters' secret store at launch into the task's secret env
//     and secret files (a file of the task's user, 0400, on a tmpfs, mounted read-only at
//     containerPath: relative in the sandbox, absolute only with an image); a run whose secret
//     has no value fails at once with a reason that says where to PUT it.
//  4. A run that succeeds starts each dependant whose parents have all succeeded since the
//     dependant's own last run (fan-out and fan-in).
//  5. A new leader loads everything, reconciles the tasks of runs in flight (a task the master
//     has never heard of was never launched: it is launched again without using a retry) and
//     goes on from the cursors.
//
// Time. Due times are worked out from the leading master's wall clock, and fire only while
// that clock is trusted: the master measures the other masters' clocks NTP-style and trusts
// its own only while it agrees with a majority of them within --max-clock-skew
// (Host.CheckClock; none to compare with, as in `agora dev`, trusts it). While it is not
// trusted, no schedule fires, nothing is recorded missed, no offer is used, and the job's view
// says why (schedulingPaused); the master meanwhile hands leadership to a master whose clock
// agrees, and that leader records the due times that passed as missed, after they were due.
// Within the bound, decisions use the earliest clock of the agreeing masters, so nothing fires
// before it is due by any of them. Due times do not come from the replicated log's time:
// that time is stamped by the proposing leader's own clock (raft.Txn.Time), so a leader
// whose clock runs ahead would stamp its own wrong time into the log, and a log time only
// shows that some leader's clock said so; it cannot tell which clock is right, only the
// comparison with the peers can. A cursor beyond a trusted clock by more than the bound
// (written by a leader whose clock ran ahead, undetected, or before every clock stepped back),
// found when a leader starts or its clock is trusted again, is not trusted: it moves back to now, the missed records of due times still to come are
// withdrawn, and due times to come that already have a run keep it and do not run again (every leader,
// at load, holds any run due after its schedule's cursor as already done) —
// else nothing would run until the clock caught up with that cursor.
//
// Daylight saving follows robfig/cron (as Kubernetes CronJob): a local time that does not exist
// that day is skipped, one that happens twice is due at both instants. Schedules in UTC have
// neither. A schedule's cron may also be an ISO 8601 repeating interval, R[n]/start/period, as
// Chronos's are.
//
// Where things are: service.go is the framework's life on a leader (New, the driver's begin,
// cycle and end, change and act: a change committed, then acted on); state.go the leader's
// memory and the changes to its jobs (putJobLocked, removeJobLocked); plan.go the planning —
// what is due, missed, replaced, failed past a deadline — and the runs' lives from status
// updates; offers.go the launches into offers; http.go the /v1 API's handlers, which parse,
// check, call those and answer, as chronoshttp.go's do for Chronos's API (views.go, metronome.go
// and chronosapi.go write the shapes).
// The planning is played step by step in testdata/cron/*.txt (TestCronScripts).
package chronos
