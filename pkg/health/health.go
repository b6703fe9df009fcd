// Package health is a task's health checks, with Marathon's semantics: HTTP, HTTPS, TCP and
// COMMAND checks, a grace period, an interval, a timeout, and a number of consecutive failures
// after which the task is killed. Agents run the checks (as Mesos-native health checks are run
// beside the task, not from the scheduler); frameworks validate the checks their users write.
//
// Use:
//
//  1. Decode a Check from JSON (Marathon's field names); absent fields get Marathon's defaults,
//     and an explicit 0 stays 0. Validate(ports) names a wrong field.
//  2. Run(ctx, RunConfig) on the agent: it waits DelaySeconds, then probes every IntervalSeconds
//     and calls OnVerdict whenever the health changes or the task must be killed.
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

// The protocols.
const (
	HTTP    Protocol = "HTTP"
	HTTPS   Protocol = "HTTPS"
	TCP     Protocol = "TCP"
	Command Protocol = "COMMAND"
)

// Marathon's defaults for fields a check leaves out.
const (
	DefaultGracePeriodSeconds     = 300
	DefaultIntervalSeconds        = 60
	DefaultTimeoutSeconds         = 20
	DefaultMaxConsecutiveFailures = 3
	DefaultDelaySeconds           = 15 // MESOS_HTTP, MESOS_HTTPS, MESOS_TCP only
)

// Check is one health check, as a launch request (and a Marathon app) carries it.
type Check struct {
	Protocol  Protocol `json:"protocol"`
	Path      string   `json:"path,omitempty"`    // HTTP and HTTPS; default "/"
	PortIndex int      `json:"portIndex"`         // index into the task's ports
	Port      uint64   `json:"port,omitempty"`    // a fixed port; overrides PortIndex
	Command   string   `json:"command,omitempty"` // COMMAND: sh -c COMMAND inside the task's container
	// The numbers below are as Marathon's: absent in JSON means the default; 0 is kept.
	GracePeriodSeconds     int `json:"gracePeriodSeconds"`
	IntervalSeconds        int `json:"intervalSeconds"`
	TimeoutSeconds         int `json:"timeoutSeconds"`
	MaxConsecutiveFailures int `json:"maxConsecutiveFailures"` // 0: never kill
	DelaySeconds           int `json:"delaySeconds"`
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
		Delay   *int            `json:"delaySeconds"`
	}
	raw.plain = plain{
		GracePeriodSeconds: DefaultGracePeriodSeconds, IntervalSeconds: DefaultIntervalSeconds,
		TimeoutSeconds: DefaultTimeoutSeconds, MaxConsecutiveFailures: DefaultMaxConsecutiveFailures,
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*c = Check(raw.plain)
	mesosNative := strings.HasPrefix(strings.ToUpper(string(c.Protocol)), "MESOS_")
	switch {
	case raw.Delay != nil:
		c.DelaySeconds = *raw.Delay
	case mesosNative:
		c.DelaySeconds = DefaultDelaySeconds // Mesos's own checks wait 15 s before the first probe
	default:
		c.DelaySeconds = 0 // Marathon's HTTP, TCP and COMMAND checks probe from the start
	}
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
	switch c.Protocol {
	case "MESOS_HTTP":
		c.Protocol = HTTP
	case "MESOS_HTTPS":
		c.Protocol = HTTPS
	case "MESOS_TCP":
		c.Protocol = TCP
	}
	return nil
}

// FieldError names the field of a check that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks a check for a task with the given number of ports.
func (c Check) Validate(ports int) error {
	switch c.Protocol {
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
		return &FieldError{Field: "protocol", Msg: "is required: HTTP, HTTPS, TCP or COMMAND"}
	default:
		return &FieldError{Field: "protocol", Msg: fmt.Sprintf("%q: want HTTP, HTTPS, TCP or COMMAND", c.Protocol)}
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
func (c Check) delay() time.Duration    { return time.Duration(c.DelaySeconds) * time.Second }

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
