package chronos

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
)

// RunView is a run as the API shows it: Metronome's run, and, while it waits to start, Agora's
// word on why (WaitingReason: its retry's delay, the offers declined and why — Marathon's reason
// names with Agora's words — no offer for a while, the agents that make no offers, and how its
// last attempt ended, with the agent's message) and Marathon's processedOffersSummary of the
// offers judged for it. Metronome has no shape for either.
type RunView struct {
	Run
	WaitingReason          string                             `json:"waitingReason,omitempty"`
	ProcessedOffersSummary *frameworks.ProcessedOffersSummary `json:"processedOffersSummary,omitempty"`
}

// runView is a run as the API shows it (silent: which agents make no offers).
func (st *leaderState) runView(r *Run, now time.Time, silent string) RunView {
	v := RunView{Run: r.clone(), WaitingReason: st.waitingReason(r, now, silent)}
	if ws := st.waits[r]; ws != nil && r.Status == RunInitial {
		sum := ws.Summary()
		v.ProcessedOffersSummary = &sum
	}
	return v
}

func (st *leaderState) runViews(runs []*Run, now time.Time, silent string) []RunView {
	out := make([]RunView, len(runs))
	for i, r := range runs {
		out[i] = st.runView(r, now, silent)
	}
	return out
}

// waitingReason says in a line why a run waits to start, "" when it does not or nothing holds
// it yet.
func (st *leaderState) waitingReason(r *Run, now time.Time, silent string) string {
	if r.Status != RunInitial || r.Stopping {
		return ""
	}
	var parts []string
	ws := st.waits[r]
	switch {
	case st.clockPaused != "":
		parts = append(parts, "no offer is used while the master's clock is not trusted: "+st.clockPaused)
	case r.NextAttemptAt != nil && now.Before(*r.NextAttemptAt):
		parts = append(parts, fmt.Sprintf("retry %d in %d s", r.Retries, int(math.Ceil(r.NextAttemptAt.Sub(now).Seconds()))))
	case ws != nil && ws.Declined() != "":
		parts = append(parts, ws.Declined())
	case now.Sub(r.waitingSince()) >= frameworks.QuietAfter:
		parts = append(parts, fmt.Sprintf("no offer in %s", now.Sub(r.waitingSince()).Round(time.Second)))
	}
	if t := r.task(); t != nil && t.Status.IsTerminal() {
		line := "last attempt: " + string(t.Status)
		if t.Host != "" {
			line += " on " + t.Host
		}
		if t.Message != "" {
			line += ": " + t.Message
		}
		parts = append(parts, line)
	}
	if len(parts) == 0 {
		return ""
	}
	if silent != "" {
		parts = append(parts, silent)
	}
	return strings.Join(parts, "; ")
}

// jobView is a job as the API shows it, with what ?embed= asks for.
type jobView struct {
	Job
	Schedules      []scheduleView  `json:"schedules"`
	ActiveRuns     []RunView       `json:"activeRuns,omitempty"`
	History        *History        `json:"history,omitempty"`
	HistorySummary *HistorySummary `json:"historySummary,omitempty"`
	// SchedulingPaused says why no schedule fires now (the leader's clock is not trusted).
	SchedulingPaused string `json:"schedulingPaused,omitempty"`
}

// scheduleView is a schedule with when it is next due.
type scheduleView struct {
	Schedule
	NextRunAt *time.Time `json:"nextRunAt,omitempty"`
}

// HistorySummary is Metronome's historySummary embed.
type HistorySummary struct {
	SuccessCount  int        `json:"successCount"`
	FailureCount  int        `json:"failureCount"`
	LastSuccessAt *time.Time `json:"lastSuccessAt"`
	LastFailureAt *time.Time `json:"lastFailureAt"`
	MissedCount   int        `json:"missedCount"`
}

// view is the job as the API shows it; a view that embeds activeRuns needs st, now and silent
// (which agents make no offers) to say why runs wait.
func (js *jobState) view(embed map[string]bool, st *leaderState, now time.Time, silent string) jobView {
	v := jobView{Job: *js.job, Schedules: js.scheduleViews()}
	if embed["activeRuns"] {
		v.ActiveRuns = st.runViews(js.activeRuns(), now, silent)
	}
	h := *js.hist
	if embed["history"] {
		h.SuccessfulFinishedRuns = nonNil(h.SuccessfulFinishedRuns)
		h.FailedFinishedRuns = nonNil(h.FailedFinishedRuns)
		h.MissedRuns = nonNil(h.MissedRuns)
		v.History = &h
	}
	if embed["historySummary"] {
		v.HistorySummary = &HistorySummary{SuccessCount: h.SuccessCount, FailureCount: h.FailureCount,
			LastSuccessAt: h.LastSuccessAt, LastFailureAt: h.LastFailureAt, MissedCount: h.MissedCount}
	}
	return v
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (js *jobState) scheduleViews() []scheduleView {
	out := []scheduleView{}
	for _, sc := range js.job.Schedules {
		v := scheduleView{Schedule: sc}
		if n := js.next[sc.ID]; !n.IsZero() {
			v.NextRunAt = &n
		}
		out = append(out, v)
	}
	return out
}
