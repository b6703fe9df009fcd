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
}

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
	num := func(s string) int {
		n, _ := strconv.Atoi(s)
		return n
	}
	r.y, r.m, r.d = num(m[1]), num(m[2]), num(m[3])*7+num(m[4])
	secs, _ := strconv.ParseFloat(orZero(m[7]), 64)
	r.clock = time.Duration(num(m[5]))*time.Hour + time.Duration(num(m[6]))*time.Minute + time.Duration(secs*float64(time.Second))
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

// at is the k-th time (k from 0).
func (r *repeating) at(k int) time.Time {
	return r.start.AddDate(k*r.y, k*r.m, k*r.d).Add(time.Duration(k) * r.clock)
}

// Next is the first time after t, or the zero time when the repetitions are used up.
func (r *repeating) Next(t time.Time) time.Time {
	k := 0
	if t.After(r.start) {
		// Estimate k from the period's rough length, then step to the exact one.
		approx := time.Duration(r.y)*365*24*time.Hour + time.Duration(r.m)*30*24*time.Hour + time.Duration(r.d)*24*time.Hour + r.clock
		k = max(0, int(t.Sub(r.start)/approx)-1)
		for k > 0 && r.at(k).After(t) {
			k--
		}
	}
	for ; ; k++ {
		if r.count >= 0 && k >= r.count {
			return time.Time{}
		}
		if at := r.at(k); at.After(t) {
			return at.In(t.Location())
		}
	}
}
