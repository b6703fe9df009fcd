package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrInvalid marks a config HAProxy refused (haproxy -c): its message says why.
var ErrInvalid = errors.New("lb: haproxy refused the config")

// validate runs haproxy -c -f path: nil when HAProxy accepts the file, else an error wrapping
// ErrInvalid with HAProxy's own message.
func validate(ctx context.Context, haproxy, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, haproxy, "-c", "-f", path).CombinedOutput()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && ctx.Err() == nil {
		return fmt.Errorf("%w: %s", ErrInvalid, alerts(out))
	}
	return fmt.Errorf("lb: run %s -c: %w: %s", haproxy, err, bytes.TrimSpace(out))
}

// alerts is HAProxy's answer to -c without its banner lines: the [ALERT]s (and warnings) that
// say what is wrong, on one line.
func alerts(out []byte) string {
	var lines []string
	for l := range strings.SplitSeq(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Contains(l, "[NOTICE]") {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, " | ")
}

// reloader makes HAProxy serve the config file: started the first time, reloaded gracefully
// after.
type reloader interface {
	reload(ctx context.Context) error
	stop()
}

// commandReloader runs an operator's command (systemctl reload haproxy) for an HAProxy that
// runs under a unit of its own.
type commandReloader struct {
	argv []string
}

func (r *commandReloader) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.argv[0], r.argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lb: reload command %q: %w: %s", strings.Join(r.argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (r *commandReloader) stop() {}

// childHAProxy runs HAProxy as a child in master-worker mode (haproxy -W -f config). A reload
// is SIGUSR2 to its master: it reads the config again and starts new workers, which take the
// listening sockets over from the old ones (through the stats socket, expose-fd listeners);
// the old workers finish the connections they hold and leave. Stopping is SIGUSR1 (finish
// the connections, bounded) then SIGTERM.
type childHAProxy struct {
	haproxy, config, socket string
	out                     io.Writer
	log                     *slog.Logger

	mu   sync.Mutex
	cmd  *exec.Cmd     // nil while none runs
	done chan struct{} // closed when cmd has exited
}

func (h *childHAProxy) reload(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		select {
		case <-h.done:
			h.log.Warn("haproxy had exited; starting it again", "status", h.cmd.ProcessState.String())
			h.cmd = nil
		default:
			return h.reloadLocked(ctx)
		}
	}
	return h.startLocked(ctx)
}

// reloadAttempts and reloadWait bound a reload: SIGUSR2, then up to reloadWait for a new worker
// to answer on the admin socket, again up to reloadAttempts times.
const (
	reloadAttempts = 3
	reloadWait     = 5 * time.Second
)

// reloadLocked sends SIGUSR2 and waits until a new worker serves: the admin socket names
// another pid. HAProxy's master can miss a SIGUSR2 that comes while it re-executes for the one
// before (two changes of the cluster within moments of each other), and a worker that stays
// would serve the old config; so a reload is confirmed, and signalled again when it is not.
// Without an admin socket the signal is all there is.
func (h *childHAProxy) reloadLocked(ctx context.Context) error {
	before := 0
	if h.socket != "" {
		before, _ = workerPID(h.socket)
	}
	for attempt := 1; ; attempt++ {
		if err := h.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
			return fmt.Errorf("lb: reload haproxy: %w", err)
		}
		if h.socket == "" {
			return nil
		}
		deadline := time.Now().Add(reloadWait)
		for time.Now().Before(deadline) {
			if pid, err := workerPID(h.socket); err == nil && pid != before {
				return nil
			}
			select {
			case <-h.done:
				return fmt.Errorf("lb: haproxy exited as it reloaded: %s", h.cmd.ProcessState)
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if attempt == reloadAttempts {
			return fmt.Errorf("lb: haproxy did not reload: the worker of pid %d still serves after %d signals", before, attempt)
		}
		h.log.Warn("haproxy did not reload; signalling it again", "worker", before, "attempt", attempt)
	}
}

// workerPID asks HAProxy's admin socket which worker serves it (show info's Pid).
func workerPID(socket string) (int, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("show info\n")); err != nil {
		return 0, err
	}
	out, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("lb: haproxy's show info has no Pid: %.100q", out)
}

// startLocked starts HAProxy and waits until it serves its admin socket: only then does its
// master handle SIGUSR2 (before, the signal would end it).
func (h *childHAProxy) startLocked(ctx context.Context) error {
	if h.socket != "" {
		_ = os.Remove(h.socket) // a socket left by an HAProxy that was killed
	}
	cmd := exec.Command(h.haproxy, "-W", "-db", "-f", h.config)
	cmd.Stdout, cmd.Stderr = h.out, h.out
	// HAProxy ends with agora lb, even killed (-9): no HAProxy left holding the ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lb: start haproxy: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	h.cmd, h.done = cmd, done
	if h.socket == "" {
		return nil
	}
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		if c, err := net.DialTimeout("unix", h.socket, time.Second); err == nil {
			c.Close()
			h.log.Info("haproxy started", "pid", cmd.Process.Pid, "config", h.config)
			return nil
		}
		select {
		case <-done:
			h.cmd = nil
			return fmt.Errorf("lb: haproxy exited as it started: %s", cmd.ProcessState)
		case <-deadline.C:
			return fmt.Errorf("lb: haproxy started (pid %d) but its socket %s does not answer", cmd.Process.Pid, h.socket)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running says whether HAProxy runs.
func (h *childHAProxy) running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

func (h *childHAProxy) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGUSR1, 10 * time.Second}, {syscall.SIGTERM, 5 * time.Second}, {syscall.SIGKILL, time.Minute}} {
		_ = h.cmd.Process.Signal(step.sig)
		select {
		case <-h.done:
			h.cmd = nil
			return
		case <-time.After(step.wait):
		}
	}
}
