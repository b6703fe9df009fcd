package chronos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
)

// The Metronome codec: how every /v1/jobs, /v1/queue and /v0/scheduled-jobs answer is written,
// decided here and nowhere else, as Metronome 0.6 writes it. The framework's own types (Job, Run,
// History) are what it stores; the handlers hand them to write* below, which turn them into
// Metronome's shapes:
//
//   - times as Metronome writes them, milliseconds and a zone offset without a colon, in UTC:
//     2026-12-06T20:24:17.735+0000 (MetronomeTime);
//   - a run: id, jobId, status, createdAt, completedAt (null until it ends), tasks (never null:
//     [] before the first launch), each task with id, startedAt, completedAt, status; Agora's
//     own fields (trigger, attempts, reason, waitingReason, ...) beside them;
//   - a job: id, description, labels ({} when none), run with every default filled in (env {},
//     artifacts [], volumes [], placement.constraints [], ...), schedules, dependencies as
//     [{"id": ...}], and what ?embed= asks for present even when empty (activeRuns: []);
//   - a history's finished runs with the ids of their tasks.
//
// Reading goes the other way and is lenient: the Go types' UnmarshalJSON take Metronome's times
// and RFC 3339 (what the store holds), and dependencies as ids or {"id"} objects.

// MetronomeTimeLayout is how Metronome writes an instant (Java's yyyy-MM-dd'T'HH:mm:ss.SSSZ).
const MetronomeTimeLayout = "2006-01-02T15:04:05.000-0700"

// MetronomeTime is an instant written as Metronome writes it; it reads RFC 3339 too.
type MetronomeTime time.Time

// MarshalJSON writes the instant in UTC, to the millisecond.
func (t MetronomeTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(t).UTC().Format(MetronomeTimeLayout))
}

// UnmarshalJSON reads Metronome's form or RFC 3339.
func (t *MetronomeTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, layout := range []string{MetronomeTimeLayout, time.RFC3339Nano} {
		if v, err := time.Parse(layout, s); err == nil {
			*t = MetronomeTime(v.UTC())
			return nil
		}
	}
	return fmt.Errorf("%q is not a time (want %s or RFC 3339)", s, MetronomeTimeLayout)
}

// Time is the instant.
func (t MetronomeTime) Time() time.Time { return time.Time(t) }

func mtime(t *time.Time) *MetronomeTime {
	if t == nil {
		return nil
	}
	m := MetronomeTime(*t)
	return &m
}

// metronomeTimes finds Metronome's times in JSON (a whole string value), for fromMetronomeTimes.
var metronomeTimes = regexp.MustCompile(`"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})([+-]\d\d)(\d\d)"`)

// fromMetronomeTimes rewrites every Metronome time in a JSON text as RFC 3339, which
// time.Time reads (+0000 as Z, so that it reads as UTC): what lets Go clients decode the API's
// answers into the framework's types.
func fromMetronomeTimes(b []byte) []byte {
	if !bytes.Contains(b, []byte(".")) || !metronomeTimes.Match(b) {
		return b
	}
	return metronomeTimes.ReplaceAllFunc(b, func(m []byte) []byte {
		g := metronomeTimes.FindSubmatch(m)
		if string(g[2]) == "+00" && string(g[3]) == "00" {
			return []byte(`"` + string(g[1]) + `Z"`)
		}
		return []byte(`"` + string(g[1]) + string(g[2]) + ":" + string(g[3]) + `"`)
	})
}

// UnmarshalJSON reads a run as the store holds it or as the API writes it.
func (r *Run) UnmarshalJSON(b []byte) error {
	type plain Run
	return json.Unmarshal(fromMetronomeTimes(b), (*plain)(r))
}

// UnmarshalJSON reads a run view as the API writes it.
func (v *RunView) UnmarshalJSON(b []byte) error {
	if err := v.Run.UnmarshalJSON(b); err != nil {
		return err
	}
	var extra struct {
		WaitingReason          string                             `json:"waitingReason"`
		ProcessedOffersSummary *frameworks.ProcessedOffersSummary `json:"processedOffersSummary"`
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return err
	}
	v.WaitingReason, v.ProcessedOffersSummary = extra.WaitingReason, extra.ProcessedOffersSummary
	return nil
}

// UnmarshalJSON reads a history as the store holds it or as the API writes it.
func (h *History) UnmarshalJSON(b []byte) error {
	type plain History
	return json.Unmarshal(fromMetronomeTimes(b), (*plain)(h))
}

// UnmarshalJSON reads a history summary as the API writes it.
func (h *HistorySummary) UnmarshalJSON(b []byte) error {
	type plain HistorySummary
	return json.Unmarshal(fromMetronomeTimes(b), (*plain)(h))
}

// JobIDs are a job's dependencies: Metronome writes [{"id": "a"}], Agora and Chronos ["a"];
// either is read.
type JobIDs []string

// UnmarshalJSON reads ids or {"id"} objects.
func (ids *JobIDs) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf(`dependencies are a list of job ids or of {"id": "..."}`)
	}
	out := make(JobIDs, 0, len(raw))
	for _, e := range raw {
		var s string
		if json.Unmarshal(e, &s) == nil {
			out = append(out, s)
			continue
		}
		var o struct {
			ID string `json:"id"`
		}
		dec := json.NewDecoder(bytes.NewReader(e))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil || o.ID == "" {
			return fmt.Errorf(`a dependency is a job id or {"id": "..."}`)
		}
		out = append(out, o.ID)
	}
	*ids = out
	return nil
}

// --- what Metronome writes ---

type mRun struct {
	ID          string         `json:"id"`
	JobID       string         `json:"jobId"`
	Status      string         `json:"status"`
	CreatedAt   MetronomeTime  `json:"createdAt"`
	CompletedAt *MetronomeTime `json:"completedAt"`
	Tasks       []mTask        `json:"tasks"`
	// Agora's.
	Trigger                string                             `json:"trigger"`
	ScheduleID             string                             `json:"scheduleId,omitempty"`
	ScheduledAt            *MetronomeTime                     `json:"scheduledAt,omitempty"`
	Attempts               int                                `json:"attempts,omitempty"`
	Dropped                int                                `json:"dropped,omitempty"`
	Retries                int                                `json:"retries,omitempty"`
	NextAttemptAt          *MetronomeTime                     `json:"nextAttemptAt,omitempty"`
	ExitStatus             *int                               `json:"exitStatus,omitempty"`
	Reason                 string                             `json:"reason,omitempty"`
	Stopping               bool                               `json:"stopping,omitempty"`
	WaitingReason          string                             `json:"waitingReason,omitempty"`
	ProcessedOffersSummary *frameworks.ProcessedOffersSummary `json:"processedOffersSummary,omitempty"`
}

// mTask is a run's task: Metronome's id, startedAt (its launch until it runs, then when it
// started running), completedAt and status, with Agora's agent, host, launch time, exit status
// and message.
type mTask struct {
	ID          string         `json:"id"`
	StartedAt   MetronomeTime  `json:"startedAt"`
	CompletedAt *MetronomeTime `json:"completedAt"`
	Status      task.State     `json:"status"`
	AgentID     string         `json:"agentId"`
	Host        string         `json:"host"`
	LaunchedAt  MetronomeTime  `json:"launchedAt"`
	ExitStatus  *int           `json:"exitStatus,omitempty"`
	Message     string         `json:"message,omitempty"`
}

func metronomeRun(v RunView) mRun {
	r := v.Run
	out := mRun{ID: r.ID, JobID: r.JobID, Status: r.Status, CreatedAt: MetronomeTime(r.CreatedAt), CompletedAt: mtime(r.CompletedAt),
		Tasks: make([]mTask, 0, len(r.Tasks)), Trigger: r.Trigger, ScheduleID: r.ScheduleID, ScheduledAt: mtime(r.ScheduledAt),
		Attempts: r.Attempts, Dropped: r.Dropped, Retries: r.Retries, NextAttemptAt: mtime(r.NextAttemptAt), ExitStatus: r.ExitStatus,
		Reason: r.Reason, Stopping: r.Stopping, WaitingReason: v.WaitingReason, ProcessedOffersSummary: v.ProcessedOffersSummary}
	for _, t := range r.Tasks {
		started := t.LaunchedAt
		if t.StartedAt != nil {
			started = *t.StartedAt
		}
		out.Tasks = append(out.Tasks, mTask{ID: t.ID, StartedAt: MetronomeTime(started), CompletedAt: mtime(t.CompletedAt), Status: t.Status,
			AgentID: t.AgentID, Host: t.Host, LaunchedAt: MetronomeTime(t.LaunchedAt), ExitStatus: t.ExitStatus, Message: t.Message})
	}
	return out
}

func metronomeRuns(vs []RunView) []mRun {
	out := make([]mRun, 0, len(vs))
	for _, v := range vs {
		out = append(out, metronomeRun(v))
	}
	return out
}

type mHistory struct {
	SuccessCount           int            `json:"successCount"`
	FailureCount           int            `json:"failureCount"`
	LastSuccessAt          *MetronomeTime `json:"lastSuccessAt"`
	LastFailureAt          *MetronomeTime `json:"lastFailureAt"`
	SuccessfulFinishedRuns []mRunInfo     `json:"successfulFinishedRuns"`
	FailedFinishedRuns     []mRunInfo     `json:"failedFinishedRuns"`
	// Agora's.
	MissedCount int          `json:"missedCount"`
	MissedRuns  []mMissedRun `json:"missedRuns"`
}

type mRunInfo struct {
	ID         string        `json:"id"`
	CreatedAt  MetronomeTime `json:"createdAt"`
	FinishedAt MetronomeTime `json:"finishedAt"`
	Tasks      []string      `json:"tasks"`
}

type mMissedRun struct {
	ScheduleID  string        `json:"scheduleId"`
	ScheduledAt MetronomeTime `json:"scheduledAt"`
	Reason      string        `json:"reason"`
	RecordedAt  MetronomeTime `json:"recordedAt"`
}

type mHistorySummary struct {
	SuccessCount  int            `json:"successCount"`
	FailureCount  int            `json:"failureCount"`
	LastSuccessAt *MetronomeTime `json:"lastSuccessAt"`
	LastFailureAt *MetronomeTime `json:"lastFailureAt"`
	MissedCount   int            `json:"missedCount"` // Agora's
}

func metronomeRunInfos(rs []RunSummary) []mRunInfo {
	out := make([]mRunInfo, 0, len(rs))
	for _, r := range rs {
		out = append(out, mRunInfo{ID: r.ID, CreatedAt: MetronomeTime(r.CreatedAt), FinishedAt: MetronomeTime(r.FinishedAt), Tasks: nonNil(r.Tasks)})
	}
	return out
}

func metronomeHistory(h *History) *mHistory {
	out := &mHistory{SuccessCount: h.SuccessCount, FailureCount: h.FailureCount, LastSuccessAt: mtime(h.LastSuccessAt), LastFailureAt: mtime(h.LastFailureAt),
		SuccessfulFinishedRuns: metronomeRunInfos(h.SuccessfulFinishedRuns), FailedFinishedRuns: metronomeRunInfos(h.FailedFinishedRuns),
		MissedCount: h.MissedCount, MissedRuns: make([]mMissedRun, 0, len(h.MissedRuns))}
	for _, m := range h.MissedRuns {
		out.MissedRuns = append(out.MissedRuns, mMissedRun{ScheduleID: m.ScheduleID, ScheduledAt: MetronomeTime(m.ScheduledAt), Reason: m.Reason, RecordedAt: MetronomeTime(m.RecordedAt)})
	}
	return out
}

// mJob is a job as Metronome writes it: every default filled in.
type mJob struct {
	ID             string            `json:"id"`
	Description    string            `json:"description,omitempty"`
	Dependencies   []mDependency     `json:"dependencies"`
	Labels         map[string]string `json:"labels"`
	Run            mRunSpec          `json:"run"`
	Schedules      []mSchedule       `json:"schedules"`
	ActiveRuns     *[]mRun           `json:"activeRuns,omitempty"`
	History        *mHistory         `json:"history,omitempty"`
	HistorySummary *mHistorySummary  `json:"historySummary,omitempty"`
	// Agora's.
	SuccessfulHistoryLimit *int   `json:"successfulHistoryLimit,omitempty"`
	FailedHistoryLimit     *int   `json:"failedHistoryLimit,omitempty"`
	SchedulingPaused       string `json:"schedulingPaused,omitempty"`
}

type mDependency struct {
	ID string `json:"id"`
}

type mSchedule struct {
	ID                      string         `json:"id"`
	Cron                    string         `json:"cron"`
	Timezone                string         `json:"timezone"`
	StartingDeadlineSeconds int            `json:"startingDeadlineSeconds"`
	ConcurrencyPolicy       string         `json:"concurrencyPolicy"`
	Enabled                 bool           `json:"enabled"`
	NextRunAt               *MetronomeTime `json:"nextRunAt,omitempty"`
}

// mRunSpec is a job's run as Metronome writes it.
type mRunSpec struct {
	CPUs                       float64                        `json:"cpus"`
	Mem                        float64                        `json:"mem"`
	Disk                       float64                        `json:"disk"`
	GPUs                       int                            `json:"gpus"`
	Cmd                        string                         `json:"cmd,omitempty"`
	Args                       []string                       `json:"args,omitempty"`
	User                       string                         `json:"user,omitempty"`
	Env                        map[string]frameworks.EnvValue `json:"env"`
	Placement                  mPlacement                     `json:"placement"`
	Artifacts                  []Artifact                     `json:"artifacts"`
	MaxLaunchDelay             int                            `json:"maxLaunchDelay"`
	Docker                     *Docker                        `json:"docker,omitempty"`
	Volumes                    []Volume                       `json:"volumes"`
	Restart                    Restart                        `json:"restart"`
	TaskKillGracePeriodSeconds float64                        `json:"taskKillGracePeriodSeconds,omitempty"`
	Secrets                    map[string]frameworks.Secret   `json:"secrets"`
	Networks                   []Network                      `json:"networks"`
}

// mPlacement is run.placement: constraints [] when none.
type mPlacement struct {
	Constraints []PlacementConstraint `json:"constraints"`
}

func metronomeSchedule(v scheduleView) mSchedule {
	sc := v.Schedule
	out := mSchedule{ID: sc.ID, Cron: sc.Cron, Timezone: sc.Timezone, StartingDeadlineSeconds: sc.StartingDeadlineSeconds,
		ConcurrencyPolicy: sc.ConcurrencyPolicy, Enabled: sc.Enabled == nil || *sc.Enabled, NextRunAt: mtime(v.NextRunAt)}
	if out.Timezone == "" {
		out.Timezone = "UTC"
	}
	if out.ConcurrencyPolicy == "" {
		out.ConcurrencyPolicy = ConcurrencyAllow
	}
	return out
}

func metronomeSchedules(vs []scheduleView) []mSchedule {
	out := make([]mSchedule, 0, len(vs))
	for _, v := range vs {
		out = append(out, metronomeSchedule(v))
	}
	return out
}

func metronomeRunSpec(r RunSpec) mRunSpec {
	out := mRunSpec{CPUs: r.CPUs, Mem: r.Mem, Disk: r.Disk, GPUs: r.GPUs, Cmd: r.Cmd, Args: r.Args, User: r.User,
		Env: r.Env, Artifacts: nonNil(r.Artifacts), MaxLaunchDelay: r.MaxLaunchDelay, Docker: r.Docker, Volumes: nonNil(r.Volumes),
		Restart: r.Restart, TaskKillGracePeriodSeconds: r.TaskKillGracePeriodSeconds, Secrets: r.Secrets, Networks: nonNil(r.Networks)}
	if out.Env == nil {
		out.Env = map[string]frameworks.EnvValue{}
	}
	if out.Secrets == nil {
		out.Secrets = map[string]frameworks.Secret{}
	}
	out.Placement.Constraints = []PlacementConstraint{}
	if r.Placement != nil {
		out.Placement.Constraints = nonNil(r.Placement.Constraints)
	}
	return out
}

func metronomeJob(v jobView) mJob {
	j := v.Job
	out := mJob{ID: j.ID, Description: j.Description, Dependencies: []mDependency{}, Labels: j.Labels, Run: metronomeRunSpec(j.Run),
		Schedules: metronomeSchedules(v.Schedules), SuccessfulHistoryLimit: j.SuccessfulHistoryLimit, FailedHistoryLimit: j.FailedHistoryLimit,
		SchedulingPaused: v.SchedulingPaused}
	for _, d := range j.Dependencies {
		out.Dependencies = append(out.Dependencies, mDependency{ID: d})
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if v.ActiveRuns != nil {
		runs := metronomeRuns(v.ActiveRuns)
		out.ActiveRuns = &runs
	}
	if v.History != nil {
		out.History = metronomeHistory(v.History)
	}
	if h := v.HistorySummary; h != nil {
		out.HistorySummary = &mHistorySummary{SuccessCount: h.SuccessCount, FailureCount: h.FailureCount,
			LastSuccessAt: mtime(h.LastSuccessAt), LastFailureAt: mtime(h.LastFailureAt), MissedCount: h.MissedCount}
	}
	return out
}

// mQueued is one job's runs that wait for an offer (GET /v1/queue).
type mQueued struct {
	JobID string       `json:"jobId"`
	Runs  []mQueuedRun `json:"runs"`
}

type mQueuedRun struct {
	RunID string `json:"runId"`
	// Agora's: why it waits.
	WaitingReason string `json:"waitingReason,omitempty"`
}

// writeJob, writeJobs, writeRun, writeRuns, writeSchedule(s) and writeQueue answer in
// Metronome's shapes.
func writeJobView(w http.ResponseWriter, code int, v jobView) {
	httpjson.Write(w, code, metronomeJob(v))
}

func writeJobViews(w http.ResponseWriter, vs []jobView) {
	out := make([]mJob, 0, len(vs))
	for _, v := range vs {
		out = append(out, metronomeJob(v))
	}
	httpjson.Write(w, http.StatusOK, out)
}

func writeRun(w http.ResponseWriter, code int, v RunView) { httpjson.Write(w, code, metronomeRun(v)) }

func writeRuns(w http.ResponseWriter, vs []RunView) {
	httpjson.Write(w, http.StatusOK, metronomeRuns(vs))
}

func writeSchedule(w http.ResponseWriter, code int, v scheduleView) {
	httpjson.Write(w, code, metronomeSchedule(v))
}

func writeSchedules(w http.ResponseWriter, vs []scheduleView) {
	httpjson.Write(w, http.StatusOK, metronomeSchedules(vs))
}

// MetronomeMinMem is the least run.mem Metronome's schema takes (Mesos's own floor), in MiB.
// Jobs given in Metronome's JSON are held to it; Chronos's API has no floor of its own and is
// held to the framework's (resources.MinTaskMem, what runc needs to start a container).
const MetronomeMinMem = 32

// chronosNotMetronome refuses Chronos's settings in a job given in Metronome's JSON.
var chronosNotMetronome = &FieldError{Field: "chronos", Msg: "is not a field of Metronome's job spec (Chronos's settings come from /v1/scheduler/*)"}

// metronomeSchema holds a job given in Metronome's JSON, once normalized, to Metronome's schema
// where that is stricter than the framework's own checks.
func metronomeSchema(j *Job) error {
	if j.Run.Mem < MetronomeMinMem {
		return &FieldError{Field: "run.mem", Msg: fmt.Sprintf("got %v, expected at least %d (MiB), as Metronome's schema", j.Run.Mem, MetronomeMinMem)}
	}
	return nil
}

// UnmarshalJSON reads a schedule as the API writes it.
func (v *scheduleView) UnmarshalJSON(b []byte) error {
	var next struct {
		NextRunAt *MetronomeTime `json:"nextRunAt"`
	}
	if err := json.Unmarshal(b, &next); err != nil {
		return err
	}
	if err := json.Unmarshal(b, &v.Schedule); err != nil {
		return err
	}
	v.NextRunAt = nil
	if next.NextRunAt != nil {
		t := next.NextRunAt.Time()
		v.NextRunAt = &t
	}
	return nil
}
