package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/statusupdate"
	"github.com/agora-sched/agora/agent/volumes"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
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
//
// The arrows are taken in launch.go (launch: STARTING or ERROR; run: RUNNING, or FAILED —
// KILLED if killed meanwhile — when the launch fails), exit.go (finish: the end an exit means,
// exitStatusLocked), here (kill: KILLING), healthchecks.go (a new health, or KILLING after too
// many failures) and recover.go (what the agent finds of its tasks after a restart).

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
	// vols are the agent's persistent volumes (persistent.go); nil: it keeps none.
	vols *volumes.Store
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
