// Package health is a task's health checks, with Marathon's semantics: HTTP, HTTPS, TCP and
// COMMAND checks (and MESOS_HTTP, MESOS_HTTPS, MESOS_TCP, probed as HTTP, HTTPS, TCP), a grace
// period, an interval, a timeout, and a number of consecutive failures after which the task is
// killed. Agents run the checks (as Mesos-native health checks are run beside the task, not
// from the scheduler); frameworks validate the checks their users write.
//
// delaySeconds is as Marathon 1.10 has it: every check shows it (15 unless given), but only the
// checks Marathon leaves to Mesos — MESOS_HTTP, MESOS_HTTPS, MESOS_TCP and COMMAND — wait that
// long after the task started before the first probe, as Mesos's delay_seconds does. HTTP, HTTPS
// and TCP are Marathon's own checks, for which Marathon keeps delaySeconds without acting on it:
// they probe from the start.
//
// Use:
//
//  1. Decode a Check from JSON (Marathon's field names); absent fields get Marathon's defaults,
//     and an explicit 0 stays 0. Validate(ports) names a wrong field.
//  2. Run(ctx, RunConfig) on the agent: it waits the check's delay (what is left of it since the
//     task started), then probes every IntervalSeconds and calls OnVerdict whenever the health
//     changes or the task must be killed.
//  3. The decisions are the Tracker's, which does no I/O: failures within GracePeriodSeconds of
//     the start are ignored until the task has been healthy once; a success resets the count;
//     MaxConsecutiveFailures failures in a row (when it is above 0) mean kill.
package health

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Protocol is how a check probes the task.
type Protocol string

// The protocols: Marathon's own checks (HTTP, HTTPS, TCP) and those it leaves to Mesos
// (COMMAND and the MESOS_ ones).
const (
	HTTP       Protocol = "HTTP"
	HTTPS      Protocol = "HTTPS"
	TCP        Protocol = "TCP"
	Command    Protocol = "COMMAND"
	MesosHTTP  Protocol = "MESOS_HTTP"
	MesosHTTPS Protocol = "MESOS_HTTPS"
	MesosTCP   Protocol = "MESOS_TCP"
)

// probe is how a check of protocol p probes: a MESOS_ protocol as the one it is named after.
func (p Protocol) probe() Protocol {
	switch p {
	case MesosHTTP:
		return HTTP
	case MesosHTTPS:
		return HTTPS
	case MesosTCP:
		return TCP
	}
	return p
}

// waitsDelay says whether a check of protocol p waits delaySeconds before its first probe: those
// Marathon leaves to Mesos do; Marathon's own (HTTP, HTTPS, TCP) do not.
func (p Protocol) waitsDelay() bool {
	switch p {
	case MesosHTTP, MesosHTTPS, MesosTCP, Command:
		return true
	}
	return false
}

// Marathon's defaults for fields a check leaves out.
const (
	DefaultGracePeriodSeconds     = 300
	DefaultIntervalSeconds        = 60
	DefaultTimeoutSeconds         = 20
	DefaultMaxConsecutiveFailures = 3
	DefaultDelaySeconds           = 15 // shown for every check; waited for by COMMAND and MESOS_ ones
)

// Check is one health check, as a launch request (and a Marathon app) carries it.
type Check struct {
	Protocol  Protocol `json:"protocol"`          // as given, upper case (MESOS_HTTP stays MESOS_HTTP)
	Path      string   `json:"path,omitempty"`    // HTTP and HTTPS; default "/"
	PortIndex int      `json:"portIndex"`         // index into the task's ports
	Port      uint64   `json:"port,omitempty"`    // a fixed port; overrides PortIndex
	Command   string   `json:"command,omitempty"` // COMMAND: sh -c COMMAND inside the task's container
	// The numbers below are as Marathon's: absent in JSON means the default; 0 is kept.
	GracePeriodSeconds     int `json:"gracePeriodSeconds"`
	IntervalSeconds        int `json:"intervalSeconds"`
	TimeoutSeconds         int `json:"timeoutSeconds"`
	MaxConsecutiveFailures int `json:"maxConsecutiveFailures"` // 0: never kill
	// DelaySeconds is Marathon's: shown for every check, waited for only where Protocol says
	// (waitsDelay).
	DelaySeconds int `json:"delaySeconds"`
}

// commandJSON is Marathon's shape of a COMMAND check's command: {"value": "..."}.
type commandJSON struct {
	Value string `json:"value"`
}

// UnmarshalJSON fills absent numbers with Marathon's defaults and reads a command written either
// as a string or as Marathon's {"value": "..."}.
func (c *Check) UnmarshalJSON(b []byte) error {
	type plain Check
	var raw struct {
		plain
		Command json.RawMessage `json:"command,omitempty"`
	}
	raw.plain = plain{
		GracePeriodSeconds: DefaultGracePeriodSeconds, IntervalSeconds: DefaultIntervalSeconds,
		TimeoutSeconds: DefaultTimeoutSeconds, MaxConsecutiveFailures: DefaultMaxConsecutiveFailures,
		DelaySeconds: DefaultDelaySeconds,
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*c = Check(raw.plain)
	if len(raw.Command) > 0 && string(raw.Command) != "null" {
		if err := json.Unmarshal(raw.Command, &c.Command); err != nil {
			var cj commandJSON
			if err := json.Unmarshal(raw.Command, &cj); err != nil {
				return &FieldError{Field: "command", Msg: `want a string or {"value": "..."}`}
			}
			c.Command = cj.Value
		}
	}
	c.Protocol = Protocol(strings.ToUpper(string(c.Protocol)))
	return nil
}

// FieldError names the field of a check that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// protocols names the protocols a check may have, for errors.
const protocols = "HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, MESOS_HTTPS or MESOS_TCP"

// Validate checks a check for a task with the given number of ports.
func (c Check) Validate(ports int) error {
	switch c.Protocol.probe() {
	case HTTP, HTTPS, TCP:
		if c.Port == 0 && (c.PortIndex < 0 || c.PortIndex >= ports) {
			if ports == 0 {
				return &FieldError{Field: "portIndex", Msg: fmt.Sprintf("%d: the task has no ports", c.PortIndex)}
			}
			return &FieldError{Field: "portIndex", Msg: fmt.Sprintf("%d: the task has ports 0 to %d", c.PortIndex, ports-1)}
		}
		if c.Port > 65535 {
			return &FieldError{Field: "port", Msg: fmt.Sprintf("%d is not a port", c.Port)}
		}
	case Command:
		if strings.TrimSpace(c.Command) == "" {
			return &FieldError{Field: "command", Msg: "a COMMAND check needs a command"}
		}
	case "":
		return &FieldError{Field: "protocol", Msg: "is required: " + protocols}
	default:
		return &FieldError{Field: "protocol", Msg: fmt.Sprintf("%q: want %s", c.Protocol, protocols)}
	}
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		return &FieldError{Field: "path", Msg: fmt.Sprintf("%q must start with /", c.Path)}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"gracePeriodSeconds", c.GracePeriodSeconds}, {"timeoutSeconds", c.TimeoutSeconds}, {"maxConsecutiveFailures", c.MaxConsecutiveFailures}, {"delaySeconds", c.DelaySeconds}} {
		if f.v < 0 {
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("%d must not be negative", f.v)}
		}
	}
	if c.IntervalSeconds < 1 {
		return &FieldError{Field: "intervalSeconds", Msg: fmt.Sprintf("%d: want 1 or more", c.IntervalSeconds)}
	}
	if c.TimeoutSeconds < 1 {
		return &FieldError{Field: "timeoutSeconds", Msg: fmt.Sprintf("%d: want 1 or more", c.TimeoutSeconds)}
	}
	return nil
}

func (c Check) interval() time.Duration { return time.Duration(c.IntervalSeconds) * time.Second }
func (c Check) timeout() time.Duration  { return time.Duration(c.TimeoutSeconds) * time.Second }
func (c Check) grace() time.Duration    { return time.Duration(c.GracePeriodSeconds) * time.Second }

// delay is how long after the task started the first probe waits: DelaySeconds for the checks
// that wait for it, none for Marathon's own.
func (c Check) delay() time.Duration {
	if !c.Protocol.waitsDelay() {
		return 0
	}
	return time.Duration(c.DelaySeconds) * time.Second
}

// Status is what a Tracker knows of a task's health.
type Status struct {
	Known               bool // false until the first verdict that counts
	Healthy             bool
	ConsecutiveFailures int
	FirstSuccess        time.Time
	LastSuccess         time.Time
	LastFailure         time.Time
	LastFailureCause    string
}

// Verdict is what one probe result means.
type Verdict struct {
	Status  Status
	Changed bool // the health became known or flipped: tell the scheduler
	Kill    bool // MaxConsecutiveFailures failures in a row: kill the task
}

// Tracker folds probe results into a task's health. It does no I/O and reads no clock.
type Tracker struct {
	check   Check
	started time.Time
	st      Status
}

// NewTracker tracks a task that started at started.
func NewTracker(c Check, started time.Time) *Tracker { return &Tracker{check: c, started: started} }

// Observe records one probe's result at time at.
func (t *Tracker) Observe(ok bool, cause string, at time.Time) Verdict {
	was := t.st
	if ok {
		if t.st.FirstSuccess.IsZero() {
			t.st.FirstSuccess = at
		}
		t.st.LastSuccess = at
		t.st.ConsecutiveFailures = 0
		t.st.Known, t.st.Healthy = true, true
		return Verdict{Status: t.st, Changed: !was.Known || !was.Healthy}
	}
	if t.st.FirstSuccess.IsZero() && at.Sub(t.started) < t.check.grace() {
		// Still starting up: Marathon ignores failures until the grace period ends or the task
		// has been healthy once.
		return Verdict{Status: t.st}
	}
	t.st.ConsecutiveFailures++
	t.st.LastFailure, t.st.LastFailureCause = at, cause
	t.st.Known, t.st.Healthy = true, false
	return Verdict{
		Status:  t.st,
		Changed: !was.Known || was.Healthy,
		Kill:    t.check.MaxConsecutiveFailures > 0 && t.st.ConsecutiveFailures >= t.check.MaxConsecutiveFailures,
	}
}
