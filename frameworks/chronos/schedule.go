package chronos

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // IANA timezones on hosts without zoneinfo

	"github.com/robfig/cron/v3"
)

// Concurrency policies, as Metronome and Kubernetes CronJob name them.
const (
	ConcurrencyAllow   = "ALLOW"
	ConcurrencyForbid  = "FORBID"
	ConcurrencyReplace = "REPLACE"
)

// Schedule is one of a job's schedules, as Metronome's JSON has it. Its cron may also be an
// ISO 8601 repeating interval, R[n]/start/period, as Chronos's schedules are.
type Schedule struct {
	ID                      string `json:"id"`
	Cron                    string `json:"cron"`
	Timezone                string `json:"timezone,omitempty"`                // IANA name; default UTC
	StartingDeadlineSeconds int    `json:"startingDeadlineSeconds,omitempty"` // 0: no deadline
	ConcurrencyPolicy       string `json:"concurrencyPolicy,omitempty"`       // default ALLOW
	Enabled                 *bool  `json:"enabled,omitempty"`                 // default true
	// NextRunAt is what the API shows of a schedule and a client may send back with it (a
	// job read, changed and PUT): ignored on input, never kept.
	NextRunAt json.RawMessage `json:"nextRunAt,omitempty"`
}

// FieldError names the field of a schedule that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// parser reads 5 fields (minute first), 6 with seconds first, and the descriptors @yearly,
// @monthly, @weekly, @daily, @hourly and @every <duration>.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Plan is a schedule made ready to plan with.
type Plan struct {
	Schedule Schedule
	cron     cron.Schedule
	loc      *time.Location
}

// ParseSchedule checks a schedule and fills its defaults.
func ParseSchedule(s Schedule) (Plan, error) {
	s.NextRunAt = nil
	if s.ID == "" {
		return Plan{}, &FieldError{Field: "id", Msg: "is required"}
	}
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		return Plan{}, &FieldError{Field: "timezone", Msg: fmt.Sprintf("%q is not an IANA timezone", s.Timezone)}
	}
	spec := strings.TrimSpace(s.Cron)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return Plan{}, &FieldError{Field: "cron", Msg: "give the timezone in the timezone field, not in the expression"}
	}
	var c cron.Schedule
	if strings.HasPrefix(spec, "R") {
		r, err := parseRepeating(spec, loc)
		if err != nil {
			return Plan{}, &FieldError{Field: "cron", Msg: fmt.Sprintf("%q: %v", s.Cron, err)}
		}
		c = r
	} else if c, err = parser.Parse(spec); err != nil {
		return Plan{}, &FieldError{Field: "cron", Msg: fmt.Sprintf("%q: %v (5 fields, 6 with seconds first, @hourly, @daily, @every 10m..., or an ISO 8601 R[n]/start/period)", s.Cron, err)}
	}
	if s.StartingDeadlineSeconds < 0 || s.StartingDeadlineSeconds > maxDeadlineSeconds {
		return Plan{}, &FieldError{Field: "startingDeadlineSeconds", Msg: fmt.Sprintf("must be 0 to %d (a year)", maxDeadlineSeconds)}
	}
	switch s.ConcurrencyPolicy {
	case "":
		s.ConcurrencyPolicy = ConcurrencyAllow
	case ConcurrencyAllow, ConcurrencyForbid, ConcurrencyReplace:
	default:
		return Plan{}, &FieldError{Field: "concurrencyPolicy", Msg: fmt.Sprintf("got %q, expected ALLOW, FORBID or REPLACE", s.ConcurrencyPolicy)}
	}
	if s.Enabled == nil {
		yes := true
		s.Enabled = &yes
	}
	return Plan{Schedule: s, cron: c, loc: loc}, nil
}

// subSecond says why an @every spec asks for what no schedule does, or "": runs at most once a
// second, in whole seconds. robfig/cron would round "@every 100ms" up to a second and cut
// "@every 1500ms" down to one without a word, so that the job would not run as written. It is
// checked at the API (Job.Normalize), not by ParseSchedule: a schedule stored before keeps
// running as it did.
func subSecond(spec string) string {
	rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every ")
	if !ok {
		return ""
	}
	d, err := time.ParseDuration(strings.TrimSpace(rest))
	switch {
	case err != nil:
		return ""
	case d < time.Second:
		return fmt.Sprintf("fires every %v, more often than once a second; the shortest is @every 1s (or 6 fields: * * * * * *)", d)
	case d%time.Second != 0:
		return fmt.Sprintf("%v is not a whole number of seconds; schedules have a resolution of one second", d)
	}
	return ""
}

// Next is the first scheduled time after t.
func (p Plan) Next(t time.Time) time.Time { return p.cron.Next(t.In(p.loc)) }

// maxMissed bounds how many missed times one decision lists (a schedule of every second down
// for a day would list 86,400): Due reports the rest as a count.
const maxMissed = 100

// maxScan bounds the due times one decision walks through.
const maxScan = 1_000_000

// Decision is what to do with a schedule now.
type Decision struct {
	// Start is the scheduled time of the run to start now, if any: the latest due one, when it
	// is still within startingDeadlineSeconds.
	Start *time.Time
	// Missed are due times that will not run (all but the latest after downtime, and the latest
	// too when past its deadline), oldest first, at most maxMissed; MoreMissed counts the rest.
	Missed     []time.Time
	MoreMissed int
	// Next is when the schedule is next due after now.
	Next time.Time
}

// ErrDisabled: a disabled schedule starts nothing (and misses nothing).
var ErrDisabled = errors.New("chronos: schedule disabled")

// Due decides, for the scheduled times after last (the latest time already acted on: started or
// recorded missed) up to now, as Kubernetes CronJob does after downtime: at most one run starts
// — the latest, if now is within startingDeadlineSeconds of it — and the others are missed.
// Daylight-saving changes are robfig/cron's (and so Kubernetes CronJob's): a time that does
// not exist that day (spring forward) is skipped; a time that exists twice (fall back) is due
// at both instants, an hour apart. Schedules in UTC have neither.
func (p Plan) Due(last, now time.Time) (Decision, error) {
	d := Decision{Next: p.Next(now)}
	if !*p.Schedule.Enabled {
		return d, ErrDisabled
	}
	var due []time.Time
	count := 0
	for t := p.Next(last); !t.After(now) && !t.IsZero(); t = p.Next(t) {
		if count++; count > maxScan {
			break // counted enough: a very long downtime of a very frequent schedule
		}
		due = append(due, t)
		if len(due) > maxMissed+1 {
			due = due[1:] // keep the latest ones; older ones are only counted
		}
	}
	if count == 0 {
		return d, nil
	}
	latest := due[len(due)-1]
	due = due[:len(due)-1]
	deadline := time.Duration(p.Schedule.StartingDeadlineSeconds) * time.Second
	if deadline > 0 && now.Sub(latest) > deadline {
		due = append(due, latest) // too late to start: missed too
	} else {
		l := latest
		d.Start = &l
	}
	if len(due) > maxMissed {
		due = due[len(due)-maxMissed:]
	}
	d.Missed = due
	d.MoreMissed = count - len(due) - boolToInt(d.Start != nil)
	return d, nil
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Concurrency is what a due run does about runs of the job still active.
type Concurrency struct {
	Start bool     // start the new run
	Stop  []string // runs to stop first (REPLACE)
	Skip  string   // why it does not start (FORBID), recorded with the missed run
}

// OnActive applies the schedule's concurrencyPolicy to a due run when active lists the job's
// runs that have not ended.
func (p Plan) OnActive(active []string) Concurrency {
	if len(active) == 0 {
		return Concurrency{Start: true}
	}
	switch p.Schedule.ConcurrencyPolicy {
	case ConcurrencyForbid:
		return Concurrency{Skip: fmt.Sprintf("concurrencyPolicy FORBID: %d run(s) still active (%s)", len(active), strings.Join(active, ", "))}
	case ConcurrencyReplace:
		return Concurrency{Start: true, Stop: append([]string(nil), active...)}
	}
	return Concurrency{Start: true}
}

// maxDeadlineSeconds bounds startingDeadlineSeconds at a year: larger values wrapped around as
// a time.Duration (a fuzz target found 18446744074 s becoming 0.29 s).
const maxDeadlineSeconds = 366 * 24 * 3600
