package containerd

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
)

var execSeq atomic.Uint64

// lockedBuffer is a bytes.Buffer for the two streams of an exec'd process.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 {
		return len(p), nil // keep the first 64 KiB; a health check's output is for a person
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Exec runs argv inside a running task's container, as the task's user, in its sandbox and
// environment, and returns its exit code and output (stdout and stderr together). When ctx
// ends first the process is killed and ctx's error returned.
func (e *Executor) Exec(ctx context.Context, taskID string, argv []string) (int, []byte, error) {
	e.mu.Lock()
	r, ok := e.tasks[taskID]
	e.mu.Unlock()
	if !ok {
		return -1, nil, fmt.Errorf("%w: %q", ErrNoTask, taskID)
	}
	ctx = e.ctx(ctx)
	ctr, err := e.cfg.Client.LoadContainer(ctx, taskID)
	if err != nil {
		return -1, nil, fmt.Errorf("containerd: exec in %s: %w", taskID, err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return -1, nil, fmt.Errorf("containerd: exec in %s: %w", taskID, err)
	}
	pspec := *spec.Process
	pspec.Args = argv
	pspec.Terminal = false
	var out lockedBuffer
	execID := fmt.Sprintf("exec-%d", execSeq.Add(1))
	// The exec'd process's output comes through FIFOs the agent reads: it lives only as long
	// as the check.
	p, err := r.task.Exec(ctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, &out, &out)))
	if err != nil {
		return -1, nil, fmt.Errorf("containerd: exec in %s: %w", taskID, err)
	}
	cleanup := context.WithoutCancel(ctx)
	defer p.Delete(cleanup, ctrd.WithProcessKill)
	exitCh, err := p.Wait(cleanup)
	if err != nil {
		return -1, nil, fmt.Errorf("containerd: exec in %s: %w", taskID, err)
	}
	if err := p.Start(ctx); err != nil {
		return -1, nil, fmt.Errorf("containerd: exec in %s: %s", taskID, explain(err))
	}
	select {
	case st := <-exitCh:
		code, _, err := st.Result()
		if err != nil {
			return -1, out.Bytes(), fmt.Errorf("containerd: exec in %s: %w", taskID, err)
		}
		if io := p.IO(); io != nil {
			io.Wait() // all output copied
		}
		return int(code), out.Bytes(), nil
	case <-ctx.Done():
		p.Kill(cleanup, 9)
		return -1, out.Bytes(), ctx.Err()
	}
}
