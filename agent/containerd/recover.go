package containerd

import (
	"context"
	"fmt"
	"sort"
	"sync"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"golang.org/x/sync/errgroup"
)

// Recovered is what Recover found of one task the agent's checkpoint knows.
type Recovered struct {
	TaskID string
	// Handle is set when the task's process still runs: it is re-attached, its Done channel
	// reports its end as for a launched task, and the pump copies on its spools from where its
	// log files end (what it wrote while the agent was down first).
	Handle *Handle
	// Exit is set when the process ended while the agent was down (or never started): its real
	// status when containerd kept it, Vanished when even that is gone. What it wrote that is
	// not in its log files yet is, once Remove returns.
	Exit *Exit
	// Missing: there is no container of that id at all.
	Missing bool
}

// reattachers bounds the tasks Recover re-attaches at once.
const reattachers = 16

// Recover re-attaches the executor to the containers of its namespace after an agent restart,
// and drops the secret files of launches that did not finish (secrets.go). known lists the tasks the agent's checkpoint holds as not yet ended; every one of them is in
// the answer. Containers of the namespace that known does not hold are orphans: killed and
// removed, and their ids returned.
func (e *Executor) Recover(ctx context.Context, known []string) (found []Recovered, orphans []string, err error) {
	if err := e.clearSecrets(); err != nil { // of launches the last agent did not finish
		return nil, nil, err
	}
	ctx = e.ctx(ctx)
	ctrs, err := e.cfg.Client.Containers(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("containerd: list containers: %w", err)
	}
	want := map[string]bool{}
	for _, id := range known {
		want[id] = true
	}
	seen := map[string]bool{}
	var live []ctrd.Container
	for _, ctr := range ctrs {
		id := ctr.ID()
		if !want[id] {
			if err := e.Remove(ctx, id); err != nil {
				return nil, nil, err
			}
			orphans = append(orphans, id)
			continue
		}
		seen[id] = true
		live = append(live, ctr)
	}
	// Re-attaching is a few round trips to containerd and the task's shim: one after another,
	// an agent of 500 tasks took 3.6 s to come back; a few at a time overlap the waits.
	// (Not errgroup.WithContext: ctx outlives Recover in the handles' waits.)
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(reattachers)
	for _, ctr := range live {
		g.Go(func() error {
			r, err := e.reattach(ctx, ctr)
			if err != nil {
				return err
			}
			mu.Lock()
			found = append(found, r)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for _, id := range known {
		if !seen[id] {
			found = append(found, Recovered{TaskID: id, Missing: true})
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].TaskID < found[j].TaskID })
	sort.Strings(orphans)
	return found, orphans, nil
}

func (e *Executor) reattach(ctx context.Context, ctr ctrd.Container) (Recovered, error) {
	id := ctr.ID()
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return Recovered{TaskID: id, Exit: &Exit{Vanished: true}}, nil
	}
	if err != nil {
		return Recovered{}, fmt.Errorf("containerd: load task %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return Recovered{}, fmt.Errorf("containerd: status of %s: %w", id, err)
	}
	switch st.Status {
	case ctrd.Stopped:
		return Recovered{TaskID: id, Exit: &Exit{Code: st.ExitStatus, At: st.ExitTime}}, nil
	case ctrd.Created:
		// The agent stopped between creating the process and starting it: it never ran.
		return Recovered{TaskID: id, Exit: &Exit{Vanished: true}}, nil
	}
	oom := e.watchOOM(ctx, id)
	exitCh, err := task.Wait(ctx)
	if err != nil {
		oom.cancel()
		return Recovered{}, fmt.Errorf("containerd: wait %s: %w", id, err)
	}
	return Recovered{TaskID: id, Handle: e.track(ctx, id, task, exitCh, oom)}, nil
}
