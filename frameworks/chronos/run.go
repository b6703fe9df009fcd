package chronos

import (
	"fmt"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// Run states, as Metronome names them. A run's life:
//
//	          attempt recorded,          TASK_RUNNING
//	          then launched
//	INITIAL ─────────────────▶ STARTING ─────────────▶ ACTIVE ──TASK_FINISHED──▶ SUCCESS
//	   ▲                          │                       │
//	   │ ON_FAILURE, retries left │   task failed/lost    │
//	   └──────(after backoff)─────┴───────────────────────┘
//	   │ task never reached an agent (DROPPED, UNKNOWN): launched again, no retry used —
//	   │ the first time at once, then after the job's backoff (dropped: how many in a row)
//	   │
//	   │ NEVER, retries used up, stopped, activeDeadlineSeconds, maxLaunchDelay
//	   └────────────────────────────────────────────────────────────────────────▶ FAILED
//
// Every transition happens in (*Run).onStatus, (*Run).launch, (*Run).fail or (*Run).succeed,
// and is written to the replicated store before anything is launched or acknowledged.
const (
	RunInitial  = "INITIAL"
	RunStarting = "STARTING"
	RunActive   = "ACTIVE"
	RunSuccess  = "SUCCESS"
	RunFailed   = "FAILED"
)

// Triggers: what created a run.
const (
	TriggerSchedule   = "schedule"
	TriggerManual     = "manual"
	TriggerDependency = "dependency"
)

// Run is one run of a job.
type Run struct {
	ID          string     `json:"id"`
	JobID       string     `json:"jobId"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"createdAt"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	Trigger     string     `json:"trigger"`
	ScheduleID  string     `json:"scheduleId,omitempty"`
	// ScheduledAt is the scheduled time a schedule's run was created for.
	ScheduledAt *time.Time `json:"scheduledAt,omitempty"`
	// Tasks are its attempts, oldest first. A launch that never reached an agent takes the
	// place of the one before it that did not either: a run whose launches are dropped again
	// and again keeps one of them, not one per attempt.
	Tasks []RunTask `json:"tasks"`
	// Attempts counts every launch, those whose place was taken included (task ids number
	// them); Dropped the launches in a row that never reached an agent.
	Attempts int `json:"attempts,omitempty"`
	Dropped  int `json:"dropped,omitempty"`
	// Retries used (ON_FAILURE); NextAttemptAt is when the next launch may happen.
	Retries       int        `json:"retries,omitempty"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
	// ExitStatus is the last attempt's, when its task said.
	ExitStatus *int `json:"exitStatus,omitempty"`
	// Reason says why a run FAILED (or is being stopped).
	Reason   string `json:"reason,omitempty"`
	Stopping bool   `json:"stopping,omitempty"`
}

// RunTask is one attempt: a task.
type RunTask struct {
	ID          string     `json:"id"`
	Status      task.State `json:"status"`
	AgentID     string     `json:"agentId"`
	Host        string     `json:"host"`
	LaunchedAt  time.Time  `json:"launchedAt"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	ExitStatus  *int       `json:"exitStatus,omitempty"`
	Message     string     `json:"message,omitempty"`
}

// clone is a copy that shares nothing the framework goes on changing (for answers written
// after the lock is released).
func (r *Run) clone() Run {
	c := *r
	c.Tasks = append([]RunTask{}, r.Tasks...) // [] in JSON, as Metronome's, not null
	return c
}

// Active says whether the run has not ended.
func (r *Run) Active() bool { return r.Status != RunSuccess && r.Status != RunFailed }

// task is the current attempt, if any.
func (r *Run) task() *RunTask {
	if len(r.Tasks) == 0 {
		return nil
	}
	return &r.Tasks[len(r.Tasks)-1]
}

// liveTask is the attempt whose task may still run (launched, not ended), if any.
func (r *Run) liveTask() *RunTask {
	if t := r.task(); t != nil && (r.Status == RunStarting || r.Status == RunActive) {
		return t
	}
	return nil
}

// waiting says whether the run waits for an offer now.
func (r *Run) waiting(now time.Time) bool {
	return r.Status == RunInitial && !r.Stopping && (r.NextAttemptAt == nil || !now.Before(*r.NextAttemptAt))
}

// waitingSince is when the run's present wait for an offer began: its retry's time, or its
// creation.
func (r *Run) waitingSince() time.Time {
	if r.NextAttemptAt != nil {
		return *r.NextAttemptAt
	}
	return r.CreatedAt
}

// nextAttempt is the number of the next launch (1 for the first).
func (r *Run) nextAttempt() int { return max(r.Attempts, len(r.Tasks)) + 1 }

// launch records an attempt: the run is STARTING with a task that is launched next. It takes
// the place of an attempt that never reached an agent.
func (r *Run) launch(taskID string, o api.Offer, now time.Time) {
	t := RunTask{ID: taskID, Status: task.Staging, AgentID: o.AgentID, Host: o.Hostname, LaunchedAt: now}
	r.Attempts = r.nextAttempt()
	if last := r.task(); last != nil && last.StartedAt == nil && (last.Status == task.Dropped || last.Status == task.Unknown) {
		*last = t
	} else {
		r.Tasks = append(r.Tasks, t)
	}
	r.Status = RunStarting
	r.NextAttemptAt = nil
}

// outcome is what a status update did to a run.
type outcome int

const (
	unchanged outcome = iota
	changed           // the run's record changed
	ended             // the run ended (SUCCESS or FAILED)
)

// onStatus applies a status update of the run's current task. restart is the job's policy.
func (r *Run) onStatus(st api.TaskStatus, restart Restart, now time.Time) outcome {
	t := r.task()
	if t == nil || t.ID != st.TaskID || !r.Active() || r.Status == RunInitial {
		return unchanged // an earlier attempt's late update, or a run already over
	}
	if t.Status == st.State && !st.State.IsTerminal() {
		return unchanged
	}
	t.Status, t.Message = st.State, st.Message
	ts := st.Timestamp
	if ts.IsZero() {
		ts = now
	}
	switch {
	case st.State == task.Running:
		if t.StartedAt == nil {
			t.StartedAt = &ts
		}
		r.Status, r.Dropped = RunActive, 0
		return changed
	case !st.State.IsTerminal() && st.State != task.Unknown:
		return changed // STAGING, STARTING, UNREACHABLE (it may come back), KILLING
	}
	t.CompletedAt = &ts
	t.ExitStatus = st.ExitStatus
	r.ExitStatus = st.ExitStatus
	switch {
	case st.State == task.Finished && !r.Stopping:
		r.succeed(ts)
		return ended
	case r.Stopping:
		r.fail(ts, r.Reason)
		return ended
	case neverRan(st) && t.StartedAt == nil:
		// The launch never reached an agent: the run has not run; launch it again — at once the
		// first time (a new leader's launch the master never heard of), then after the job's
		// backoff, so that an agent that drops every launch is not sent one per offer.
		r.Status, r.Dropped = RunInitial, r.Dropped+1
		if r.Dropped > 1 {
			at := now.Add(restart.backoff(r.Dropped - 1))
			r.NextAttemptAt = &at
		}
		return changed
	case restart.Policy == RestartOnFailure && restart.BackoffLimit != nil && r.Retries < *restart.BackoffLimit:
		r.Retries++
		at := now.Add(restart.backoff(r.Retries))
		r.Status, r.NextAttemptAt = RunInitial, &at
		return changed
	}
	r.fail(ts, failureReason(st))
	return ended
}

// neverRan says whether a terminal update means the task never started on an agent.
func neverRan(st api.TaskStatus) bool {
	return st.State == task.Dropped || st.State == task.Unknown
}

func failureReason(st api.TaskStatus) string {
	msg := fmt.Sprintf("task %s", st.State)
	if st.ExitStatus != nil {
		msg += fmt.Sprintf(" with exit status %d", *st.ExitStatus)
	}
	if st.Message != "" {
		msg += ": " + st.Message
	}
	return msg
}

func (r *Run) succeed(at time.Time) {
	r.Status, r.CompletedAt, r.Reason, r.NextAttemptAt = RunSuccess, &at, "", nil
}

func (r *Run) fail(at time.Time, reason string) {
	r.Status, r.CompletedAt, r.Reason, r.NextAttemptAt, r.Stopping = RunFailed, &at, reason, nil, false
}

// stop asks the run to end: a run without a live task fails at once (true); one with a task is
// stopping until its task has ended (false: kill the task).
func (r *Run) stop(reason string, now time.Time) bool {
	if r.liveTask() == nil {
		r.fail(now, reason)
		return true
	}
	r.Stopping, r.Reason = true, reason
	return false
}

// History is a job's finished runs, as Metronome's history embed shows it, with the missed
// runs of its schedules.
type History struct {
	SuccessCount           int          `json:"successCount"`
	FailureCount           int          `json:"failureCount"`
	LastSuccessAt          *time.Time   `json:"lastSuccessAt"`
	LastFailureAt          *time.Time   `json:"lastFailureAt"`
	SuccessfulFinishedRuns []RunSummary `json:"successfulFinishedRuns"`
	FailedFinishedRuns     []RunSummary `json:"failedFinishedRuns"`
	MissedCount            int          `json:"missedCount"`
	MissedRuns             []MissedRun  `json:"missedRuns"` // newest first, at most maxMissedKept
	// LastRunAt is when the job's latest run was created, and ParentSuccesses each parent's
	// SuccessCount then: a dependant job runs again once every parent has succeeded since. The
	// counts decide, not the times: a success is stamped by its agent's clock and LastRunAt by
	// the leader's, and an agent's clock a little behind would hold the child back. A history
	// written before the counts were kept (or a parent added since) compares the times.
	LastRunAt       *time.Time     `json:"lastRunAt,omitempty"`
	ParentSuccesses map[string]int `json:"parentSuccesses,omitempty"`
}

// RunSummary is a finished run in a history.
type RunSummary struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"createdAt"`
	FinishedAt time.Time `json:"finishedAt"`
	Tasks      []string  `json:"tasks,omitempty"` // its attempts' task ids, oldest first
}

// MissedRun is a scheduled time that did not get a run, and why.
type MissedRun struct {
	ScheduleID  string    `json:"scheduleId"`
	ScheduledAt time.Time `json:"scheduledAt"`
	Reason      string    `json:"reason"`
	RecordedAt  time.Time `json:"recordedAt"`
}

const maxMissedKept = 100

// finished adds an ended run; it returns the ids of runs that fall out of the limits.
func (h *History) finished(r *Run, keepSuccessful, keepFailed int) (dropped []string) {
	s := RunSummary{ID: r.ID, CreatedAt: r.CreatedAt, FinishedAt: *r.CompletedAt}
	for _, t := range r.Tasks {
		s.Tasks = append(s.Tasks, t.ID)
	}
	list, keep := &h.FailedFinishedRuns, keepFailed
	if r.Status == RunSuccess {
		h.SuccessCount++
		h.LastSuccessAt = r.CompletedAt
		list, keep = &h.SuccessfulFinishedRuns, keepSuccessful
	} else {
		h.FailureCount++
		h.LastFailureAt = r.CompletedAt
	}
	*list = append([]RunSummary{s}, *list...)
	for len(*list) > keep {
		dropped = append(dropped, (*list)[len(*list)-1].ID)
		*list = (*list)[:len(*list)-1]
	}
	return dropped
}

// missed records scheduled times that got no run (newest first).
func (h *History) missed(scheduleID string, at []time.Time, more int, reason string, now time.Time) {
	for _, t := range at {
		h.MissedRuns = append([]MissedRun{{ScheduleID: scheduleID, ScheduledAt: t, Reason: reason, RecordedAt: now}}, h.MissedRuns...)
	}
	if len(h.MissedRuns) > maxMissedKept {
		h.MissedRuns = h.MissedRuns[:maxMissedKept]
	}
	h.MissedCount += len(at) + more
}
