package chaos

import (
	"encoding/json"
	"fmt"
	"time"
)

// The harness reads the batch framework's answers as any Metronome client does, with types of
// its own holding the fields it checks: it depends on the API, not on a framework's code
// (pkg/layout keeps chaos apart from frameworks/).

// stamp is an instant as Metronome writes it ("2026-12-07T05:39:54.735+0000"); RFC 3339 reads
// too.
type stamp time.Time

func (s *stamp) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return err
	}
	for _, layout := range []string{"2006-01-02T15:04:05.000-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, str); err == nil {
			*s = stamp(t)
			return nil
		}
	}
	return fmt.Errorf("%q is not a time as Metronome writes one", str)
}

func (s stamp) time() time.Time { return time.Time(s) }

// jobRun is a run as GET /v1/jobs/{id}/runs answers it.
type jobRun struct {
	ID          string       `json:"id"`
	Status      string       `json:"status"`
	CreatedAt   stamp        `json:"createdAt"`
	ScheduledAt *stamp       `json:"scheduledAt"` // a schedule's run: the time it is due
	Tasks       []jobRunTask `json:"tasks"`
}

type jobRunTask struct {
	ID         string `json:"id"`
	LaunchedAt stamp  `json:"launchedAt"`
}

// active says whether the run has not ended (Metronome's SUCCESS and FAILED end it).
func (r jobRun) active() bool { return r.Status != "SUCCESS" && r.Status != "FAILED" }

// jobHistory is a job's history as GET /v1/jobs/{id}?embed=history has it: the due times that
// got no run, and why.
type jobHistory struct {
	MissedRuns []struct {
		ScheduledAt stamp  `json:"scheduledAt"`
		Reason      string `json:"reason"`
		RecordedAt  stamp  `json:"recordedAt"`
	} `json:"missedRuns"`
}
