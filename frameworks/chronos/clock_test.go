package chronos

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/clock"
)

// fakeVerdict is a clock check a test sets: trusted or not, and counts how often it was asked
// (each change of the framework asks once, before it decides).
type fakeVerdict struct {
	mu    sync.Mutex
	v     clock.Verdict
	asked int
}

func (f *fakeVerdict) check() clock.Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return f.v
}

func (f *fakeVerdict) set(v clock.Verdict) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.v = v
}

func (f *fakeVerdict) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

// cycles waits until the framework has decided at least n more times.
func (f *fakeVerdict) cycles(t *testing.T, n int) {
	t.Helper()
	start := f.count()
	waitFor(t, "framework cycles", func() bool { return f.count() >= start+n+1 })
}

const everySecond = `{"id": "tick", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}, "schedules": [{"id": "s", "cron": "* * * * * *"}],
	"successfulHistoryLimit": 1000, "failedHistoryLimit": 1000}`

// TestUntrustedClockFiresNothingAndSaysWhy: while the master says its clock disagrees with its
// peers', due times neither run nor are recorded missed, and the job says why; once the clock
// is trusted again, the latest due time runs and the others are recorded missed — all after
// they were due.
func TestUntrustedClockFiresNothingAndSaysWhy(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	fv := &fakeVerdict{v: clock.Verdict{Trusted: true}}
	c := startSim(t, t.TempDir(), clk, finishAfter(time.Millisecond), func(s *Service) { s.checkClock = fv.check })
	if code := call(t, "POST", c.base+"/v1/jobs", everySecond, nil); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	const why = "this master's clock is 1m30s off the other masters' (test)"
	fv.set(clock.Verdict{Trusted: false, Reason: why})
	fv.cycles(t, 2)
	for range 5 {
		clk.Advance(time.Second)
		fv.cycles(t, 2)
	}
	if rs := runs(t, c.base, "tick"); len(rs) != 0 {
		t.Fatalf("%d runs while the clock was not trusted: %+v", len(rs), rs)
	}
	if h := history(t, c.base, "tick"); h.MissedCount != 0 {
		t.Fatalf("missed recorded while the clock was not trusted: %+v", h.MissedRuns)
	}
	var v jobView
	call(t, "GET", c.base+"/v1/jobs/tick", "", &v)
	if v.SchedulingPaused != why {
		t.Fatalf("schedulingPaused = %q, want the master's reason", v.SchedulingPaused)
	}

	fv.set(clock.Verdict{Trusted: true})
	waitFor(t, "a run after the clock is trusted", func() bool { return len(runs(t, c.base, "tick")) == 1 })
	now := clk.Now()
	rs := runs(t, c.base, "tick")
	if !rs[0].ScheduledAt.Equal(now) || rs[0].CreatedAt.Before(*rs[0].ScheduledAt) {
		t.Fatalf("run %+v: want the latest due time %s, created after it", rs[0], now)
	}
	h := history(t, c.base, "tick")
	if h.MissedCount != 4 {
		t.Fatalf("missed %d, want the 4 older due times: %+v", h.MissedCount, h.MissedRuns)
	}
	for _, m := range h.MissedRuns {
		if m.RecordedAt.Before(m.ScheduledAt) || m.Reason == "" {
			t.Fatalf("missed %+v: recorded before it was due, or without a reason", m)
		}
	}
	var after jobView
	call(t, "GET", c.base+"/v1/jobs/tick", "", &after)
	if after.SchedulingPaused != "" {
		t.Fatalf("schedulingPaused = %q after the clock is trusted", after.SchedulingPaused)
	}
}

// TestFutureCursorIsNotTrusted: a leader whose clock ran 90 s ahead, undetected (an older
// build, or every clock stepped back since), left a cursor 90 s ahead, runs scheduled in the
// future and due times recorded missed before they were due. The next leader, on a right
// clock, does not wait 90 s: it withdraws the missed records of times still to come, runs the
// next due time at once, and does not run a second time a due time that has a run.
func TestFutureCursorIsNotTrusted(t *testing.T) {
	dir := t.TempDir()
	real0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ahead := clock.NewFake(real0.Add(90 * time.Second))
	c := startSim(t, dir, ahead, finishAfter(time.Millisecond))
	call(t, "POST", c.base+"/v1/jobs", everySecond, nil)
	ahead.Advance(3 * time.Second) // due 12:01:31 .. 12:01:33 by the wrong clock
	waitFor(t, "the skewed leader's run", func() bool { return len(runs(t, c.base, "tick")) >= 1 })
	ahead.Advance(time.Second) // one more due time
	waitFor(t, "its second run", func() bool { return len(runs(t, c.base, "tick")) >= 2 })
	future := map[time.Time]string{}
	for _, r := range runs(t, c.base, "tick") {
		future[*r.ScheduledAt] = r.ID
	}
	for _, m := range history(t, c.base, "tick").MissedRuns {
		future[m.ScheduledAt] = "missed"
	}
	c.stop()

	// A leader that does not trust its own clock (it may be the one behind) changes nothing.
	right := clock.NewFake(real0.Add(5 * time.Second))
	fv := &fakeVerdict{v: clock.Verdict{Trusted: false, Reason: "test: not compared yet"}}
	c = startSim(t, dir, right, finishAfter(time.Millisecond), func(s *Service) { s.checkClock = fv.check })
	before := history(t, c.base, "tick").MissedCount
	fv.cycles(t, 3)
	if h := history(t, c.base, "tick"); h.MissedCount != before || before == 0 {
		t.Fatalf("an untrusted leader withdrew missed records: %d, was %d", h.MissedCount, before)
	}
	fv.set(clock.Verdict{Trusted: true})
	fv.cycles(t, 2)
	h := history(t, c.base, "tick")
	for _, m := range h.MissedRuns {
		if m.ScheduledAt.After(right.Now()) {
			t.Fatalf("a missed record of %s is still there at %s", m.ScheduledAt, right.Now())
		}
	}
	right.Advance(time.Second)
	waitFor(t, "a run at once for the next due time", func() bool {
		for _, r := range runs(t, c.base, "tick") {
			if r.ScheduledAt.Equal(right.Now()) {
				return true
			}
		}
		return false
	})
	// Another leader change before those times come: the moved-back cursor is now the store's,
	// and the runs due after it must still not run again.
	c.stop()
	c = startSim(t, dir, right, finishAfter(time.Millisecond))
	// Walk past the times the skewed leader ran: each due time has exactly one run or one
	// missed record, never two.
	for right.Now().Before(real0.Add(96 * time.Second)) {
		right.Advance(time.Second)
		want := right.Now()
		waitFor(t, "the due time "+want.Format(time.TimeOnly)+" acted on", func() bool {
			var v jobView
			call(t, "GET", c.base+"/v1/jobs/tick", "", &v)
			return v.Schedules[0].NextRunAt != nil && v.Schedules[0].NextRunAt.After(want)
		})
	}
	seen := map[time.Time]string{}
	for _, r := range runs(t, c.base, "tick") {
		if prev, dup := seen[*r.ScheduledAt]; dup {
			t.Fatalf("%s ran twice: %s and %s", r.ScheduledAt, prev, r.ID)
		}
		seen[*r.ScheduledAt] = r.ID
		if id, ok := future[*r.ScheduledAt]; ok && id != r.ID && id != "missed" {
			t.Fatalf("%s had run %s before the leader change, and ran again as %s", r.ScheduledAt, id, r.ID)
		}
	}
	for _, m := range history(t, c.base, "tick").MissedRuns {
		if _, dup := seen[m.ScheduledAt]; dup {
			t.Fatalf("%s has a run and a missed record (%s)", m.ScheduledAt, m.Reason)
		}
		if m.ScheduledAt.After(m.RecordedAt) && strings.Contains(m.Reason, "did not get to it") && m.ScheduledAt.After(real0.Add(5*time.Second)) {
			t.Fatalf("missed %+v: recorded before it was due", m)
		}
		seen[m.ScheduledAt] = "missed"
	}
	for at := real0.Add(6 * time.Second); !at.After(real0.Add(96 * time.Second)); at = at.Add(time.Second) {
		if _, ok := seen[at]; !ok {
			t.Fatalf("due time %s neither ran nor was recorded missed", at.Format(time.TimeOnly))
		}
	}
}

// TestLagHoldsRunsForTheSlowestAgreeingClock: when a peer whose clock agrees is behind this
// master's, a due time fires only once it is due by that clock too.
func TestLagHoldsRunsForTheSlowestAgreeingClock(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	fv := &fakeVerdict{v: clock.Verdict{Trusted: true, Lag: 400 * time.Millisecond}}
	c := startSim(t, t.TempDir(), clk, finishAfter(time.Millisecond), func(s *Service) { s.checkClock = fv.check })
	call(t, "POST", c.base+"/v1/jobs", everySecond, nil)
	// Created at 12:00:00 here, 11:59:59.6 by the slowest agreeing clock: 12:00:00 is due next.
	clk.Advance(200 * time.Millisecond) // 12:00:00.2 here, 11:59:59.8 by the slowest agreeing clock
	fv.cycles(t, 3)
	if rs := runs(t, c.base, "tick"); len(rs) != 0 {
		t.Fatalf("a run before its due time by the lagging clock: %+v", rs)
	}
	clk.Advance(200 * time.Millisecond)
	waitFor(t, "the run once due by every agreeing clock", func() bool { return len(runs(t, c.base, "tick")) == 1 })
	if r := runs(t, c.base, "tick")[0]; !r.ScheduledAt.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) || r.CreatedAt.Before(*r.ScheduledAt) {
		t.Fatalf("run %+v created before it was due", r)
	}
}
