package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// A task's launch: the request checked (launch), then in the background its artifacts fetched and
// the executor asked to start it (run), until it is RUNNING or has failed; its end is exit.go's.

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
	if err := api.ValidateVolumeMounts("persistent_volumes", info.PersistentVolumes, info.Image != ""); err != nil {
		return err
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
	if err := ts.checkVolumesLocked(info); err != nil {
		return api.TaskStatus{}, err
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
	var own []string // persistent volumes given to the task's user
	if err == nil && len(info.PersistentVolumes) > 0 {
		var vols []containerd.Volume
		vols, own, err = ts.persistentMounts(info)
		spec.Volumes = append(spec.Volumes, vols...)
	}
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
	ts.volumesGiven(info.TaskID, own)
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
