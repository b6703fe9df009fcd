package chronos

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// repeating is Chronos's schedule, an ISO 8601 repeating interval "R[n]/start/period": n runs
// (R or R-1: no end, R0: none) from start, one period apart. It is a cron.Schedule, so a job's
// schedule may be either; a period of years, months or days is calendar arithmetic in the
// schedule's timezone.
type repeating struct {
	count   int // -1: no end
	start   time.Time
	y, m, d int
	clock   time.Duration
	approx  float64 // the period's average length in seconds, to estimate Next with
}

// maxPeriod bounds a period's average length, in seconds: a century. Every number of a period
// is checked against it before any arithmetic, so that k periods up to year 9999 fit an int64
// of seconds and the clock part of one period fits a time.Duration (292 years).
const maxPeriod = 100 * 365.2425 * 24 * 3600

// lastTime ends a repeating schedule: past it, Next answers the zero time (no more). It is the
// last time ISO 8601 and RFC 3339 (and so encoding/json) write with a four-digit year.
var lastTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)

var durationPattern = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// parseRepeating reads "R[n]/start/period"; loc is the timezone of a start without an offset.
func parseRepeating(spec string, loc *time.Location) (*repeating, error) {
	parts := strings.Split(spec, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "R") {
		return nil, fmt.Errorf("want R[n]/start/period, like R/2026-01-01T02:00:00Z/P1D")
	}
	r := &repeating{count: -1}
	if n := parts[0][1:]; n != "" && n != "-1" {
		c, err := strconv.Atoi(n)
		if err != nil || c < 0 {
			return nil, fmt.Errorf("repetitions %q: want R, R-1 or R followed by a count", parts[0])
		}
		r.count = c
	}
	start, err := parseISOTime(parts[1], loc)
	if err != nil {
		return nil, err
	}
	r.start = start
	m := durationPattern.FindStringSubmatch(parts[2])
	if m == nil || parts[2] == "P" || strings.HasSuffix(parts[2], "T") {
		return nil, fmt.Errorf("period %q: want an ISO 8601 duration like PT30M, P1D or P1M", parts[2])
	}
	// The numbers are checked before they are multiplied: unchecked, a huge one wrapped around
	// to a zero or negative time.Duration, and Next divided by zero or never returned.
	var n [6]int // years, months, weeks, days, hours, minutes
	for i, digits := range m[1:7] {
		if digits == "" {
			continue
		}
		v, err := strconv.Atoi(digits)
		if err != nil {
			return nil, fmt.Errorf("period %q: %s is too large", parts[2], digits)
		}
		n[i] = v
	}
	secs, err := strconv.ParseFloat(orZero(m[7]), 64)
	if err != nil {
		return nil, fmt.Errorf("period %q: %s is too large", parts[2], m[7])
	}
	const day = 24 * 3600.0
	r.approx = float64(n[0])*365.2425*day + float64(n[1])*30.436875*day + float64(n[2])*7*day + float64(n[3])*day +
		float64(n[4])*3600 + float64(n[5])*60 + secs
	if r.approx > maxPeriod {
		return nil, fmt.Errorf("period %q: must be at most 100 years", parts[2])
	}
	r.y, r.m, r.d = n[0], n[1], n[2]*7+n[3]
	r.clock = time.Duration(n[4])*time.Hour + time.Duration(n[5])*time.Minute + time.Duration(secs*float64(time.Second))
	if r.y == 0 && r.m == 0 && r.d == 0 && r.clock < time.Second {
		return nil, fmt.Errorf("period %q: must be at least one second", parts[2])
	}
	return r, nil
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// parseISOTime reads an ISO 8601 date-time, with or without an offset (then in loc).
func parseISOTime(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("start %q: want an ISO 8601 time like 2026-01-01T02:00:00Z", s)
}

// at is the k-th time (k from 0). The clock time of k periods may be more than a
// time.Duration holds (292 years), so it is added as seconds and nanoseconds apart.
func (r *repeating) at(k int64) time.Time {
	t := r.start.AddDate(int(k)*r.y, int(k)*r.m, int(k)*r.d)
	sec, nsec := int64(r.clock/time.Second), int64(r.clock%time.Second)
	return time.Unix(t.Unix()+k*sec+k/1e9*nsec, int64(t.Nanosecond())+k%1e9*nsec).In(t.Location())
}

// Next is the first time after t, or the zero time when the repetitions are used up or the
// next one would be after year 9999.
func (r *repeating) Next(t time.Time) time.Time {
	if !t.Before(lastTime) {
		return time.Time{}
	}
	var k int64
	if t.After(r.start) {
		// Estimate k from the period's average length, then step to the exact one. The estimate
		// is in seconds as floats, as t - start may be more than a time.Duration holds (it once
		// saturated there, and Next stepped through centuries one period at a time); it is off
		// by days at most (leap years, months' lengths, daylight saving), so by a few periods.
		elapsed := float64(t.Unix()) - float64(r.start.Unix())
		k = max(0, int64(elapsed/r.approx)-1)
		for k > 0 && r.at(k).After(t) {
			k--
		}
	}
	for ; ; k++ {
		if r.count >= 0 && k >= int64(r.count) {
			return time.Time{}
		}
		at := r.at(k)
		if at.After(lastTime) {
			return time.Time{}
		}
		if at.After(t) {
			return at.In(t.Location())
		}
	}
}
