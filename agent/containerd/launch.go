package containerd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/pkg/id"
	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Launch: a task's spec checked, its sandbox made, its container's OCI spec built (its root,
// process, mounts, limits and user), the container created, the sandbox given to the task's user,
// its secret files written, and its process started (doc.go, step 3).

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
	// Own gives HostPath itself (not what it holds) to the task's user, once the container is
	// made: a persistent volume's root, to the first task that uses it.
	Own bool
}

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
//
// In steps: the spec checked (checkSpec), the sandbox and the log dir made (makeDirs), the
// container's OCI spec built (specOpts) and the container created (createContainer), the
// sandbox (ownSandbox) and the volumes marked Own given to the task's user, its secret files
// written, and its process started and watched (start). When a step fails after the container was made, the container
// goes; the host's copies of the secret files go whatever happens.
func (e *Executor) Launch(ctx context.Context, s Spec) (*Handle, error) {
	if err := checkSpec(s); err != nil {
		return nil, err
	}
	ctx = e.ctx(ctx)
	sandbox, logDir, err := e.makeDirs(s)
	if err != nil {
		return nil, err
	}
	var who identity // whom the process runs as: set when the container's spec is made
	opts, copts, err := e.specOpts(ctx, s, sandbox, &who)
	if err != nil {
		return nil, err
	}
	ctr, err := e.createContainer(ctx, s, opts, copts)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Handle, error) {
		ctr.Delete(context.WithoutCancel(ctx), ctrd.WithSnapshotCleanup)
		return nil, err
	}
	if err := ownSandbox(sandbox, who); err != nil {
		return fail(err)
	}
	for _, v := range s.Volumes {
		if v.Own {
			if err := os.Lchown(v.HostPath, int(who.UID), int(who.GID)); err != nil {
				return fail(fmt.Errorf("containerd: give volume %s to the task's user: %w", v.HostPath, err))
			}
		}
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
	h, err := e.start(ctx, s, ctr, logDir)
	if err != nil {
		return fail(err)
	}
	return h, nil
}

// checkSpec refuses a task that cannot be launched as described, before anything is made.
func checkSpec(s Spec) error {
	if err := ValidTaskID(s.TaskID); err != nil {
		return err
	}
	if s.Image == "" && s.Cmd == "" && len(s.Args) == 0 {
		return fmt.Errorf("%w: %s: a task without an image needs a command or args", ErrBadSpec, s.TaskID)
	}
	return checkSecretFiles(s)
}

// makeDirs makes the task's sandbox, with a placeholder for each of its secret files, and its
// log dir.
func (e *Executor) makeDirs(s Spec) (sandbox, logDir string, err error) {
	sandbox, logDir = e.Sandbox(s.TaskID), e.LogDir(s.TaskID)
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return "", "", fmt.Errorf("containerd: sandbox: %w", err)
	}
	if err := secretPlaceholders(sandbox, s.SecretFiles); err != nil {
		return "", "", fmt.Errorf("%w: %s: %v", ErrBadSpec, s.TaskID, err)
	}
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return "", "", fmt.Errorf("containerd: logs: %w", err)
	}
	return sandbox, logDir, nil
}

// specOpts are the container's OCI spec, in an order that matters (what comes later changes what
// came before): its root and process (rootOpts), its network, environment and sandbox
// (processOpts), its volumes (volumeOpts) and secret files, its cgroup limits (limitOpts), and
// whom it runs as and what it may do (securityOpts: *who is set when the spec is made). With
// them come the container's own options (its image and snapshot).
func (e *Executor) specOpts(ctx context.Context, s Spec, sandbox string, who *identity) ([]oci.SpecOpts, []ctrd.NewContainerOpts, error) {
	opts, copts, imgUser, err := e.rootOpts(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, e.processOpts(s, sandbox)...)
	vols, err := volumeOpts(s, sandbox)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, vols...)
	opts = append(opts, oci.WithMounts(e.secretMounts(s, sandbox)))
	opts = append(opts, limitOpts(s)...)
	opts = append(opts, e.securityOpts(s, imgUser, who)...)
	return opts, copts, nil
}

// rootOpts are the task's root and process: its image's (got if need be), running Cmd through
// sh -c or Args after the image's entrypoint; or, without an image, the curated view of the
// host. With them come the image's user ("" without an image) and the container's options.
func (e *Executor) rootOpts(ctx context.Context, s Spec) ([]oci.SpecOpts, []ctrd.NewContainerOpts, string, error) {
	var opts []oci.SpecOpts
	var copts []ctrd.NewContainerOpts
	var imgUser string
	if s.Image != "" {
		img, err := e.EnsureImage(ctx, s.Image, s.ForcePull)
		if err != nil {
			return nil, nil, "", err
		}
		if imgUser, err = imageUser(ctx, img); err != nil {
			return nil, nil, "", err
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
	return opts, copts, imgUser, nil
}

// processOpts put the task on its network (the host's, or the namespace NetNS names) with the
// host's hosts and resolv.conf files, and give it its environment, and its sandbox, writable,
// as its working directory.
func (e *Executor) processOpts(s Spec, sandbox string) []oci.SpecOpts {
	network := oci.WithHostNamespace(specs.NetworkNamespace)
	if e.cfg.NetNS != "" {
		network = oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: e.cfg.NetNS})
	}
	return []oci.SpecOpts{
		network,
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithEnv(s.env(sandbox)),
		oci.WithMounts([]specs.Mount{{Destination: sandbox, Source: sandbox, Type: "bind", Options: []string{"rbind", "rw", "nosuid", "nodev"}}}),
		oci.WithProcessCwd(sandbox),
	}
}

// volumeOpts bind-mount the task's volumes, each host path checked; a relative container path
// is made in the sandbox.
func volumeOpts(s Spec, sandbox string) ([]oci.SpecOpts, error) {
	var opts []oci.SpecOpts
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
	return opts, nil
}

// The kernel's least cpu.shares and CFS quota (Mesos's containerizer holds tasks to the same):
// a task of 0.005 cpus would get a quota of 500 µs, which the kernel refuses, and never start.
const (
	minCPUShares    = 2
	minCFSQuotaUs   = 1000
	cfsPeriodUs     = 100000
	cpuSharesPerCPU = 1024
)

// limitOpts are the task's cgroup limits: cpu shares (1024 per cpu) and a CFS quota from its
// cpus, no lower than the kernel takes; a hard memory limit from its mem.
func limitOpts(s Spec) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if s.CPUs > 0 {
		shares := max(uint64(s.CPUs*cpuSharesPerCPU), minCPUShares)
		quota := max(int64(s.CPUs*cfsPeriodUs), minCFSQuotaUs)
		opts = append(opts, oci.WithCPUShares(shares), oci.WithCPUCFS(quota, cfsPeriodUs))
	}
	if s.MemMiB > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(s.MemMiB*1024*1024)))
	}
	return opts
}

// securityOpts say who the process is (withUser, which sets *who), then what it may do:
// capabilities (none but root's defaults, all when privileged), never new privileges (setuid
// binaries, file capabilities), and containerd's default seccomp profile, which follows the
// capabilities.
func (e *Executor) securityOpts(s Spec, imgUser string, who *identity) []oci.SpecOpts {
	opts := []oci.SpecOpts{e.withUser(s, imgUser, who), oci.WithNoNewPrivileges}
	if s.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	} else {
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	return opts
}

// createContainer creates the task's container from its spec, labelled with the task's and the
// agent's ids and the task's own labels (agora.label.*). A spec that cannot be made (a user not
// found, root refused) and a container of the same id are the task's errors (ErrBadSpec).
func (e *Executor) createContainer(ctx context.Context, s Spec, opts []oci.SpecOpts, copts []ctrd.NewContainerOpts) (ctrd.Container, error) {
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
	return ctr, nil
}

// ownSandbox gives the sandbox to the task's user, and so what was put there before (the
// artifacts the agent fetched): its user may write there, nobody else may look in.
func ownSandbox(sandbox string, who identity) error {
	if err := chownTree(sandbox, who); err != nil {
		return fmt.Errorf("containerd: sandbox owner: %w", err)
	}
	if err := os.Chmod(sandbox, 0o750); err != nil {
		return fmt.Errorf("containerd: sandbox mode: %w", err)
	}
	return nil
}

// start creates the container's process, its stdout and stderr going to the task's spools
// (SpoolIO: the shim writes them, the pump copies them into the rotated files) and watched for
// OOM kills from before it starts, removes the host's copies of its secret files, then starts
// it and tracks it. When it fails, what it made is gone, but for the container, which is the
// caller's.
func (e *Executor) start(ctx context.Context, s Spec, ctr ctrd.Container, logDir string) (_ *Handle, err error) {
	if err := logs.MakeSpools(logDir); err != nil {
		return nil, fmt.Errorf("containerd: logs of %s: %w", s.TaskID, err)
	}
	// Watch for the kernel's OOM kills of this container from before it starts.
	oom := e.watchOOM(ctx, s.TaskID)
	var task ctrd.Task
	defer func() {
		if err == nil {
			return
		}
		oom.cancel()
		cleanup := context.WithoutCancel(ctx)
		if task != nil {
			task.Delete(cleanup, ctrd.WithProcessKill)
		}
		// What runc said, if anything, goes to the logs; the spools go.
		if derr := e.pump.Drain(cleanup, logDir); derr != nil {
			e.logger.Warn("the spools of a task that did not start", "task", s.TaskID, "err", derr)
		}
	}()
	task, err = ctr.NewTask(ctx, SpoolIO(logDir))
	if err != nil {
		return nil, startError(s.TaskID, err)
	}
	if len(s.SecretFiles) > 0 {
		// The container holds its own mounts of the secret files now: the host's go before
		// the process starts, so it only ever reads what is out of the host's reach.
		if err := e.dropSecrets(s.TaskID); err != nil {
			return nil, err
		}
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("containerd: wait %s: %w", s.TaskID, err)
	}
	if err := task.Start(ctx); err != nil {
		return nil, startError(s.TaskID, err)
	}
	return e.track(ctx, s.TaskID, task, exitCh, oom), nil
}

// SpoolIO has containerd's shim write a task's stdout and stderr into the spools of its log
// dir (logs.MakeSpools made them). Their paths are plain paths to regular files, which the runc
// shim opens for appending and copies the container's pipes into itself: no FIFO, no process
// of Agora's, and (no stdin path) no stdin. Nothing is left to cancel, wait for or close here:
// the shim owns the copying.
func SpoolIO(logDir string) cio.Creator {
	return func(string) (cio.IO, error) {
		return spoolIO{cio.Config{Stdout: logs.SpoolPath(logDir, "stdout"), Stderr: logs.SpoolPath(logDir, "stderr")}}, nil
	}
}

type spoolIO struct{ cfg cio.Config }

func (s spoolIO) Config() cio.Config { return s.cfg }
func (spoolIO) Cancel()              {}
func (spoolIO) Wait()                {}
func (spoolIO) Close() error         { return nil }

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
