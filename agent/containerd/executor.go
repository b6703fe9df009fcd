// Package containerd runs an agent's tasks as containerd containers, in a containerd namespace
// of their own ("agora"). It is the agent's executor: it launches, waits and kills; the agent
// decides what to run and keeps the books.
//
// Use:
//
//  1. New(Config{Client, Namespace, SandboxRoot}) makes an executor.
//  2. Launch(ctx, Spec) creates the container (image, args, env with PORT0.. and the task's
//     identity, cgroup limits from cpus and mem), starts it with stdout and stderr going to
//     files in the task's sandbox, and returns once the process runs.
//  3. The returned Handle's Done channel delivers the Exit: status code, and whether the
//     kernel killed it for memory.
//  4. Kill sends SIGTERM, waits the grace period, then SIGKILL.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	ctrd "github.com/containerd/containerd"
	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
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

// Config configures an Executor.
type Config struct {
	Client      *ctrd.Client
	Namespace   string // default DefaultNamespace
	SandboxRoot string // each task's sandbox is SandboxRoot/<task id>
	Logger      *slog.Logger
}

// Spec is one task to run.
type Spec struct {
	TaskID  string
	AgentID string
	Image   string   // an image already in containerd (pulled or imported)
	Cmd     string   // run as "sh -c Cmd" when set
	Args    []string // otherwise: these args after the image's entrypoint (or instead, without one)
	Env     map[string]string
	Labels  map[string]string
	CPUs    float64 // cgroup cpu shares (1024 per cpu) and quota
	MemMiB  float64 // hard memory limit
	Ports   []uint64
	// PortNames names Ports by index (Marathon's portDefinitions names), for PORT_<NAME>.
	PortNames []string
	Host      string // the agent's hostname, in HOST
}

// Exit is how a task's process ended.
type Exit struct {
	Code      uint32
	OOMKilled bool
	At        time.Time
}

// Handle is a launched task.
type Handle struct {
	ID      string
	Sandbox string
	done    chan Exit
}

// Done delivers the task's Exit once, when its process ends.
func (h *Handle) Done() <-chan Exit { return h.done }

// Executor launches and kills tasks.
type Executor struct {
	cfg    Config
	logger *slog.Logger

	mu    sync.Mutex // guards tasks
	tasks map[string]ctrd.Task
}

// New makes an executor.
func New(cfg Config) *Executor {
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Executor{cfg: cfg, logger: cfg.Logger, tasks: map[string]ctrd.Task{}}
}

func (e *Executor) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, e.cfg.Namespace)
}

// Env is the environment a task sees: its own variables, then what Agora sets (ports, identity,
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

// ErrBadSpec: the task cannot be launched as described.
var ErrBadSpec = errors.New("containerd: bad task")

// Launch starts the task and returns once its process runs.
func (e *Executor) Launch(ctx context.Context, s Spec) (*Handle, error) {
	if s.TaskID == "" || strings.ContainsAny(s.TaskID, "/ ") {
		return nil, fmt.Errorf("%w: task id %q", ErrBadSpec, s.TaskID)
	}
	if s.Image == "" {
		return nil, fmt.Errorf("%w: %s: no image (the host-rootfs mode is not built yet)", ErrBadSpec, s.TaskID)
	}
	ctx = e.ctx(ctx)
	img, err := e.cfg.Client.GetImage(ctx, s.Image)
	if err != nil {
		return nil, fmt.Errorf("containerd: image %s is not on this agent (pull or import it first): %w", s.Image, err)
	}
	sandbox := filepath.Join(e.cfg.SandboxRoot, s.TaskID)
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return nil, fmt.Errorf("containerd: sandbox: %w", err)
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithHostNamespace(specs.NetworkNamespace),
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithEnv(s.env(sandbox)),
		oci.WithMounts([]specs.Mount{{Destination: sandbox, Source: sandbox, Type: "bind", Options: []string{"rbind", "rw"}}}),
		oci.WithProcessCwd(sandbox),
	}
	switch {
	case s.Cmd != "":
		opts = append(opts, oci.WithProcessArgs("sh", "-c", s.Cmd))
	case len(s.Args) > 0:
		opts = append(opts, oci.WithImageConfigArgs(img, s.Args))
	}
	if s.CPUs > 0 {
		shares := uint64(s.CPUs * 1024)
		period := uint64(100000)
		quota := int64(s.CPUs * float64(period))
		opts = append(opts, oci.WithCPUShares(shares), oci.WithCPUCFS(quota, period))
	}
	if s.MemMiB > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(s.MemMiB*1024*1024)))
	}
	labels := map[string]string{"agora.task": s.TaskID, "agora.agent": s.AgentID}
	for k, v := range s.Labels {
		labels["agora.label."+k] = v
	}
	ctr, err := e.cfg.Client.NewContainer(ctx, s.TaskID,
		ctrd.WithImage(img),
		ctrd.WithNewSnapshot(s.TaskID, img),
		ctrd.WithNewSpec(opts...),
		ctrd.WithContainerLabels(labels),
	)
	if err != nil {
		return nil, fmt.Errorf("containerd: create %s: %w", s.TaskID, err)
	}
	stdout, err := os.OpenFile(filepath.Join(sandbox, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		ctr.Delete(ctx, ctrd.WithSnapshotCleanup)
		return nil, fmt.Errorf("containerd: sandbox: %w", err)
	}
	stderr, err := os.OpenFile(filepath.Join(sandbox, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stdout.Close()
		ctr.Delete(ctx, ctrd.WithSnapshotCleanup)
		return nil, fmt.Errorf("containerd: sandbox: %w", err)
	}
	// Watch for the kernel's OOM kills of this container from before it starts.
	oom := e.watchOOM(ctx, s.TaskID)
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, stdout, stderr)))
	if err != nil {
		stdout.Close()
		stderr.Close()
		ctr.Delete(ctx, ctrd.WithSnapshotCleanup)
		return nil, fmt.Errorf("containerd: start %s: %w", s.TaskID, err)
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		task.Delete(ctx, ctrd.WithProcessKill)
		ctr.Delete(ctx, ctrd.WithSnapshotCleanup)
		return nil, fmt.Errorf("containerd: wait %s: %w", s.TaskID, err)
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(ctx, ctrd.WithProcessKill)
		ctr.Delete(ctx, ctrd.WithSnapshotCleanup)
		return nil, fmt.Errorf("containerd: start %s: %w", s.TaskID, err)
	}
	e.mu.Lock()
	e.tasks[s.TaskID] = task
	e.mu.Unlock()
	h := &Handle{ID: s.TaskID, Sandbox: sandbox, done: make(chan Exit, 1)}
	go func() {
		e.await(context.WithoutCancel(ctx), h, ctr, task, exitCh, oom)
		stdout.Close()
		stderr.Close()
	}()
	return h, nil
}

// watchOOM reports on the returned channel once containerd says the kernel OOM-killed a process
// of the container; the watch ends when ctx does or after the first event.
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
				if err := typeurl.UnmarshalTo(ev.Event, &oom); err == nil && oom.ContainerID == id {
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

// await waits for the process, then cleans up the container and reports the exit.
func (e *Executor) await(ctx context.Context, h *Handle, ctr ctrd.Container, task ctrd.Task, exitCh <-chan ctrd.ExitStatus, oom *oomWatch) {
	st := <-exitCh
	code, at, _ := st.Result()
	exit := Exit{Code: code, At: at}
	// A SIGKILL may be the kernel's OOM killer; its event may trail the exit by a moment.
	var grace <-chan time.Time
	if code == 128+uint32(syscall.SIGKILL) {
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
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		e.logger.Warn("delete task", "task", h.ID, "err", err)
	}
	if err := ctr.Delete(ctx, ctrd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		e.logger.Warn("delete container", "task", h.ID, "err", err)
	}
	e.mu.Lock()
	delete(e.tasks, h.ID)
	e.mu.Unlock()
	h.done <- exit
}

// Kill stops a task: SIGTERM, then SIGKILL if it still runs after grace.
func (e *Executor) Kill(ctx context.Context, id string, grace time.Duration) error {
	e.mu.Lock()
	task, ok := e.tasks[id]
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("containerd: no running task %q", id)
	}
	ctx = e.ctx(ctx)
	if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: SIGTERM %s: %w", id, err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			st, err := task.Status(ctx)
			if err != nil || st.Status == ctrd.Stopped {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("containerd: SIGKILL %s: %w", id, err)
	}
	return nil
}
