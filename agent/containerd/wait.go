package containerd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	ctrd "github.com/containerd/containerd"
	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
)

// Waiting for a task's end: a Handle per task, its wait and its OOM watch; a wait that breaks
// when containerd goes away detaches the task until it is re-attached, and Available says
// whether every task is attached (doc.go, step 4).

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

// Done delivers the task's Exit once, when its process ends. Its output may still be on its way
// to the log files until the executor's Remove, which copies the last of it.
func (h *Handle) Done() <-chan Exit { return h.done }

// running is what the executor holds for a task whose process has not been removed.
type running struct {
	task   ctrd.Task
	handle *Handle
	// detached: the wait for the process broke (containerd went away) and the executor has
	// not re-attached to it yet.
	detached bool
	// stopForget cancels the pump's letting go of the task's spools when track's ctx ends.
	stopForget func() bool
}

// track registers a running task and waits for its end in the background, until ctx ends. The
// pump copies the task's spools (a task an earlier agent started with a logging process has
// none) until Remove drains them, or until ctx ends (the agent stops): then it lets go of them,
// and the next agent, re-attached, copies on from where the log files end.
func (e *Executor) track(ctx context.Context, id string, task ctrd.Task, exitCh <-chan ctrd.ExitStatus, oom *oomWatch) *Handle {
	h := &Handle{ID: id, Sandbox: e.Sandbox(id), Logs: e.LogDir(id), done: make(chan Exit, 1), exited: make(chan struct{})}
	r := &running{task: task, handle: h, stopForget: func() bool { return false }}
	if e.pump.Add(h.Logs) {
		r.stopForget = context.AfterFunc(ctx, func() { e.pump.Forget(h.Logs) })
	}
	e.mu.Lock()
	e.tasks[id] = r
	e.mu.Unlock()
	go e.await(ctx, h, exitCh, oom)
	return h
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
