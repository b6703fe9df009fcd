package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/agora-sched/agora/pkg/clock"
)

// Execer runs a command inside a task's container and returns its exit code and output.
type Execer interface {
	Exec(ctx context.Context, taskID string, argv []string) (exitCode int, output []byte, err error)
}

// Target is the task a check probes.
type Target struct {
	TaskID string
	Host   string // default 127.0.0.1: tasks share the agent's network
	Ports  []uint64
	Exec   Execer // for COMMAND checks
}

// prober makes HTTP requests for checks: no redirects followed (a 3xx is healthy as it is), no
// certificate checks (Marathon's HTTPS checks do not verify), no connections kept.
var prober = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as Marathon: checks test liveness, not identity
		DisableKeepAlives: true,
		Proxy:             nil,
	},
}

// Probe runs the check once against the target within the check's timeout. nil means healthy;
// an error's text is the cause a person reads.
func Probe(ctx context.Context, c Check, t Target) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	host := t.Host
	if host == "" {
		host = "127.0.0.1"
	}
	proto := c.Protocol.probe()
	port := c.Port
	if port == 0 && proto != Command {
		if c.PortIndex < 0 || c.PortIndex >= len(t.Ports) {
			return fmt.Errorf("port index %d: the task has %d ports", c.PortIndex, len(t.Ports))
		}
		port = t.Ports[c.PortIndex]
	}
	addr := net.JoinHostPort(host, strconv.FormatUint(port, 10))
	switch proto {
	case HTTP, HTTPS:
		scheme := "http"
		if proto == HTTPS {
			scheme = "https"
		}
		path := c.Path
		if path == "" {
			path = "/"
		}
		url := scheme + "://" + addr + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("%s GET %s: %w", c.Protocol, url, err)
		}
		resp, err := prober.Do(req)
		if err != nil {
			return fmt.Errorf("%s GET %s: %w", c.Protocol, url, timeoutSays(err, c))
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("%s GET %s: status %d", c.Protocol, url, resp.StatusCode)
		}
		return nil
	case TCP:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("TCP connect %s: %w", addr, timeoutSays(err, c))
		}
		conn.Close()
		return nil
	case Command:
		if t.Exec == nil {
			return errors.New("COMMAND checks cannot run here")
		}
		code, out, err := t.Exec.Exec(ctx, t.TaskID, []string{"sh", "-c", c.Command})
		if err != nil {
			return fmt.Errorf("command %q: %w", c.Command, timeoutSays(err, c))
		}
		if code != 0 {
			if len(out) > 200 {
				out = out[:200]
			}
			return fmt.Errorf("command %q exited %d: %q", c.Command, code, out)
		}
		return nil
	}
	return fmt.Errorf("protocol %q", c.Protocol)
}

func timeoutSays(err error, c Check) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within the %ds timeout", c.TimeoutSeconds)
	}
	return err
}

// RunConfig configures Run.
type RunConfig struct {
	Check   Check
	Target  Target
	Started time.Time // when the task started, for the grace period and the delay
	Clock   clock.Clock
	// OnVerdict is called after every probe whose verdict changed the health or says kill.
	OnVerdict func(Verdict)
	// Probe replaces the real probe in tests.
	Probe func(ctx context.Context, c Check, t Target) error
}

// Run waits what is left, since Started, of the check's delay (DelaySeconds where its protocol
// waits for it: a task whose checks restart after its agent did waits no longer than it would
// have), then probes every IntervalSeconds until ctx ends or a verdict says kill.
func Run(ctx context.Context, cfg RunConfig) {
	clk := cfg.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	probe := cfg.Probe
	if probe == nil {
		probe = Probe
	}
	tr := NewTracker(cfg.Check, cfg.Started)
	wait := cfg.Check.delay() - clk.Now().Sub(cfg.Started)
	for {
		select {
		case <-ctx.Done():
			return
		case <-clk.After(wait):
		}
		err := probe(ctx, cfg.Check, cfg.Target)
		if ctx.Err() != nil {
			return
		}
		cause := ""
		if err != nil {
			cause = err.Error()
		}
		v := tr.Observe(err == nil, cause, clk.Now())
		if (v.Changed || v.Kill) && cfg.OnVerdict != nil {
			cfg.OnVerdict(v)
		}
		if v.Kill {
			return
		}
		wait = cfg.Check.interval()
	}
}
