package chronos

import (
	"errors"
	"testing"
	"time"
)

func mustPlan(t *testing.T, s Schedule) Plan {
	t.Helper()
	p, err := ParseSchedule(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseScheduleNamesTheField(t *testing.T) {
	for _, c := range []struct {
		s     Schedule
		field string
	}{
		{Schedule{Cron: "* * * * *"}, "id"},
		{Schedule{ID: "s", Cron: "61 * * * *"}, "cron"},
		{Schedule{ID: "s", Cron: "* * * *"}, "cron"},
		{Schedule{ID: "s", Cron: "TZ=UTC * * * * *"}, "cron"},
		{Schedule{ID: "s", Cron: "@daily", Timezone: "Mars/Olympus"}, "timezone"},
		{Schedule{ID: "s", Cron: "@daily", StartingDeadlineSeconds: -1}, "startingDeadlineSeconds"},
		{Schedule{ID: "s", Cron: "@daily", ConcurrencyPolicy: "SOMETIMES"}, "concurrencyPolicy"},
	} {
		_, err := ParseSchedule(c.s)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want a problem with %s", c.s, err, c.field)
		}
	}
	for _, spec := range []string{"*/5 * * * *", "30 */2 * * * *", "@hourly", "@every 90s", "0 3 * * MON-FRI"} {
		if _, err := ParseSchedule(Schedule{ID: "s", Cron: spec}); err != nil {
			t.Errorf("%q: %v", spec, err)
		}
	}
}

// TestDueAfterDowntime: as Kubernetes CronJob, only the latest missed time starts (within its
// deadline); the others are recorded as missed.
func TestDueAfterDowntime(t *testing.T) {
	every := mustPlan(t, Schedule{ID: "s", Cron: "* * * * *"})
	last := at("2026-11-25T10:00:00Z")
	d, err := every.Due(last, at("2026-11-25T10:10:30Z"))
	if err != nil || d.Start == nil || !d.Start.Equal(at("2026-11-25T10:10:00Z")) || len(d.Missed) != 9 || d.MoreMissed != 0 ||
		!d.Missed[0].Equal(at("2026-11-25T10:01:00Z")) || !d.Next.Equal(at("2026-11-25T10:11:00Z")) {
		t.Fatalf("after 10 minutes down: %+v %v", d, err)
	}
	// Nothing due yet.
	if d, _ := every.Due(last, at("2026-11-25T10:00:59Z")); d.Start != nil || len(d.Missed) != 0 {
		t.Fatalf("before the next minute: %+v", d)
	}
	// Past its deadline, the latest is missed too.
	strict := mustPlan(t, Schedule{ID: "s", Cron: "* * * * *", StartingDeadlineSeconds: 20})
	if d, _ := strict.Due(last, at("2026-11-25T10:10:30Z")); d.Start != nil || len(d.Missed) != 10 {
		t.Fatalf("past the deadline: %+v", d)
	}
	if d, _ := strict.Due(last, at("2026-11-25T10:10:15Z")); d.Start == nil || len(d.Missed) != 9 {
		t.Fatalf("within the deadline: %+v", d)
	}
	// A long downtime lists at most 100 missed times and counts the rest.
	if d, _ := every.Due(last, at("2026-11-26T10:00:30Z")); d.Start == nil || len(d.Missed) != maxMissed || d.MoreMissed != 24*60-1-maxMissed {
		t.Fatalf("a day down: start %v, %d missed listed, %d more", d.Start, len(d.Missed), d.MoreMissed)
	}
	// Disabled: nothing.
	no := false
	off := mustPlan(t, Schedule{ID: "s", Cron: "* * * * *", Enabled: &no})
	if d, err := off.Due(last, at("2026-11-25T10:10:30Z")); !errors.Is(err, ErrDisabled) || d.Start != nil {
		t.Fatalf("disabled: %+v %v", d, err)
	}
}

// TestTimezonesAndDaylightSaving: schedules run in their timezone; on the spring-forward day a
// time that does not exist is skipped, on the fall-back day a repeated time runs once.
func TestTimezonesAndDaylightSaving(t *testing.T) {
	ny := mustPlan(t, Schedule{ID: "s", Cron: "0 2 * * *", Timezone: "America/New_York"})
	if next := ny.Next(at("2026-01-10T12:00:00Z")); !next.Equal(at("2026-01-11T07:00:00Z")) {
		t.Fatalf("2:00 in New York in winter = %v, want 07:00 UTC", next.UTC())
	}
	// 2026-03-08: clocks go from 2:00 to 3:00 in New York; 2:30 does not exist that day.
	spring := mustPlan(t, Schedule{ID: "s", Cron: "30 2 * * *", Timezone: "America/New_York"})
	d, _ := spring.Due(at("2026-03-07T12:00:00Z"), at("2026-03-09T12:00:00Z"))
	runs := len(d.Missed) + boolToInt(d.Start != nil)
	if runs != 1 {
		t.Fatalf("over the spring-forward day: %d due times (%v, %v), want only the next day's", runs, d.Missed, d.Start)
	}
	// 2026-11-01: clocks go from 2:00 back to 1:00; 1:30 happens twice, and robfig/cron (as
	// Kubernetes CronJob) is due at both instants, an hour apart. Documented; UTC avoids it.
	fall := mustPlan(t, Schedule{ID: "s", Cron: "30 1 * * *", Timezone: "America/New_York"})
	d, _ = fall.Due(at("2026-11-01T04:00:00Z"), at("2026-11-01T12:00:00Z"))
	if len(d.Missed) != 1 || d.Start == nil || d.Start.Sub(d.Missed[0]) != time.Hour {
		t.Fatalf("on the fall-back day: missed %v, start %v; want both 1:30s, an hour apart", d.Missed, d.Start)
	}
	// Seconds and descriptors.
	sec := mustPlan(t, Schedule{ID: "s", Cron: "*/15 * * * * *"})
	if d, _ := sec.Due(at("2026-11-25T10:00:00Z"), at("2026-11-25T10:01:00Z")); len(d.Missed) != 3 || d.Start == nil {
		t.Fatalf("every 15 s over a minute: %+v", d)
	}
	hourly := mustPlan(t, Schedule{ID: "s", Cron: "@hourly"})
	if next := hourly.Next(at("2026-11-25T10:20:00Z")); !next.Equal(at("2026-11-25T11:00:00Z")) {
		t.Fatalf("@hourly next: %v", next)
	}
}

func TestConcurrencyPolicies(t *testing.T) {
	for policy, want := range map[string]Concurrency{
		ConcurrencyAllow:   {Start: true},
		ConcurrencyForbid:  {Skip: "concurrencyPolicy FORBID: 1 run(s) still active (run-1)"},
		ConcurrencyReplace: {Start: true, Stop: []string{"run-1"}},
	} {
		p := mustPlan(t, Schedule{ID: "s", Cron: "@daily", ConcurrencyPolicy: policy})
		got := p.OnActive([]string{"run-1"})
		if got.Start != want.Start || got.Skip != want.Skip || len(got.Stop) != len(want.Stop) {
			t.Errorf("%s: %+v, want %+v", policy, got, want)
		}
		if free := p.OnActive(nil); !free.Start || free.Skip != "" || len(free.Stop) != 0 {
			t.Errorf("%s with nothing active: %+v", policy, free)
		}
	}
}
