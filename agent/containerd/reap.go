package containerd

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/shim"
)

// runcRoot is where the runc shim keeps its containers' runc state, per namespace (its
// default, which Agora does not change).
const runcRoot = "/run/containerd/runc"

// ReapLostShim ends the shim of a task that containerd no longer knows. containerd killed
// while it creates a task can lose the task's shim: containerd 1.6 (Debian's) starts the shim,
// the shim creates the container (a `runc init` waiting to start), and the restarted containerd
// neither knows the task nor cleans the shim up (containerd#6860, fixed upstream in 1.7). The
// agent calls it for a launch that containerd's absence interrupted, once the container is
// removed: a shim of this namespace (and of this containerd, when Config.Address is set) and
// task id is then a leak. It deletes the runc container (runc's own state and cgroup), kills
// the shim and what it started, and answers how many shims it ended.
func (e *Executor) ReapLostShim(ctx context.Context, id string) (int, error) {
	if err := ValidTaskID(id); err != nil {
		return 0, err
	}
	if _, err := e.cfg.Client.LoadContainer(e.ctx(ctx), id); err == nil {
		return 0, fmt.Errorf("containerd: %s: the container exists: its shim is not lost", id)
	}
	shims := e.shimsOf(id)
	if len(shims) == 0 {
		return 0, nil
	}
	if runc, err := exec.LookPath("runc"); err == nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(rctx, runc, "--root", filepath.Join(runcRoot, e.cfg.Namespace), "delete", "--force", id).CombinedOutput()
		cancel()
		if err != nil {
			e.logger.Debug("runc delete of a lost shim's container", "task", id, "err", err, "out", strings.TrimSpace(string(out)))
		}
	}
	for _, sh := range shims {
		if err := sh.Kill(); err != nil {
			return 0, fmt.Errorf("containerd: kill the lost shim of %s (pid %d): %w", id, sh.PID, err)
		}
		e.logger.Warn("killed a shim containerd lost (it was killed while creating the task)", "task", id, "pid", sh.PID)
	}
	return len(shims), nil
}

// shimsOf are the shims started for task id in the executor's namespace (by its containerd,
// when Config.Address is set).
func (e *Executor) shimsOf(id string) []shim.Process {
	var out []shim.Process
	for _, sh := range shim.List() {
		if sh.Namespace == e.cfg.Namespace && sh.ID == id && (e.cfg.Address == "" || sh.Address == e.cfg.Address) {
			out = append(out, sh)
		}
	}
	return out
}
