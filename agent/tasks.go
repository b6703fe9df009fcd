package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/statusupdate"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// A task's life on the agent. Every arrow is one call of transitionLocked: the record and the
// status update are checkpointed together, then the update is sent.
//
//	launch ──► STARTING ──► RUNNING ──(exit 0)──────────► FINISHED
//	   │           │           │ ├───(exit ≠ 0, OOM)─────► FAILED
//	   │           │           │ └───(health: too many     KILLED (healthy=false)
//	   │           │           │      failures) ─► KILLING ─► KILLED
//	   │           │           └─(kill)──────────► KILLING ─► KILLED
//	   │           └─(image, binary, start fails)──────────► FAILED
//	   └─(does not fit, bad request)──────────────────────► ERROR
//
// While RUNNING, a change of health is sent as another RUNNING update carrying healthy.

// Executor is what the agent needs of a container runtime; agent/containerd's Executor is it.
type Executor interface {
	Launch(ctx context.Context, s containerd.Spec) (*containerd.Handle, error)
	Kill(ctx context.Context, id string, grace time.Duration) error
	Remove(ctx context.Context, id string) error
	Recover(ctx context.Context, known []string) ([]containerd.Recovered, []string, error)
	Exec(ctx context.Context, id string, argv []string) (int, []byte, error)
	Stats(ctx context.Context, id string) (containerd.Stats, error)
	Sandbox(id string) string
	LogDir(id string) string
}

// Errors of the task API.
var (
	ErrDuplicateTask = errors.New("agent: a task of that id exists")
	ErrNoSuchTask    = errors.New("agent: no such task")
	ErrNotRegistered = errors.New("agent: not registered with a master yet")
	ErrTaskEnded     = errors.New("agent: the task has ended")
	// ErrUnavailable: the container runtime cannot run tasks now (containerd does not answer);
	// the agent takes no launch until it can, and what runs keeps running.
	ErrUnavailable = errors.New("agent: not taking tasks while its container runtime is unavailable")
)

// record is what the agent keeps of one task, checkpointed as JSON.
type record struct {
	Info      api.TaskInfo   `json:"info"`
	Status    api.TaskStatus `json:"status"` // the latest
	Killing   bool           `json:"killing,omitempty"`
	KillGrace float64        `json:"kill_grace_seconds,omitempty"` // of the kill asked for
	// HealthKill says why health checks killed the task.
	HealthKill string `json:"health_kill,omitempty"`
	// Exit is how the process ended, kept from when it ended until the end is reported.
	Exit      *containerd.Exit `json:"exit,omitempty"`
	StartedAt *time.Time       `json:"started_at,omitempty"`
}

// keepEnded is how many ended tasks the agent still lists once their updates are acknowledged
// (the checkpoint keeps none of them). Of the launches that failed (tasks that ended before
// they ran, other than FINISHED or KILLED) it lists only the latest per framework and task
// name: an app whose every launch fails here leaves one task, not one per attempt.
const keepEnded = 100

// launchKey names the launches that take one another's place in the list when they fail: a
// framework's tasks of one name (an app's instances, a job's runs).
type launchKey struct{ fwID, name string }

// failedLaunch says whether an ended task never ran, for a reason other than its own success
// or a kill: its launch failed (the image, the binary, what is free, the runtime).
func (r *record) failedLaunch() bool {
	st := r.Status.State
	return st.IsTerminal() && r.StartedAt == nil && st != task.Finished && st != task.Killed && r.Info.Name != ""
}

// taskSet runs the agent's tasks: it launches through the executor, watches exits and health,
// checkpoints every state change with its status update, and re-attaches after a restart.
type taskSet struct {
	taskSetConfig

	ctx context.Context // the agent's lifetime: launches and watches end with it
	wg  sync.WaitGroup  // launches and watches in flight

	mu      sync.Mutex // guards the fields below
	tasks   map[string]*record
	handles map[string]*containerd.Handle
	health  map[string]*healthState
	ended   []string // ids of ended, acknowledged tasks kept for listing, oldest first
	// failedLaunch is the id of the latest failed launch listed, per framework and task name.
	failedLaunch map[launchKey]string
	// unavailable says why the container runtime cannot run tasks now ("" when it can): no
	// launch is taken, health checks pause, and no task's end is guessed meanwhile.
	unavailable string
	refused     int // launches refused while the runtime was unavailable
	// fetching cancels the fetching of a task's artifacts, by task id, when it is killed.
	fetching map[string]context.CancelFunc
}

type healthState struct {
	cancel  context.CancelFunc
	healthy []*bool // per check; nil until known
}

// taskSetConfig is what a taskSet is made of.
type taskSetConfig struct {
	exec    Executor
	store   *checkpoint.Store
	updates *statusupdate.Manager
	total   resources.Resources
	host    string
	agentID func() string
	clock   clock.Clock
	logger  *slog.Logger
	ids     *id.Generator
	// observeStart, when set, learns how long each launched task took from its launch request
	// to TASK_RUNNING.
	observeStart func(time.Duration)
	// allowPrivileged lets tasks ask for privileged containers, allowRoot run as root.
	allowPrivileged, allowRoot bool
	// volumes are the host volumes tasks may mount.
	volumes []hostaccess.Volume
	// fetcher downloads tasks' artifacts into their sandboxes; nil: a task with artifacts fails.
	fetcher Fetcher
}

// Fetcher is what the agent needs to fetch artifacts; agent/fetcher's Fetcher is it.
type Fetcher interface {
	Fetch(ctx context.Context, sandbox string, as []api.Artifact) error
}

func newTaskSet(ctx context.Context, c taskSetConfig) *taskSet {
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	return &taskSet{
		taskSetConfig: c, ctx: ctx,
		tasks: map[string]*record{}, handles: map[string]*containerd.Handle{}, health: map[string]*healthState{},
		failedLaunch: map[launchKey]string{}, fetching: map[string]context.CancelFunc{},
	}
}

func (ts *taskSet) saveLocked(r *record) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("agent: checkpoint task: %w", err)
	}
	return b, nil
}

// transitionLocked moves a task to a new state (or, for RUNNING → RUNNING, a new health) and
// checkpoints the record with the update before the update goes out.
func (ts *taskSet) transitionLocked(r *record, st api.TaskStatus) error {
	prev := r.Status.State
	if prev != "" && prev != st.State && !task.CanTransition(prev, st.State) {
		return fmt.Errorf("agent: task %s: %s → %s is not a transition", r.Info.TaskID, prev, st.State)
	}
	st.TaskID = r.Info.TaskID
	st.FrameworkID = r.Info.FrameworkID
	st.AgentID = ts.agentID()
	u, err := ts.ids.UUID()
	if err != nil {
		return err
	}
	st.UUID = u
	st.Timestamp = ts.clock.Now().UTC()
	if st.Source == "" {
		st.Source = task.SourceAgent
	}
	if st.Healthy == nil && st.State == task.Running {
		st.Healthy = r.Status.Healthy
	}
	prevStatus := r.Status
	r.Status = st
	data, err := ts.saveLocked(r)
	if err == nil {
		err = ts.updates.UpdateTask(st, data)
	}
	if err != nil {
		// Not checkpointed, so not sent: the task keeps its old state here too.
		r.Status = prevStatus
		ts.logger.Error("checkpoint a task's state change", "task", r.Info.TaskID, "state", st.State, "err", err)
		return fmt.Errorf("agent: checkpoint task %s: %w", r.Info.TaskID, err)
	}
	ts.logger.Info("task", "task", r.Info.TaskID, "state", st.State, "reason", st.Reason, "message", st.Message)
	if r.failedLaunch() {
		// The failed launch it follows leaves the list now, not once this one is acknowledged:
		// no more of an app's failed launches are listed than it has launches under way.
		ts.forgetFailedLaunchLocked(launchKey{r.Info.FrameworkID, r.Info.Name}, r.Info.TaskID)
	}
	return nil
}

// allocatedLocked is the sum of what the agent's unended tasks hold.
func (ts *taskSet) allocatedLocked() resources.Resources {
	var sum resources.Resources
	for _, r := range ts.tasks {
		if !r.Status.State.IsTerminal() {
			sum = sum.Add(r.Info.Resources)
		}
	}
	return sum
}

// validate checks a launch request's own fields; errors name the field.
func validateTaskInfo(info api.TaskInfo) error {
	if err := containerd.ValidTaskID(info.TaskID); err != nil {
		return &api.FieldError{Field: "task_id", Msg: "must be 1 to 200 letters, digits, '-', '_' or '.'"}
	}
	if err := info.Resources.Validate(); err != nil {
		return &api.FieldError{Field: "resources", Msg: err.Error()}
	}
	if info.Image == "" && info.Cmd == "" && len(info.Args) == 0 {
		return &api.FieldError{Field: "cmd", Msg: "a task without an image needs a command or args (the program and its arguments)"}
	}
	if info.Image != "" {
		if _, err := containerd.NormalizeImage(info.Image); err != nil {
			return &api.FieldError{Field: "image", Msg: fmt.Sprintf("%q is not an image reference", info.Image)}
		}
	}
	if info.KillGracePeriodSeconds < 0 {
		return &api.FieldError{Field: "kill_grace_period_seconds", Msg: "must not be negative"}
	}
	for i, v := range info.Volumes {
		switch {
		case v.ContainerPath == "" || strings.Contains(v.ContainerPath, ".."):
			return &api.FieldError{Field: fmt.Sprintf("volumes[%d].container_path", i), Msg: "is required, without '..'"}
		case !hostaccess.ValidHostPath(v.HostPath):
			return &api.FieldError{Field: fmt.Sprintf("volumes[%d].host_path", i), Msg: "must be an absolute path or a host volume's name"}
		}
	}
	if err := api.ValidateArtifacts("artifacts", info.Artifacts); err != nil {
		return err
	}
	if err := api.ValidateSecretFiles("secret_files", info.SecretFiles, info.Image != ""); err != nil {
		return err
	}
	ports := int(info.Resources.Ports.Count())
	for i, c := range info.HealthChecks {
		if err := c.Validate(ports); err != nil {
			return &api.FieldError{Field: fmt.Sprintf("health_checks[%d]", i), Msg: err.Error()}
		}
	}
	return nil
}

// launch accepts a task: it answers at once with TASK_STARTING (or TASK_ERROR when the task
// does not fit what is free) and runs the rest in the background.
func (ts *taskSet) launch(info api.TaskInfo) (api.TaskStatus, error) {
	requested := ts.clock.Now()
	if err := validateTaskInfo(info); err != nil { // a wrong request is wrong whenever it comes
		return api.TaskStatus{}, err
	}
	if info.Privileged && !ts.allowPrivileged {
		return api.TaskStatus{}, &api.FieldError{Field: "privileged", Msg: "this agent does not run privileged containers (agora agent --allow-privileged)"}
	}
	if hostaccess.IsRoot(info.User) && !ts.allowRoot {
		return api.TaskStatus{}, &api.FieldError{Field: "user", Msg: fmt.Sprintf("%q is root, and this agent does not run tasks as root (agora agent --allow-root-tasks)", info.User)}
	}
	if _, err := ts.mounts(info.Volumes); err != nil {
		return api.TaskStatus{}, err
	}
	if ts.agentID() == "" {
		return api.TaskStatus{}, ErrNotRegistered
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.unavailable != "" {
		ts.refused++
		return api.TaskStatus{}, fmt.Errorf("%w: %s", ErrUnavailable, ts.unavailable)
	}
	if _, ok := ts.tasks[info.TaskID]; ok {
		return api.TaskStatus{}, fmt.Errorf("%w: %s", ErrDuplicateTask, info.TaskID)
	}
	free, err := ts.total.Subtract(ts.allocatedLocked())
	if err == nil && !free.Contains(info.Resources) {
		err = resources.ErrInsufficient
	}
	r := &record{Info: info.Masked()} // secrets go to the container only, never to disk or the API
	ts.tasks[info.TaskID] = r
	if err != nil {
		// The master never sends what does not fit; this is the last line of defence.
		msg := fmt.Sprintf("the task needs %s but this agent has %s free", info.Resources, free)
		if err := ts.transitionLocked(r, api.TaskStatus{State: task.Error, Reason: task.ReasonTaskInvalid, Message: msg}); err != nil {
			delete(ts.tasks, info.TaskID)
			return api.TaskStatus{}, err
		}
		return r.Status, nil
	}
	if err := ts.transitionLocked(r, api.TaskStatus{State: task.Starting}); err != nil {
		delete(ts.tasks, info.TaskID)
		return api.TaskStatus{}, err
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		ts.run(info, requested)
	}()
	return r.Status, nil
}

// mounts grants a launch's volumes against the agent's host volumes and answers the host paths
// to mount, links followed; an error names the volume.
func (ts *taskSet) mounts(vs []api.Volume) ([]containerd.Volume, error) {
	var out []containerd.Volume
	for i, v := range vs {
		vol, path, err := hostaccess.Grant(ts.volumes, v.HostPath, v.ReadOnly)
		if err == nil {
			path, err = hostaccess.Resolve(vol, path)
		}
		if err != nil {
			return nil, &api.FieldError{Field: fmt.Sprintf("volumes[%d].host_path", i), Msg: strings.TrimPrefix(err.Error(), "hostaccess: ")}
		}
		out = append(out, containerd.Volume{ContainerPath: v.ContainerPath, HostPath: path, ReadOnly: v.ReadOnly})
	}
	return out, nil
}

// spec is the executor's view of a launch.
func (ts *taskSet) spec(info api.TaskInfo) (containerd.Spec, error) {
	env := info.Env
	if len(info.SecretEnv) > 0 {
		env = make(map[string]string, len(info.Env)+len(info.SecretEnv))
		for k, v := range info.Env {
			env[k] = v
		}
		for k, v := range info.SecretEnv {
			env[k] = v
		}
	}
	mounts, err := ts.mounts(info.Volumes)
	if err != nil {
		return containerd.Spec{}, err
	}
	var files []containerd.SecretFile
	for _, f := range info.SecretFiles {
		files = append(files, containerd.SecretFile{ContainerPath: f.ContainerPath, Value: f.Value})
	}
	return containerd.Spec{
		TaskID: info.TaskID, AgentID: ts.agentID(), Image: info.Image, ForcePull: info.ForcePull,
		Cmd: info.Cmd, Args: info.Args, Env: env, Labels: info.Labels,
		CPUs: info.Resources.CPUs, MemMiB: info.Resources.Mem, Ports: taskPorts(info), PortNames: info.PortNames,
		Host: ts.host, Volumes: mounts, Privileged: info.Privileged, User: info.User, SecretFiles: files,
	}, nil
}

// taskPorts lists the ports a task was given, in order.
func taskPorts(info api.TaskInfo) []uint64 {
	var ports []uint64
	for _, rg := range info.Resources.Ports {
		for p := rg.Begin; p <= rg.End; p++ {
			ports = append(ports, p)
		}
	}
	return ports
}

// run launches a task, requested at the given time, and watches it to its end.
//
// A launch that fails reports TASK_FAILED only once whatever it made is gone: the executor
// removes a half-made container itself, but not while containerd does not answer, so here the
// container is removed (once containerd answers again) before the end is told. A launch is
// thus either RUNNING or FAILED, never both, and leaves no container behind.
func (ts *taskSet) run(info api.TaskInfo, requested time.Time) {
	spec, err := ts.spec(info)
	if err == nil && len(info.Artifacts) > 0 {
		err = ts.fetch(info)
	}
	var h *containerd.Handle
	if err == nil {
		h, err = ts.exec.Launch(ts.ctx, spec)
		if err != nil && ts.ctx.Err() == nil && !errors.Is(err, containerd.ErrBadSpec) {
			lost := containerd.Unavailable(err) || ts.runtimeUnavailable() != ""
			removed, waited := ts.removeContainer(info.TaskID)
			if !removed {
				return // the agent stops: the restarted one finds the task as it is
			}
			ts.reapLostShim(info.TaskID)
			if lost || waited {
				err = fmt.Errorf("containerd became unavailable while launching the task (what it made was removed once containerd answered again): %w", err)
			}
		}
	}
	ts.mu.Lock()
	r := ts.tasks[info.TaskID]
	if err != nil {
		st := api.TaskStatus{State: task.Failed, Reason: task.ReasonContainerLaunchFailed, Message: err.Error()}
		if r.Killing {
			st = api.TaskStatus{State: task.Killed, Reason: task.ReasonTaskKilledDuringLaunch, Message: "killed while launching: " + err.Error()}
		}
		if ts.ctx.Err() != nil {
			// The agent is stopping: the restarted agent finds the task as it is.
			ts.mu.Unlock()
			return
		}
		ts.transitionLocked(r, st)
		ts.mu.Unlock()
		return
	}
	started := ts.clock.Now()
	now := started.UTC()
	r.StartedAt = &now
	ts.handles[info.TaskID] = h
	if r.Killing {
		ts.killLocked(r) // killed while launching: it stays KILLING until its end
	} else {
		ts.transitionLocked(r, api.TaskStatus{State: task.Running})
		if ts.unavailable == "" { // otherwise when the runtime is back (runtimeChanged)
			ts.startHealthLocked(r)
		}
		if ts.observeStart != nil {
			ts.observeStart(started.Sub(requested))
		}
	}
	ts.mu.Unlock()
	ts.watch(info.TaskID, h)
}

// fetch downloads a task's artifacts into its sandbox; a kill meanwhile stops it.
func (ts *taskSet) fetch(info api.TaskInfo) error {
	if ts.fetcher == nil {
		return errors.New("this agent fetches no artifacts")
	}
	ctx, cancel := context.WithCancel(ts.ctx)
	defer cancel()
	ts.mu.Lock()
	ts.fetching[info.TaskID] = cancel
	ts.mu.Unlock()
	err := ts.fetcher.Fetch(ctx, ts.exec.Sandbox(info.TaskID), info.Artifacts)
	ts.mu.Lock()
	delete(ts.fetching, info.TaskID)
	ts.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fetching the task's artifacts failed: %w", err)
	}
	return nil
}

// watch waits for a task's process to end and reports how. The exit is checkpointed first, then
// the container removed (which lets its logger write the last of the output), and only then is
// the end reported: whoever reads the logs after seeing the end gets all of them, and a crash
// in between loses no exit status.
func (ts *taskSet) watch(id string, h *containerd.Handle) {
	var ex containerd.Exit
	select {
	case ex = <-h.Done():
	case <-ts.ctx.Done():
		return // the agent stops; its tasks run on, and the restarted agent re-attaches
	}
	ts.mu.Lock()
	r := ts.tasks[id]
	ts.stopHealthLocked(id)
	delete(ts.handles, id)
	r.Exit = &ex
	data, err := ts.saveLocked(r)
	if err == nil {
		err = ts.store.SaveTask(id, data)
	}
	ts.mu.Unlock()
	if err != nil {
		ts.logger.Error("checkpoint a task's exit", "task", id, "err", err)
	}
	ts.finish(id, ex)
}

// finish removes an ended task's container and reports its end.
func (ts *taskSet) finish(id string, ex containerd.Exit) {
	if removed, _ := ts.removeContainer(id); !removed {
		return // the agent stops: the restarted one finds the exit checkpointed
	}
	if ex.Vanished {
		ts.reapLostShim(id) // containerd lost the task: its shim may run on
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r := ts.tasks[id]
	ts.transitionLocked(r, ts.exitStatusLocked(r, ex))
}

// removeContainer removes a task's container, and tries again while containerd does not answer
// (what is not removed would run or linger owned by nothing); when it had to wait, it also
// ends a shim of the task that the restarted containerd lost. It answers whether it is done
// (not when the agent stops first; other failures are logged, and count as done), and whether
// it had to wait for containerd.
func (ts *taskSet) removeContainer(id string) (done, waited bool) {
	delay := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ts.ctx), 30*time.Second)
		err := ts.exec.Remove(ctx, id)
		cancel()
		if err == nil {
			if waited {
				ts.reapLostShim(id) // containerd was away around the task's end
			}
			return true, waited
		}
		if !containerd.Unavailable(err) {
			ts.logger.Warn("remove container", "task", id, "err", err)
			return true, waited
		}
		waited = true
		select {
		case <-ts.ctx.Done():
			return false, waited
		case <-ts.clock.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// shimReaper is an executor that can end the shim of a task its containerd lost
// (agent/containerd's ReapLostShim).
type shimReaper interface {
	ReapLostShim(ctx context.Context, id string) (int, error)
}

// reapLostShim ends what containerd, killed while it created the task's container, may have
// lost track of and left running: the container is removed, so a shim of it is a leak. It is
// only a look through /proc when there is none.
func (ts *taskSet) reapLostShim(id string) {
	r, ok := ts.exec.(shimReaper)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ts.ctx), 30*time.Second)
	defer cancel()
	if _, err := r.ReapLostShim(ctx, id); err != nil {
		ts.logger.Warn("end a shim containerd lost", "task", id, "err", err)
	}
}

// runtimeUnavailable says why the container runtime cannot run tasks now, or "".
func (ts *taskSet) runtimeUnavailable() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.unavailable
}

// launchesRefused is how many launches were refused while the runtime was unavailable.
func (ts *taskSet) launchesRefused() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refused
}

// runtimeChanged takes in whether the container runtime can run tasks: why it cannot, or ""
// once it can again. While it cannot, launches are refused and health checks pause (a check
// that runs a command in the task would fail, and count against a task that runs on); the
// tasks keep their states: the executor delivers no end it has not seen. When it can again,
// the paused health checks run again, and kills asked for meanwhile are sent again.
func (ts *taskSet) runtimeChanged(why string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	was := ts.unavailable
	ts.unavailable = why
	switch {
	case was == "" && why != "":
		for id := range ts.health {
			ts.stopHealthLocked(id)
		}
	case was != "" && why == "":
		for id, r := range ts.tasks {
			if _, held := ts.handles[id]; !held || r.Status.State.IsTerminal() {
				continue
			}
			if r.Killing {
				ts.killLocked(r)
			} else if r.Status.State == task.Running && ts.health[id] == nil {
				ts.startHealthLocked(r)
			}
		}
	}
}

// exitStatusLocked says what an ended process means for its task.
func (ts *taskSet) exitStatusLocked(r *record, ex containerd.Exit) api.TaskStatus {
	code := int(ex.Code)
	st := api.TaskStatus{ExitStatus: &code}
	switch {
	case ex.Vanished:
		st.ExitStatus = nil
		st.State, st.Reason = task.Failed, task.ReasonExecutorTerminated
		st.Message = "the task's container is gone, and its exit status with it (it ended while the agent or containerd was down, and its shim is gone too)"
	case r.HealthKill != "":
		unhealthy := false
		st.State, st.Reason, st.Healthy = task.Killed, task.ReasonHealthCheckUpdated, &unhealthy
		st.Message = r.HealthKill
	case r.Killing:
		st.State, st.Message = task.Killed, "killed on request"
		if code == 128+int(syscall.SIGKILL) {
			st.Message = fmt.Sprintf("killed on request: SIGKILL after the %gs grace period", r.KillGrace)
		}
	case ex.OOMKilled:
		st.State, st.Reason = task.Failed, task.ReasonContainerLimitationMem
		st.Message = fmt.Sprintf("container OOM-killed (memory limit %g MiB)", r.Info.Resources.Mem)
	case code == 0:
		st.State, st.Message = task.Finished, "exited with status 0"
	case code > 128:
		st.State, st.Reason = task.Failed, task.ReasonCommandExecutorFailed
		st.Message = fmt.Sprintf("exited with status %d (killed by signal %d)", code, code-128)
	default:
		st.State, st.Reason = task.Failed, task.ReasonCommandExecutorFailed
		st.Message = fmt.Sprintf("exited with status %d", code)
	}
	return st
}

// kill asks a task to stop; a zero grace uses the task's own.
func (ts *taskSet) kill(id string, grace time.Duration) (api.TaskStatus, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r, ok := ts.tasks[id]
	if !ok {
		return api.TaskStatus{}, fmt.Errorf("%w: %s", ErrNoSuchTask, id)
	}
	if r.Status.State.IsTerminal() {
		return r.Status, fmt.Errorf("%w: %s is %s", ErrTaskEnded, id, r.Status.State)
	}
	if r.Killing {
		return r.Status, nil
	}
	if grace <= 0 {
		grace = r.Info.KillGrace()
	}
	r.Killing, r.KillGrace = true, grace.Seconds()
	if err := ts.transitionLocked(r, api.TaskStatus{State: task.Killing}); err != nil {
		return api.TaskStatus{}, err
	}
	if cancel := ts.fetching[id]; cancel != nil {
		cancel() // it ends as KILLED once the fetch stops
	}
	if _, running := ts.handles[id]; running {
		ts.killLocked(r)
	}
	return r.Status, nil
}

// killLocked has the executor stop a running task; its end comes through watch.
func (ts *taskSet) killLocked(r *record) {
	ts.stopHealthLocked(r.Info.TaskID)
	grace := time.Duration(r.KillGrace * float64(time.Second))
	if grace <= 0 {
		grace = r.Info.KillGrace()
	}
	id := r.Info.TaskID
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		if err := ts.exec.Kill(ts.ctx, id, grace); err != nil && ts.ctx.Err() == nil {
			ts.logger.Warn("kill", "task", id, "err", err)
		}
	}()
}

// acknowledge records the master's acknowledgement of an update; a task that has ended and has
// nothing left to send leaves the checkpoint.
func (ts *taskSet) acknowledge(taskID, uuid string) error {
	if err := ts.updates.Ack(taskID, uuid); err != nil {
		return err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r, ok := ts.tasks[taskID]
	if !ok || !r.Status.State.IsTerminal() {
		return nil
	}
	pending, err := ts.updates.Pending(taskID)
	if err != nil || pending {
		return err
	}
	if err := ts.store.RemoveTask(taskID); err != nil {
		return err
	}
	ts.keepEndedLocked(r)
	return nil
}

// forgetFailedLaunchLocked forgets the failed launch listed for k (acknowledged already),
// unless it is id.
func (ts *taskSet) forgetFailedLaunchLocked(k launchKey, id string) {
	prev, ok := ts.failedLaunch[k]
	if !ok || prev == id {
		return
	}
	delete(ts.failedLaunch, k)
	delete(ts.tasks, prev)
	for i := len(ts.ended) - 1; i >= 0; i-- { // most likely among the last ended
		if ts.ended[i] == prev {
			ts.ended = slices.Delete(ts.ended, i, i+1)
			break
		}
	}
}

// keepEndedLocked lists an ended task whose updates are all acknowledged among the ended ones,
// and forgets what falls out of the list: the failed launch of the same framework and name it
// follows, and the oldest beyond keepEnded.
func (ts *taskSet) keepEndedLocked(r *record) {
	id := r.Info.TaskID
	if r.failedLaunch() {
		k := launchKey{r.Info.FrameworkID, r.Info.Name}
		ts.forgetFailedLaunchLocked(k, id)
		ts.failedLaunch[k] = id
	}
	ts.ended = append(ts.ended, id)
	for len(ts.ended) > keepEnded {
		gone := ts.ended[0]
		ts.ended = ts.ended[1:]
		if old := ts.tasks[gone]; old != nil {
			if k := (launchKey{old.Info.FrameworkID, old.Info.Name}); ts.failedLaunch[k] == gone {
				delete(ts.failedLaunch, k)
			}
		}
		delete(ts.tasks, gone)
	}
}

// list returns every task the agent knows, ended ones included, by id.
func (ts *taskSet) list() []api.Task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]api.Task, 0, len(ts.tasks))
	for _, r := range ts.tasks {
		out = append(out, ts.viewLocked(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out
}

func (ts *taskSet) get(id string) (api.Task, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	r, ok := ts.tasks[id]
	if !ok {
		return api.Task{}, false
	}
	return ts.viewLocked(r), true
}

func (ts *taskSet) viewLocked(r *record) api.Task {
	return api.Task{Info: r.Info, Status: r.Status, Sandbox: ts.exec.Sandbox(r.Info.TaskID), StartedAt: r.StartedAt}
}

// statuses are the latest states of the tasks that have not ended, for a registration.
func (ts *taskSet) statuses() []api.TaskStatus {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var out []api.TaskStatus
	for _, r := range ts.tasks {
		if !r.Status.State.IsTerminal() {
			out = append(out, r.Status)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out
}

// registration lists the tasks a master must know: those not ended, and ended ones whose last
// update is not acknowledged yet.
func (ts *taskSet) registration() []api.Task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	acked := make(map[string]bool, len(ts.ended))
	for _, id := range ts.ended {
		acked[id] = true
	}
	out := []api.Task{}
	for id, r := range ts.tasks {
		if !acked[id] {
			out = append(out, ts.viewLocked(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info.TaskID < out[j].Info.TaskID })
	return out
}

// countByState counts the tasks the agent knows (those list returns) by their latest state.
func (ts *taskSet) countByState() map[task.State]int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := map[task.State]int{}
	for _, r := range ts.tasks {
		out[r.Status.State]++
	}
	return out
}

// running says whether the task's process is held (and not yet ended).
func (ts *taskSet) running(id string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	_, ok := ts.handles[id]
	return ok
}

// allocated and total, for the agent's own report.
func (ts *taskSet) usage() (total, allocated resources.Resources) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.total, ts.allocatedLocked()
}

// recover loads the checkpoint and re-attaches to what still runs. It runs once, before the
// agent takes requests.
func (ts *taskSet) recover(ctx context.Context) error {
	saved, err := ts.store.Tasks()
	if err != nil {
		return fmt.Errorf("agent: read checkpoint: %w", err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var live []string
	for id, b := range saved {
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("agent: checkpointed task %s: %w", id, err)
		}
		ts.tasks[id] = &r
		if !r.Status.State.IsTerminal() {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	found, orphans, err := ts.exec.Recover(ctx, live)
	if err != nil {
		return fmt.Errorf("agent: recover containers: %w", err)
	}
	switch {
	case len(orphans) > 0 && len(saved) == 0:
		// A data dir without a checkpoint beside containers of this namespace: the data dir
		// was lost (or replaced) under a running agent. Its containers belong to no task this
		// agent can report; the masters end the old agent's tasks when this one registers from
		// the same hostname and API address, so there is nothing to tell them here.
		ts.logger.Warn("empty checkpoint (a new data dir, or a lost one): removed every container of this agent's containerd namespace, none of them a task of this agent; they were an earlier agent's on this host, whose tasks the masters end when this agent registers from the same hostname and API address",
			"removed", len(orphans), "containers", orphans)
	default:
		for _, id := range orphans {
			ts.logger.Warn("removed a container no task of this agent knows", "container", id)
		}
	}
	for _, f := range found {
		r := ts.tasks[f.TaskID]
		switch {
		case f.Handle != nil:
			ts.handles[f.TaskID] = f.Handle
			if r.Status.State == task.Starting && !r.Killing {
				now := ts.clock.Now().UTC()
				r.StartedAt = &now
				ts.transitionLocked(r, api.TaskStatus{State: task.Running})
			}
			if r.Killing {
				ts.killLocked(r)
			} else {
				ts.startHealthLocked(r)
			}
			ts.logger.Info("re-attached", "task", f.TaskID, "state", r.Status.State)
			ts.wg.Add(1)
			go func(id string, h *containerd.Handle) {
				defer ts.wg.Done()
				ts.watch(id, h)
			}(f.TaskID, f.Handle)
		case f.Exit != nil:
			ts.wg.Add(1)
			go func(id string, ex containerd.Exit) {
				defer ts.wg.Done()
				ts.finish(id, ex)
			}(f.TaskID, *f.Exit)
		case r.Exit != nil:
			// It ended and its container was removed, but the agent stopped before reporting.
			ts.transitionLocked(r, ts.exitStatusLocked(r, *r.Exit))
		default: // missing
			st := api.TaskStatus{State: task.Failed, Reason: task.ReasonExecutorTerminated,
				Message: "the task's container is gone: it ended while the agent was down, or was removed by hand"}
			if r.Status.State == task.Starting {
				st.Reason, st.Message = task.ReasonContainerLaunchFailed, "the agent stopped while launching the task; it never ran"
			}
			if r.Killing {
				st.State = task.Killed
			}
			ts.transitionLocked(r, st)
		}
	}
	return nil
}

// drain kills every task that has not ended, each with its own grace period, and waits until
// they have ended and their updates are acknowledged, or ctx ends.
func (ts *taskSet) drain(ctx context.Context) error {
	for _, st := range ts.statuses() {
		if _, err := ts.kill(st.TaskID, 0); err != nil && !errors.Is(err, ErrTaskEnded) {
			ts.logger.Warn("drain: kill", "task", st.TaskID, "err", err)
		}
	}
	for {
		pending, err := ts.store.Pending()
		if err != nil {
			return err
		}
		if len(ts.statuses()) == 0 && len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent: drain: %d tasks not ended or not acknowledged: %w", len(ts.statuses())+len(pending), ctx.Err())
		case <-ts.clock.After(100 * time.Millisecond):
		}
	}
}

// startHealthLocked runs the task's health checks, if it has any.
func (ts *taskSet) startHealthLocked(r *record) {
	checks := r.Info.HealthChecks
	if len(checks) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(ts.ctx)
	hs := &healthState{cancel: cancel, healthy: make([]*bool, len(checks))}
	ts.health[r.Info.TaskID] = hs
	taskID, ports := r.Info.TaskID, taskPorts(r.Info)
	started := ts.clock.Now()
	if r.StartedAt != nil {
		started = *r.StartedAt
	}
	for i, c := range checks {
		i := i
		ts.wg.Add(1)
		go func() {
			defer ts.wg.Done()
			health.Run(ctx, health.RunConfig{
				Check:   c,
				Target:  health.Target{TaskID: taskID, Host: "127.0.0.1", Ports: ports, Exec: ts.exec},
				Started: started,
				Clock:   ts.clock,
				OnVerdict: func(v health.Verdict) {
					ts.healthVerdict(ctx, taskID, hs, i, v)
				},
			})
		}()
	}
}

func (ts *taskSet) stopHealthLocked(id string) {
	if hs, ok := ts.health[id]; ok {
		hs.cancel()
		delete(ts.health, id)
	}
}

// healthVerdict folds one check's verdict into the task's health: healthy when every check is.
func (ts *taskSet) healthVerdict(ctx context.Context, id string, hs *healthState, i int, v health.Verdict) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	r := ts.tasks[id]
	if r == nil || r.Status.State != task.Running {
		return
	}
	healthy := v.Status.Healthy
	hs.healthy[i] = &healthy
	if v.Kill {
		c := r.Info.HealthChecks[i]
		r.HealthKill = fmt.Sprintf("killed after %d consecutive failed %s health checks: %s", v.Status.ConsecutiveFailures, c.Protocol, v.Status.LastFailureCause)
		r.Killing, r.KillGrace = true, r.Info.KillGrace().Seconds()
		unhealthy := false
		ts.transitionLocked(r, api.TaskStatus{State: task.Killing, Healthy: &unhealthy, Reason: task.ReasonHealthCheckUpdated, Message: r.HealthKill})
		ts.killLocked(r)
		return
	}
	all := true
	for _, h := range hs.healthy {
		if h == nil {
			return // not all checks have spoken yet
		}
		all = all && *h
	}
	if r.Status.Healthy != nil && *r.Status.Healthy == all {
		return
	}
	st := api.TaskStatus{State: task.Running, Healthy: &all, Reason: task.ReasonHealthCheckUpdated}
	if !all {
		st.Message = v.Status.LastFailureCause
	}
	ts.transitionLocked(r, st)
}
