package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/pkg/hostaccess"
	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultNamespace is the containerd namespace agents work in.
const DefaultNamespace = "agora"

// DefaultPath is the PATH a task gets when it sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config configures an Executor.
type Config struct {
	Client    *ctrd.Client
	Namespace string // default DefaultNamespace
	// Address is the socket of Client's containerd, by which ReapLostShim tells its shims from
	// another containerd's (empty: any shim of Namespace).
	Address     string
	SandboxRoot string // each task's sandbox is SandboxRoot/<task id>
	LogMaxBytes int64  // rotate a task's stdout or stderr at this size (default logs' own)
	LogKeep     int    // rotated files kept per stream (default logs' own)
	Logger      *slog.Logger
	// HostDirs are the host directories tasks without an image see, read-only (default
	// DefaultHostDirs). They also get a copy of the host's /etc made when the executor starts,
	// without the files that hold passwords and keys.
	HostDirs []string
	// Hidden are host paths no task may see, besides hostaccess.AlwaysProtected: the agent's data
	// dir, its key and secret files, a master's on the same host. Those that lie in a host dir
	// are covered by an empty mount; the /etc copy leaves them out.
	Hidden []string
	// DefaultUser runs the tasks that name no user and whose image names none other than root
	// (default DefaultUser): a name or uid of the host's /etc/passwd, or uid:gid.
	DefaultUser string
	// AllowRoot lets tasks run as uid 0; without it a task that would is refused.
	AllowRoot bool
	// NetNS is the network namespace tasks join: a path such as /var/run/netns/NAME (what `ip
	// netns add NAME` makes) or /proc/PID/ns/net. Empty (the default): containerd's own, which
	// is the host's network.
	NetNS string
}

// Executor launches and kills tasks.
type Executor struct {
	cfg    Config
	logger *slog.Logger
	// hostRoot is the root directory of tasks without an image, hostEtc their /etc, logRoot
	// holds each task's logs: beside the sandboxes, made by New.
	hostRoot, hostEtc, logRoot string
	hostMounts                 []specs.Mount // of tasks without an image, as hostMountList made them at start
	defaultUser                identity      // cfg.DefaultUser resolved on the host
	// pump copies the tasks' spools, which the shims write, into their rotated log files.
	pump *logs.Pump

	mu    sync.Mutex // guards tasks
	tasks map[string]*running
}

// ErrBadSpec: the task cannot be launched as described.
var ErrBadSpec = errors.New("containerd: bad task")

// ErrNoTask: the executor runs no task of that id.
var ErrNoTask = errors.New("containerd: no such task")

// New makes an executor.
func New(cfg Config) (*Executor, error) {
	if cfg.Client == nil {
		return nil, errors.New("containerd: no client")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !filepath.IsAbs(cfg.SandboxRoot) {
		return nil, fmt.Errorf("containerd: the sandbox root %q must be an absolute path", cfg.SandboxRoot)
	}
	// The shim parses a task's stdout and stderr paths as URLs (without a scheme: a path).
	if u, err := url.Parse(cfg.SandboxRoot); err != nil || u.Scheme != "" {
		return nil, fmt.Errorf("containerd: the sandbox root %q: containerd's shim would not take the paths of its tasks' log files, which are beside it (a '%%' not followed by two hex digits?)", cfg.SandboxRoot)
	}
	if cfg.HostDirs == nil {
		cfg.HostDirs = DefaultHostDirs
	}
	if err := CheckHostDirs(cfg.HostDirs, filepath.Dir(cfg.SandboxRoot)); err != nil {
		return nil, err
	}
	cfg.Hidden = append(slices.Clone(cfg.Hidden), hostaccess.AlwaysProtected...)
	if cfg.DefaultUser == "" {
		cfg.DefaultUser = DefaultUser
	}
	if cfg.NetNS != "" {
		if err := CheckNetNS(cfg.NetNS); err != nil {
			return nil, err
		}
	}
	e := &Executor{cfg: cfg, logger: cfg.Logger, tasks: map[string]*running{},
		hostRoot: cfg.SandboxRoot + "-hostroot", hostEtc: cfg.SandboxRoot + "-etc", logRoot: cfg.SandboxRoot + "-logs",
		pump: logs.NewPump(logs.PumpConfig{MaxBytes: cfg.LogMaxBytes, Keep: cfg.LogKeep, Logger: cfg.Logger})}
	if err := os.MkdirAll(e.logRoot, 0o700); err != nil {
		return nil, fmt.Errorf("containerd: logs: %w", err)
	}
	if err := e.prepareHostRoot(); err != nil {
		return nil, err
	}
	e.hostMounts = e.hostMountList()
	u, err := resolveUser(cfg.DefaultUser, e.hostEtc)
	if err != nil {
		return nil, fmt.Errorf("containerd: the default task user %q: %v", cfg.DefaultUser, err)
	}
	if u.UID == 0 && !cfg.AllowRoot {
		return nil, fmt.Errorf("containerd: the default task user %q is root, and root tasks are not allowed (agora agent --allow-root-tasks)", cfg.DefaultUser)
	}
	e.defaultUser = u
	return e, nil
}

func (e *Executor) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, e.cfg.Namespace)
}

// Sandbox is the sandbox directory of a task.
func (e *Executor) Sandbox(taskID string) string { return filepath.Join(e.cfg.SandboxRoot, taskID) }

// LogDir is where a task's stdout and stderr are: beside the sandboxes, out of the task's reach
// (a task owns its sandbox, and could leave a link there where the agent would write or read).
func (e *Executor) LogDir(taskID string) string { return filepath.Join(e.logRoot, taskID) }

// Remove deletes a task's ended process, then copies the last of its output into its log files
// (the shim writes no more once the process is deleted), then deletes its container (and the
// container's snapshot); the sandbox and the log files stay. Removing what is not there is not
// an error. The agent reports a task's end only once Remove returned: its logs are complete.
func (e *Executor) Remove(ctx context.Context, id string) error {
	ctx = e.ctx(ctx)
	e.mu.Lock()
	r := e.tasks[id]
	delete(e.tasks, id)
	e.mu.Unlock()
	ctr, err := e.cfg.Client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return e.drainLogs(ctx, id, r)
	}
	if err != nil {
		return fmt.Errorf("containerd: remove %s: %w", id, err)
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, ctrd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("containerd: remove %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: remove %s: %w", id, err)
	}
	if err := e.drainLogs(ctx, id, r); err != nil {
		return err // the container stays: the next Remove drains again
	}
	if err := ctr.Delete(ctx, ctrd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: remove %s: %w", id, err)
	}
	return nil
}

// drainLogs copies what is left in a task's spools into its log files and removes them; its
// process must be deleted. A task without spools (its output went through a logging process
// an earlier agent had the shim start) is left as it is. r is what the executor held of the
// task (nil: nothing).
func (e *Executor) drainLogs(ctx context.Context, id string, r *running) error {
	if err := e.pump.Drain(ctx, e.LogDir(id)); err != nil {
		return fmt.Errorf("containerd: remove %s: %w", id, err)
	}
	if r != nil {
		r.stopForget() // drained: nothing to let go of when the agent stops
	}
	return nil
}

// Kill stops a task: SIGTERM, then SIGKILL if it still runs after grace. It returns once the
// process has ended (or ctx ends).
func (e *Executor) Kill(ctx context.Context, id string, grace time.Duration) error {
	e.mu.Lock()
	r, ok := e.tasks[id]
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoTask, id)
	}
	ctx = e.ctx(ctx)
	select {
	case <-r.handle.exited:
		return nil
	default:
	}
	if err := r.task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: SIGTERM %s: %w", id, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-r.handle.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
	}
	if err := r.task.Kill(ctx, syscall.SIGKILL, ctrd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: SIGKILL %s: %w", id, err)
	}
	select {
	case <-r.handle.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Running lists the ids of the tasks whose processes the executor holds.
func (e *Executor) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.tasks))
	for id := range e.tasks {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}
