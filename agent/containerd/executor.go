// Package containerd runs an agent's tasks as containerd containers, in a containerd namespace
// of their own ("agora"). It is the agent's executor: it launches, waits, kills and re-attaches;
// the agent decides what to run and keeps the books.
//
// Use:
//
//  1. New(Config{Client, Namespace, SandboxRoot, LogBinary, HostDirs, Hidden, DefaultUser,
//     AllowRoot, NetNS}) makes an executor, and the root and /etc copy of tasks without an image.
//  2. Recover(ctx, known) once at start: re-attaches to the containers of tasks the agent's
//     checkpoint knows, reports the ones that ended meanwhile, and kills and removes the rest
//     (and the secret files of a launch it did not finish).
//  3. Launch(ctx, Spec) gets the image (or, without one, a curated read-only view of the host:
//     HostDirs and a copy of /etc without secrets), creates the container (args, env with
//     PORT0.. and the task's identity, cgroup limits from cpus and mem; run as the task's user,
//     its image's when not root, or DefaultUser; no capabilities but root's, no new privileges,
//     the default seccomp profile; the host's network, or the namespace NetNS names), gives the
//     sandbox to that user, puts its secret files in a tmpfs of its own, 0400 and that user's,
//     mounted read-only into the container and gone from the host before the process starts
//     (secrets.go), starts the process with stdout and stderr going to rotated files beside
//     the sandbox (LogDir, out of the task's reach), and returns once the process runs.
//  4. The Handle's Done channel delivers the Exit: status code, and whether the kernel killed it
//     for memory. The container stays until Remove, so that an exit the agent has not yet
//     checkpointed survives an agent crash. A wait that breaks because containerd went away
//     (killed, restarted) is no exit: the process runs on under its shim, and the executor
//     re-attaches once containerd answers again, so Done delivers only the real end (the status
//     containerd kept for a process that ended meanwhile). Available says whether containerd
//     answers and every task is attached; Unavailable tells such errors from others;
//     ReapLostShim ends the shim of a task containerd lost when it was killed creating it.
//  5. Kill sends SIGTERM, waits the grace period, then SIGKILL. Exec runs a command inside a
//     task (COMMAND health checks); Stats reads its cgroup usage.
//
// The task's stdout and stderr are written by a logging process the containerd shim starts and
// owns (LogBinary, which is agora itself: `agora logger ...`), not by the agent, so output keeps
// flowing into the sandbox while the agent restarts.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/id"
	ctrd "github.com/containerd/containerd"
	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultNamespace is the containerd namespace agents work in.
const DefaultNamespace = "agora"

// DefaultPath is the PATH a task gets when it sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// LoggerCommand is the first argument the shim passes LogBinary: `LogBinary logger OPTIONS`.
const LoggerCommand = "logger"

// ServeIfLogger turns this process into a task's logger, and exits, when the shim started it
// as one (`BIN logger OPTIONS`); otherwise it returns. Test binaries that are LogBinary call
// it first in TestMain, as the agora binary has its logger command.
func ServeIfLogger() {
	if len(os.Args) > 2 && os.Args[1] == LoggerCommand {
		if err := logs.RunLogger(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// Config configures an Executor.
type Config struct {
	Client    *ctrd.Client
	Namespace string // default DefaultNamespace
	// Address is the socket of Client's containerd, by which ReapLostShim tells its shims from
	// another containerd's (empty: any shim of Namespace).
	Address     string
	SandboxRoot string // each task's sandbox is SandboxRoot/<task id>
	// LogBinary is the absolute path of the program the shim runs as `LogBinary logger OPTIONS`
	// to write a task's stdout and stderr (logs.RunLogger); agora itself.
	LogBinary   string
	LogMaxBytes int64 // rotate a task's stdout or stderr at this size (default logs' own)
	LogKeep     int   // rotated files kept per stream (default logs' own)
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

// Spec is one task to run.
type Spec struct {
	TaskID  string
	AgentID string
	// Image is a registry reference ("nginx:1.27", "registry.local:5000/app@sha256:...") or the
	// name of an imported image. Empty: the task runs Cmd on the host's HostDirs, mounted
	// read-only, with a copy of /etc, a writable sandbox and a private /tmp.
	Image     string
	ForcePull bool     // pull even when the image is already here
	Cmd       string   // run as "sh -c Cmd" when set
	Args      []string // otherwise: these args after the image's entrypoint (or instead, without one)
	Env       map[string]string
	Labels    map[string]string
	CPUs      float64 // cgroup cpu shares (1024 per cpu) and quota
	MemMiB    float64 // hard memory limit
	Ports     []uint64
	// PortNames names Ports by index (Marathon's portDefinitions names), for PORT_<NAME>.
	PortNames []string
	Host      string // the agent's hostname, in HOST
	Volumes   []Volume
	// Privileged gives the container every capability and the host's devices, without the
	// default seccomp profile and masked paths (containerd's privileged spec).
	Privileged bool
	// User runs the task as this user (name, uid, name:group or uid:gid); empty: the image's
	// user if not root, else the executor's default user.
	User string
	// SecretFiles are written to a tmpfs, owned by the task's user with mode 0400, and mounted
	// read-only into the container; the host keeps no copy once the task starts (secrets.go).
	SecretFiles []SecretFile
}

// Volume bind-mounts a host directory (or file) into the container; a relative ContainerPath is
// inside the sandbox.
type Volume struct {
	ContainerPath string
	HostPath      string
	ReadOnly      bool
}

// Exit is how a task's process ended.
type Exit struct {
	Code      uint32
	OOMKilled bool
	At        time.Time
	// Vanished: the process and its status are gone (its shim died while the agent or
	// containerd was down); Code means nothing.
	Vanished bool
}

// Handle is a launched (or re-attached) task.
type Handle struct {
	ID      string
	Sandbox string // the task's own writable directory, owned by the user it runs as
	Logs    string // where its stdout and stderr are written, which the task cannot reach
	done    chan Exit
	exited  chan struct{} // closed when the process has ended
}

// Done delivers the task's Exit once, when its process ends.
func (h *Handle) Done() <-chan Exit { return h.done }

// running is what the executor holds for a task whose process has not been removed.
type running struct {
	task   ctrd.Task
	handle *Handle
	// detached: the wait for the process broke (containerd went away) and the executor has
	// not re-attached to it yet.
	detached bool
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
	if !filepath.IsAbs(cfg.LogBinary) {
		return nil, fmt.Errorf("containerd: the log binary %q must be an absolute path", cfg.LogBinary)
	}
	if _, err := os.Stat(cfg.LogBinary); err != nil {
		return nil, fmt.Errorf("containerd: log binary: %w", err)
	}
	if !filepath.IsAbs(cfg.SandboxRoot) {
		return nil, fmt.Errorf("containerd: the sandbox root %q must be an absolute path", cfg.SandboxRoot)
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
		hostRoot: cfg.SandboxRoot + "-hostroot", hostEtc: cfg.SandboxRoot + "-etc", logRoot: cfg.SandboxRoot + "-logs"}
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

// env is the environment a task sees: its own variables, then what Agora sets (ports, identity,
// HOME, a default PATH), which the task's own cannot override except PATH.
func (s Spec) env(sandbox string) []string {
	env := map[string]string{"PATH": DefaultPath}
	for k, v := range s.Env {
		env[k] = v
	}
	ports := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		ports[i] = strconv.FormatUint(p, 10)
		env["PORT"+strconv.Itoa(i)] = ports[i]
		if i < len(s.PortNames) && s.PortNames[i] != "" {
			env["PORT_"+strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(s.PortNames[i]))] = ports[i]
		}
	}
	if len(ports) > 0 {
		env["PORT"] = ports[0]
		env["PORTS"] = strings.Join(ports, ",")
	}
	env["HOST"] = s.Host
	env["HOME"] = sandbox
	env["MESOS_SANDBOX"] = sandbox
	env["AGORA_SANDBOX"] = sandbox
	env["AGORA_TASK_ID"] = s.TaskID
	env["AGORA_AGENT_ID"] = s.AgentID
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// ValidTaskID says whether id can name a container and a sandbox directory.
func ValidTaskID(taskID string) error {
	if err := id.TaskID(taskID).ValidateContainerName(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSpec, err)
	}
	return nil
}

// Launch starts the task and returns once its process runs. Its errors are meant for a person:
// a bad image name, a failed pull, a missing binary.
func (e *Executor) Launch(ctx context.Context, s Spec) (*Handle, error) {
	if err := ValidTaskID(s.TaskID); err != nil {
		return nil, err
	}
	if s.Image == "" && s.Cmd == "" && len(s.Args) == 0 {
		return nil, fmt.Errorf("%w: %s: a task without an image needs a command or args", ErrBadSpec, s.TaskID)
	}
	if err := checkSecretFiles(s); err != nil {
		return nil, err
	}
	ctx = e.ctx(ctx)
	sandbox, logDir := e.Sandbox(s.TaskID), e.LogDir(s.TaskID)
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return nil, fmt.Errorf("containerd: sandbox: %w", err)
	}
	if err := secretPlaceholders(sandbox, s.SecretFiles); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadSpec, s.TaskID, err)
	}
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, fmt.Errorf("containerd: logs: %w", err)
	}
	var opts []oci.SpecOpts
	var copts []ctrd.NewContainerOpts
	var imgUser string
	if s.Image != "" {
		img, err := e.EnsureImage(ctx, s.Image, s.ForcePull)
		if err != nil {
			return nil, err
		}
		if imgUser, err = imageUser(ctx, img); err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithImageConfig(img))
		switch {
		case s.Cmd != "":
			opts = append(opts, oci.WithProcessArgs("sh", "-c", s.Cmd))
		case len(s.Args) > 0:
			opts = append(opts, oci.WithImageConfigArgs(img, s.Args))
		}
		copts = append(copts, ctrd.WithImage(img), ctrd.WithNewSnapshot(s.TaskID, img))
	} else {
		// As Mesos's own containerizer without an image, but curated: the host's programs and
		// libraries read-only, a copy of its /etc without secrets, the sandbox and a fresh /tmp
		// writable; nothing else of the host. Cmd runs through sh -c; without it, Args are
		// the program and its arguments (Mesos's shell: false).
		argv := []string{"sh", "-c", s.Cmd}
		if s.Cmd == "" {
			argv = s.Args
		}
		opts = append(opts,
			oci.WithRootFSPath(e.hostRoot),
			oci.WithRootFSReadonly(),
			oci.WithProcessArgs(argv...),
			oci.WithMounts(e.hostMounts),
			oci.WithMounts([]specs.Mount{{Destination: "/tmp", Source: "tmpfs", Type: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}}}),
		)
	}
	network := oci.WithHostNamespace(specs.NetworkNamespace)
	if e.cfg.NetNS != "" {
		network = oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: e.cfg.NetNS})
	}
	opts = append(opts,
		network,
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithEnv(s.env(sandbox)),
		oci.WithMounts([]specs.Mount{{Destination: sandbox, Source: sandbox, Type: "bind", Options: []string{"rbind", "rw", "nosuid", "nodev"}}}),
		oci.WithProcessCwd(sandbox),
	)
	for _, v := range s.Volumes {
		if !filepath.IsAbs(v.HostPath) {
			return nil, fmt.Errorf("%w: %s: volume host path %q is not absolute", ErrBadSpec, s.TaskID, v.HostPath)
		}
		if _, err := os.Stat(v.HostPath); err != nil {
			return nil, fmt.Errorf("%w: %s: volume host path %s does not exist on this agent", ErrBadSpec, s.TaskID, v.HostPath)
		}
		dest := v.ContainerPath
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(sandbox, dest)
			if err := os.MkdirAll(dest, 0o755); err != nil {
				return nil, fmt.Errorf("containerd: volume in the sandbox: %w", err)
			}
		}
		mode := "rw"
		if v.ReadOnly {
			mode = "ro"
		}
		opts = append(opts, oci.WithMounts([]specs.Mount{{Destination: dest, Source: v.HostPath, Type: "bind", Options: []string{"rbind", mode, "nosuid", "nodev"}}}))
	}
	opts = append(opts, oci.WithMounts(e.secretMounts(s, sandbox)))
	if s.CPUs > 0 {
		shares := uint64(s.CPUs * 1024)
		period := uint64(100000)
		quota := int64(s.CPUs * float64(period))
		opts = append(opts, oci.WithCPUShares(shares), oci.WithCPUCFS(quota, period))
	}
	if s.MemMiB > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(s.MemMiB*1024*1024)))
	}
	// Who the process is, then what it may do: capabilities (none but root's defaults, all
	// when privileged), never new privileges (setuid binaries, file capabilities), and
	// containerd's default seccomp profile, which follows the capabilities.
	var who identity
	opts = append(opts, e.withUser(s, imgUser, &who), oci.WithNoNewPrivileges)
	if s.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	} else {
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	labels := map[string]string{"agora.task": s.TaskID, "agora.agent": s.AgentID}
	for k, v := range s.Labels {
		labels["agora.label."+k] = v
	}
	copts = append(copts, ctrd.WithNewSpec(opts...), ctrd.WithContainerLabels(labels))
	ctr, err := e.cfg.Client.NewContainer(ctx, s.TaskID, copts...)
	if err != nil {
		if errors.Is(err, ErrBadSpec) || errors.Is(err, ErrRootRefused) {
			return nil, err
		}
		if errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("%w: %s: a container of that id already exists", ErrBadSpec, s.TaskID)
		}
		return nil, fmt.Errorf("containerd: create %s: %w", s.TaskID, err)
	}
	fail := func(err error) (*Handle, error) {
		ctr.Delete(context.WithoutCancel(ctx), ctrd.WithSnapshotCleanup)
		return nil, err
	}
	// The sandbox is the task's own, and so is what was put there before (the artifacts the
	// agent fetched): its user may write there, nobody else may look in.
	if err := chownTree(sandbox, who); err != nil {
		return fail(fmt.Errorf("containerd: sandbox owner: %w", err))
	}
	if err := os.Chmod(sandbox, 0o750); err != nil {
		return fail(fmt.Errorf("containerd: sandbox mode: %w", err))
	}
	if len(s.SecretFiles) > 0 {
		if err := e.writeSecrets(s.TaskID, s.SecretFiles, who); err != nil {
			return fail(err)
		}
		// Whatever happens from here, the host keeps no copy of them.
		defer func() {
			if err := e.dropSecrets(s.TaskID); err != nil {
				e.logger.Error("remove a task's secret files", "task", s.TaskID, "err", err)
			}
		}()
	}
	// Watch for the kernel's OOM kills of this container from before it starts.
	oom := e.watchOOM(ctx, s.TaskID)
	logOpts := logs.Options{Dir: logDir, MaxBytes: e.cfg.LogMaxBytes, Keep: e.cfg.LogKeep}
	task, err := ctr.NewTask(ctx, cio.BinaryIO(e.cfg.LogBinary, map[string]string{LoggerCommand: logOpts.Encode()}))
	if err != nil {
		oom.cancel()
		return fail(startError(s.TaskID, err))
	}
	if len(s.SecretFiles) > 0 {
		// The container holds its own mounts of the secret files now: the host's go before
		// the process starts, so it only ever reads what is out of the host's reach.
		if err := e.dropSecrets(s.TaskID); err != nil {
			oom.cancel()
			task.Delete(context.WithoutCancel(ctx), ctrd.WithProcessKill)
			return fail(err)
		}
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		oom.cancel()
		task.Delete(context.WithoutCancel(ctx), ctrd.WithProcessKill)
		return fail(fmt.Errorf("containerd: wait %s: %w", s.TaskID, err))
	}
	if err := task.Start(ctx); err != nil {
		oom.cancel()
		task.Delete(context.WithoutCancel(ctx), ctrd.WithProcessKill)
		return fail(startError(s.TaskID, err))
	}
	return e.track(ctx, s.TaskID, task, exitCh, oom), nil
}

// chownTree gives a new sandbox and everything in it to the task's user; links are not
// followed (their own owner changes). Nothing of the task runs yet, so nothing in it moves.
func chownTree(sandbox string, who identity) error {
	return filepath.WalkDir(sandbox, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(who.UID), int(who.GID))
	})
}

// track registers a running task and waits for its end in the background, until ctx ends.
func (e *Executor) track(ctx context.Context, id string, task ctrd.Task, exitCh <-chan ctrd.ExitStatus, oom *oomWatch) *Handle {
	h := &Handle{ID: id, Sandbox: e.Sandbox(id), Logs: e.LogDir(id), done: make(chan Exit, 1), exited: make(chan struct{})}
	e.mu.Lock()
	e.tasks[id] = &running{task: task, handle: h}
	e.mu.Unlock()
	go e.await(ctx, h, exitCh, oom)
	return h
}

// startError is a failed start of a task's process: what a person can act on, or, when
// containerd went away meanwhile, that (Unavailable tells it).
func startError(id string, err error) error {
	if Unavailable(err) {
		return fmt.Errorf("containerd: start %s: %w", id, err)
	}
	return fmt.Errorf("containerd: start %s: %s", id, explain(err))
}

// explain turns the runtime's long error chains into what a person can act on.
func explain(err error) string {
	msg := err.Error()
	for _, hint := range []struct{ has, say string }{
		{"executable file not found", "the command is not in the container's PATH"},
		{"no such file or directory", "the command or a path it needs does not exist in the container"},
		{"permission denied", "permission denied starting the command"},
	} {
		if strings.Contains(msg, hint.has) {
			// runc's own words are kept after ours: they name the binary.
			if i := strings.LastIndex(msg, "exec:"); i >= 0 {
				return hint.say + ": " + strings.TrimSuffix(strings.TrimSpace(msg[i:]), ": unknown")
			}
			return hint.say + ": " + msg
		}
	}
	return msg
}

// watchOOM reports on the returned channel once containerd says the kernel OOM-killed a process
// of the container; the watch ends when cancelled or after the first event.
func (e *Executor) watchOOM(ctx context.Context, id string) *oomWatch {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &oomWatch{cancel: cancel, hit: make(chan struct{})}
	events, errs := e.cfg.Client.Subscribe(wctx, `topic=="/tasks/oom"`)
	go func() {
		for {
			select {
			case ev := <-events:
				if ev == nil || ev.Event == nil {
					continue
				}
				var oom eventtypes.TaskOOM
				if err := typeurl.UnmarshalTo(ev.Event, &oom); err == nil && oom.ContainerID == id && ev.Namespace == e.cfg.Namespace {
					close(w.hit)
					return
				}
			case <-errs:
				return
			case <-wctx.Done():
				return
			}
		}
	}()
	return w
}

type oomWatch struct {
	cancel context.CancelFunc
	hit    chan struct{}
}

// await waits for the process and reports its exit. The container stays for Remove.
//
// A wait that breaks is not an exit: containerd stopped or restarted, and the process runs on
// under its shim. The task is then detached until containerd answers again; await re-attaches
// (loads the task, waits anew, watches for OOM kills again) and goes on waiting, so that Done
// only ever delivers the real end: the exit status containerd kept if the process ended
// meanwhile, or Vanished when containerd has no such container or task any more. When ctx ends
// (the agent stops) it delivers nothing: the next agent re-attaches.
func (e *Executor) await(ctx context.Context, h *Handle, exitCh <-chan ctrd.ExitStatus, oom *oomWatch) {
	for {
		st := <-exitCh
		code, at, err := st.Result()
		if err == nil {
			e.exited(h, Exit{Code: code, At: at}, oom)
			return
		}
		oom.cancel()
		if ctx.Err() != nil {
			return
		}
		e.setDetached(h.ID, true)
		e.logger.Warn("lost the wait for a task (containerd unavailable?); re-attaching when containerd answers", "task", h.ID, "err", err)
		var gone *Exit
		exitCh, oom, gone = e.rewait(ctx, h.ID)
		if ctx.Err() != nil {
			return
		}
		e.setDetached(h.ID, false)
		if gone != nil {
			e.logger.Warn("re-attached: the task's container is gone", "task", h.ID)
			close(h.exited)
			h.done <- *gone
			return
		}
		e.logger.Info("re-attached to a task after containerd came back", "task", h.ID)
	}
}

// exited reports a process's end on its handle.
func (e *Executor) exited(h *Handle, exit Exit, oom *oomWatch) {
	close(h.exited)
	// A SIGKILL may be the kernel's OOM killer; its event may trail the exit by a moment.
	var grace <-chan time.Time
	if exit.Code == 128+uint32(syscall.SIGKILL) {
		grace = time.After(500 * time.Millisecond)
	} else {
		grace = time.After(0)
	}
	select {
	case <-oom.hit:
		exit.OOMKilled = true
	case <-grace:
	}
	oom.cancel()
	h.done <- exit
}

// rewait re-attaches to a task whose wait broke, trying until containerd answers or ctx ends:
// a new wait (which answers at once with the exit status of a process that ended meanwhile)
// and a new OOM watch; or, when containerd has no such container or task any more, a Vanished
// exit.
func (e *Executor) rewait(ctx context.Context, id string) (<-chan ctrd.ExitStatus, *oomWatch, *Exit) {
	cctx := e.ctx(ctx)
	delay := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil, nil, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
		e.mu.Lock()
		_, held := e.tasks[id]
		e.mu.Unlock()
		if !held {
			return nil, nil, &Exit{Vanished: true, At: time.Now()} // removed meanwhile: nobody waits
		}
		ctr, err := e.cfg.Client.LoadContainer(cctx, id)
		if errdefs.IsNotFound(err) {
			return nil, nil, &Exit{Vanished: true, At: time.Now()}
		}
		if err != nil {
			continue // not back yet
		}
		task, err := ctr.Task(cctx, nil)
		if errdefs.IsNotFound(err) {
			return nil, nil, &Exit{Vanished: true, At: time.Now()}
		}
		if err != nil {
			continue
		}
		oom := e.watchOOM(cctx, id)
		exitCh, err := task.Wait(cctx)
		if err != nil {
			oom.cancel()
			continue
		}
		e.mu.Lock()
		if r, ok := e.tasks[id]; ok {
			r.task = task
		}
		e.mu.Unlock()
		return exitCh, oom, nil
	}
}

func (e *Executor) setDetached(id string, on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.tasks[id]; ok {
		r.detached = on
	}
}

// ErrUnavailable: containerd does not answer, or the executor has not re-attached to every task
// since it came back. Nothing can be launched meanwhile; what runs keeps running.
var ErrUnavailable = errors.New("containerd: unavailable")

// Available says whether the executor can run tasks: nil when containerd answers and the
// executor is attached to every task it holds; otherwise an ErrUnavailable saying why.
func (e *Executor) Available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := e.cfg.Client.Version(ctx); err != nil {
		return fmt.Errorf("%w: it does not answer: %s", ErrUnavailable, briefly(err))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var detached []string
	for id, r := range e.tasks {
		if r.detached {
			detached = append(detached, id)
		}
	}
	if len(detached) > 0 {
		sort.Strings(detached)
		return fmt.Errorf("%w: re-attaching to %d tasks after it came back (%s)", ErrUnavailable, len(detached), strings.Join(detached[:min(3, len(detached))], ", "))
	}
	return nil
}

// Unavailable says whether err means containerd could not be reached (it stopped, restarts,
// or its socket is gone), rather than that it refused or failed what was asked.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(err, ErrUnavailable) || errdefs.IsUnavailable(err) || errdefs.IsUnavailable(errdefs.FromGRPC(err))
}

// briefly is a gRPC error without its nested "rpc error: code = ... desc =" wrappings.
func briefly(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	return strings.Trim(msg, `"`)
}

// Remove deletes a task's ended process and its container (and the container's snapshot); the
// sandbox stays. Removing what is not there is not an error.
func (e *Executor) Remove(ctx context.Context, id string) error {
	ctx = e.ctx(ctx)
	e.mu.Lock()
	delete(e.tasks, id)
	e.mu.Unlock()
	ctr, err := e.cfg.Client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
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
	if err := ctr.Delete(ctx, ctrd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: remove %s: %w", id, err)
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
