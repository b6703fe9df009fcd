package chronos

// Fuzz targets for what the jobs API decodes from its users: job specs in Metronome's JSON and
// in Chronos's, their schedules (cron expressions and ISO 8601 repeating intervals, with a
// timezone) and their placement constraints. Run one with, for instance:
//
//	go test -run '^$' -fuzz '^FuzzSchedule$' -fuzztime 30s ./frameworks/chronos/
//
// A plain `go test` runs the seeds below and those under testdata/fuzz/.

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
)

// fuzzT0 is the fixed time schedules are asked about: the night Europe springs forward.
var fuzzT0 = time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)

// Job specs as users write them: the examples (examples/jobs), the tests', and the tricky.
var jobSeeds = []string{
	`{"id": "cleanup", "description": "Every minute: sweep temporary files",
	  "run": {"docker": {"image": "agora.local/testapp:latest"}, "args": ["-print-env"], "cpus": 0.05, "mem": 16,
	          "restart": {"policy": "NEVER", "activeDeadlineSeconds": 50}},
	  "schedules": [{"id": "every-minute", "cron": "* * * * *", "startingDeadlineSeconds": 30, "concurrencyPolicy": "FORBID"}],
	  "successfulHistoryLimit": 5, "failedHistoryLimit": 5}`,
	`{"id": "etl.extract", "labels": {"example": "etl"},
	  "run": {"docker": {"image": "agora.local/testapp:latest"}, "args": ["-print-args", "-sleep", "1s", "extract"], "cpus": 0.1, "mem": 32,
	          "restart": {"policy": "ON_FAILURE", "backoffLimit": 3, "activeDeadlineSeconds": 3600}},
	  "schedules": [{"id": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin", "startingDeadlineSeconds": 900, "concurrencyPolicy": "FORBID"}]}`,
	`{"id": "etl.load", "run": {"cmd": "load", "cpus": 0.1, "mem": 32}, "dependencies": ["etl.transform-orders", "etl.transform-customers"]}`,
	`{"id": "nightly", "run": {"cmd": "echo hi"}, "schedules": [{"id": "s", "cron": "R/2030-01-01T02:00:00Z/P1D"}]}`,
	`{"id": "a", "run": {"cmd": "x", "env": {"A": "1"}, "placement": {"constraints": [{"attribute": "rack", "operator": "LIKE", "value": "r[12]"}, {"attribute": "hostname", "operator": "EQ", "value": "h"}]}}}`,
	`{"id": "a", "run": {"cmd": "x", "placement": {"constraints": [{"attribute": "rack", "operator": "UNLIKE", "value": "a)|(b"}]}}}`,
	`{"id": "a", "run": {"cmd": "x", "restart": {"policy": "ON_FAILURE", "backoffLimit": 0, "backoffSeconds": 1e308}, "maxLaunchDelay": 9223372036854775807}}`,
	`{"id": "a", "run": {"cmd": "x", "cpus": -1}}`,
	`{"id": "a", "run": {"cmd": "x", "cpus": 1e400}}`,
	`{"id": "a", "run": {"cmd": "x", "cpu": 1}}`,
	`{"id": "a", "run": {"cmd": "x", "artifacts": [{"uri": "http://x"}]}}`,
	`{"id": "a", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "@every 1s"}, {"id": "s", "cron": "@daily"}]}`,
	`{"id": "a", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "R/0001-01-01T00:00:00Z/PT1S"}]}`,
	`{"id": "a", "run": {"cmd": "x"}, "schedules": [{"id": "s", "cron": "0 0 30 2 *", "timezone": "../../../etc/passwd"}]}`,
	`{"id": "../a", "run": {"cmd": "x"}}`,
	`{"id": "é", "run": {"cmd": "\u0000"}}`,
	`{"id": "` + strings.Repeat("a", 129) + `", "run": {"cmd": "x"}}`,
	`{"id": "a", "run": {"cmd": "x"}} {"id": "b"}`,
	`[{"id": "a", "run": {"cmd": "x"}}]`,
	`null`,
	``,
	`{}`,
	`"NaN"`,
	strings.Repeat("[", 2000),
	`{"id": "a", "run": {"cmd": "x"}, "successfulHistoryLimit": -1}`,
}

func jobRequest(body []byte) *http.Request {
	return httptest.NewRequest(http.MethodPost, "/v1/jobs", bytes.NewReader(body))
}

// wantRefusal fails unless err is one of the errors the jobs API answers 400 or 422 with.
func wantRefusal(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	var bad *httpjson.BadRequest
	if !errors.As(err, &fe) && !errors.As(err, &bad) {
		t.Fatalf("an error neither a *FieldError nor a *httpjson.BadRequest: %T %v", err, err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %+v: %v", v, err)
	}
	return b
}

// FuzzJob decodes a job spec as POST /v1/jobs does. What is accepted normalizes to itself, and
// its JSON (what GET answers, what the store keeps) is accepted again as the same job.
func FuzzJob(f *testing.F) {
	for _, s := range jobSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		j, err := decodeJob(jobRequest(body))
		if err != nil {
			wantRefusal(t, err)
			return
		}
		out := mustMarshal(t, j)
		if err := j.Normalize(); err != nil {
			t.Fatalf("a normalized job is refused: %v\n%s", err, out)
		}
		if again := mustMarshal(t, j); !bytes.Equal(again, out) {
			t.Fatalf("normalizing twice changes the job:\n%s\n%s", out, again)
		}
		j2, err := decodeJob(jobRequest(out))
		if err != nil {
			t.Fatalf("the JSON of an accepted job is refused: %v\n%s", err, out)
		}
		if again := mustMarshal(t, j2); !bytes.Equal(again, out) {
			t.Fatalf("the JSON of an accepted job decodes to another job:\n%s\n%s", out, again)
		}
	})
}

// FuzzChronosJob decodes a job in Chronos's JSON as POST /scheduler/iso8601 (or /dependency)
// does; the job it maps to is a normalized job spec.
func FuzzChronosJob(f *testing.F) {
	for _, s := range []string{
		`{"name": "nightly", "command": "echo hi", "schedule": "R/2030-01-01T02:00:00Z/P1D", "epsilon": "PT30M", "cpus": 0.1, "mem": 32}`,
		`{"name": "after", "command": "echo after", "parents": ["nightly"], "cpus": 0.1, "mem": 32}`,
		`{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P"}`,
		`{"name": "x", "command": "x", "shell": false, "arguments": ["-v"], "schedule": "R5/2026-01-01T00:00/PT1H", "scheduleTimeZone": "America/New_York",
		  "retries": 0, "disabled": true, "owner": "ops@example.com", "container": {"type": "DOCKER", "image": "busybox"},
		  "environmentVariables": [{"name": "A", "value": "1"}], "constraints": [["rack", "LIKE", "r.*"]]}`,
		`{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P1D", "epsilon": "P99999999999999999999DT99999999999999999999H"}`,
		`{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P1D", "retries": -1}`,
		`{"name": "x", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/P1D", "constraints": [["rack"]]}`,
		`{}`,
		`null`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, dependency bool) {
		var c ChronosJob
		if err := httpjson.Decode(jobRequest(body), &c); err != nil {
			wantRefusal(t, err)
			return
		}
		j, err := c.toJob(dependency)
		if err != nil {
			wantRefusal(t, err)
			return
		}
		out := mustMarshal(t, j)
		if err := j.Normalize(); err != nil {
			t.Fatalf("the job of an accepted Chronos job is refused: %v\n%s", err, out)
		}
		if again := mustMarshal(t, j); !bytes.Equal(again, out) {
			t.Fatalf("normalizing twice changes the job:\n%s\n%s", out, again)
		}
	})
}

// FuzzSchedule parses a schedule as a job spec's: a cron expression (5 or 6 fields, or a
// descriptor) or an ISO 8601 R[n]/start/period, in a timezone. No input panics or hangs: an
// accepted schedule answers Next at once, each time after the one before or zero (no more).
func FuzzSchedule(f *testing.F) {
	for _, s := range []struct{ cron, tz string }{
		{"* * * * *", ""},
		{"0 2 * * *", "Europe/Berlin"},
		{"30 2 * * *", "America/New_York"},
		{"*/15 * * * * *", "UTC"},
		{"0 0 29 2 *", "UTC"},
		{"0 0 30 2 *", "UTC"}, // never
		{"0 12 * 2 MON-FRI", "Asia/Kolkata"},
		{"@hourly", ""},
		{"@every 1s", ""},
		{"@every 2562047h", ""},
		{"@every -5m", ""},
		{"@reboot", ""},
		{"TZ=UTC * * * * *", ""},
		{"CRON_TZ=Europe/Berlin 0 2 * * *", ""},
		{"61 * * * *", ""},
		{"*/0 * * * *", ""},
		{"1-5/99999999999999999999 * * * *", ""},
		{"R/2026-01-01T00:00:00Z/PT30M", ""},
		{"R2/2026-01-01T00:00:00Z/P1D", "UTC"},
		{"R0/2026-01-01T00:00:00Z/P1D", ""},
		{"R-1/2026-01-31T08:00:00Z/P1M", ""},
		{"R/2026-01-01T00:00:00Z/P1W", ""},
		{"R/2026-03-29T02:30/P1D", "Europe/Berlin"},
		{"R/2026-01-01/P1Y2M3W4DT5H6M7.5S", "Australia/Lord_Howe"},
		{"R/0001-01-01T00:00:00Z/PT1S", ""},                    // 2025 years of seconds before fuzzT0
		{"R/1700-01-01T00:00:00Z/PT1S", ""},                    // more than a time.Duration
		{"R/9999-12-31T23:59:59-23:59/PT1S", ""},               // starts after year 9999
		{"R/2026-01-01T00:00:00Z/P281474976710656Y", ""},       // 2^48 years: zero nanoseconds in a Duration
		{"R/2026-01-01T00:00:00Z/P1DT9999999999999S", ""},      // seconds past a Duration
		{"R/2026-01-01T00:00:00Z/PT9999999999H", ""},           // hours past a Duration
		{"R/2026-01-01T00:00:00Z/P99999999999999999999Y", ""},  // past an int
		{"R99999999999999999999/2026-01-01T00:00:00Z/P1D", ""}, // past an int
		{"R/2026-01-01T00:00:00Z/PT0.5S", ""},
		{"R/2026-01-01T00:00:00Z/P", ""},
		{"R/2026-01-01T00:00:00Z/PT", ""},
		{"R/yesterday/P1D", ""},
		{"R//", ""},
		{"R", ""},
		{"", ""},
		{"@daily", "Mars/Olympus"},
		{"@daily", "../../../../etc/localtime"},
		{"@daily", "Local"},
		{"\u00a0* * * * *\u3000", ""},
		{strings.Repeat("1,", 5000) + "1 * * * *", ""},
	} {
		f.Add(s.cron, s.tz)
	}
	f.Fuzz(func(t *testing.T, cron, tz string) {
		p, err := ParseSchedule(Schedule{ID: "s", Cron: cron, Timezone: tz})
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("not a *FieldError: %T %v", err, err)
			}
			return
		}
		prev := fuzzT0
		for i := 0; i < 5; i++ {
			next := p.Next(prev)
			if next.IsZero() {
				break
			}
			if !next.After(prev) {
				t.Fatalf("%q in %q: Next(%s) = %s, not after it", cron, tz, prev, next)
			}
			prev = next
		}
		if r, ok := p.cron.(*repeating); ok {
			checkRepeating(t, r, p.loc)
		}
		// A minute of due times is walked through without trouble.
		if _, err := p.Due(fuzzT0, fuzzT0.Add(time.Minute)); err != nil && !errors.Is(err, ErrDisabled) {
			t.Fatal(err)
		}
	})
}

// naiveNext is repeating.Next without its estimate: every time from the start, one after the
// other, with the arithmetic of a time.Duration; ok is false when limit times were not enough.
func naiveNext(r *repeating, t time.Time, limit int) (next time.Time, ok bool) {
	for k := 0; k < limit; k++ {
		if r.count >= 0 && k >= r.count {
			return time.Time{}, true
		}
		at := r.start.AddDate(k*r.y, k*r.m, k*r.d).Add(time.Duration(k) * r.clock)
		if at.After(lastTime) {
			return time.Time{}, true
		}
		if at.After(t) {
			return at.In(t.Location()), true
		}
	}
	return time.Time{}, false
}

// checkRepeating compares an ISO 8601 schedule's Next, which estimates how many periods have
// passed, with naiveNext, at times up to a few hundred periods after the start.
func checkRepeating(t *testing.T, r *repeating, loc *time.Location) {
	const limit = 400
	if r.clock > time.Duration(math.MaxInt64/limit) {
		return // naiveNext's time.Duration would overflow
	}
	probes := []time.Time{fuzzT0, r.start.Add(-time.Nanosecond), r.start}
	if d := r.approx * 300; d < 290*365*24*3600 {
		probes = append(probes, r.start.Add(time.Duration(d*float64(time.Second))))
	}
	for _, at := range probes {
		at = at.In(loc)
		want, ok := naiveNext(r, at, limit)
		if !ok {
			continue
		}
		if got := r.Next(at); !got.Equal(want) {
			t.Fatalf("start %s, period %dy%dm%dd+%s: Next(%s) = %s, one by one %s", r.start, r.y, r.m, r.d, r.clock, at, got, want)
		}
	}
}

// FuzzPlacementConstraint compiles a job's placement constraint. A LIKE or UNLIKE value that
// is accepted is a regular expression of its own (not one that only compiles once wrapped in
// anchors), and LIKE and UNLIKE answer the opposite for an agent that has the attribute.
func FuzzPlacementConstraint(f *testing.F) {
	for _, c := range []struct{ attr, op, value, probe string }{
		{"rack", "EQ", "r1", "r1"},
		{"hostname", "LIKE", "[ab]", "b"},
		{"hostname", "LIKE", "[ab]", "bb"},
		{"rack", "UNLIKE", "r[0-9]+", "r12"},
		{"rack", "LIKE", "(", "("},
		{"rack", "LIKE", "a)|(b", "axx"},
		{"rack", "LIKE", "a)|.*|(?:b", "anything"},
		{"rack", "LIKE", `\`, `\`},
		{"rack", "LIKE", "(?i)R1", "r1"},
		{"rack", "LIKE", "((a{1000}){1000}){1000}", "a"},
		{"rack", "LIKE", strings.Repeat("(", 999) + "a" + strings.Repeat(")", 999), "a"}, // compiles, but not anchored
		{"rack", "LIKE", "", ""},
		{"rack", "NEAR", "r1", "r1"},
		{"", "EQ", "", ""},
	} {
		f.Add(c.attr, c.op, c.value, c.probe)
	}
	f.Fuzz(func(t *testing.T, attr, op, value, probe string) {
		c, err := PlacementConstraint{Attribute: attr, Operator: op, Value: value}.compile()
		if err != nil {
			return
		}
		attrs := map[string]string{attr: probe}
		got := c.allows(probe, attrs)
		switch op {
		case "EQ", "IS":
			if got != (probe == value) {
				t.Fatalf("EQ %q on %q: %v", value, probe, got)
			}
		case "LIKE", "UNLIKE":
			if _, err := regexp.Compile(value); err != nil {
				t.Fatalf("%s accepted %q, which is not a regular expression: %v", op, value, err)
			}
			other := "LIKE"
			if op == "LIKE" {
				other = "UNLIKE"
			}
			o, err := PlacementConstraint{Attribute: attr, Operator: other, Value: value}.compile()
			if err != nil {
				t.Fatalf("%s %q accepted, %s refused: %v", op, value, other, err)
			}
			if o.allows(probe, attrs) == got {
				t.Fatalf("LIKE and UNLIKE %q agree on %q", value, probe)
			}
		}
	})
}
