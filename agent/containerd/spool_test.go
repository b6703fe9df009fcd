package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/shim"
	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
)

// numbered is a shell loop printing "PREFIX-I" for I from `from` to to-1 to stdout and, with
// stderr, "err-I" to stderr.
func numbered(prefix string, from, to int, stderr bool) string {
	body := fmt.Sprintf("echo %s-$i", prefix)
	if stderr {
		body += "; echo err-$i >&2"
	}
	return fmt.Sprintf("i=%d; while [ $i -lt %d ]; do %s; i=$((i+1)); done", from, to, body)
}

// gate is a shell loop waiting for the file name to appear in the task's sandbox (its working
// directory), which openGate makes.
func gate(name string) string {
	return fmt.Sprintf("while [ ! -e %s ]; do sleep 0.02; done", name)
}

func openGate(t *testing.T, h *Handle, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.Sandbox, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantLines is "PREFIX-FROM\n" ... "PREFIX-(TO-1)\n".
func wantLines(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s-%d\n", prefix, i)
	}
	return b.String()
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}

// streamOf is a task's whole stdout or stderr as the agent serves it.
func streamOf(t *testing.T, logDir, stream string) string {
	t.Helper()
	c, _, err := logs.Read(logDir, stream, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return string(c.Data)
}

// TestOutputCostsNoProcessButTheShim: a task writing lines to stdout and stderr gets each
// stream in its own file, in order, and the only process the shim started is the task's own: no
// logging process beside it.
func TestOutputCostsNoProcessButTheShim(t *testing.T) {
	e := newExecutor(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Cmd: numbered("out", 0, 200, true) + "; exec sleep 3600"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the last lines in the files", func() bool {
		return strings.HasSuffix(streamOf(t, h.Logs, "stdout"), "out-199\n") && strings.HasSuffix(streamOf(t, h.Logs, "stderr"), "err-199\n")
	})
	pid := int(containerdtest.TaskPID(t, e.cfg.Client, e.cfg.Namespace, h.ID))
	sh := shimOf(t, e.cfg.Namespace, h.ID)
	if kids := shim.Children(sh); len(kids) != 1 || kids[0] != pid {
		t.Fatalf("the shim (pid %d) has the children %v; want only the task's process %d", sh, kids, pid)
	}
	if err := e.Kill(context.Background(), h.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	waitExit(t, e, h, 30*time.Second)
	if got := streamOf(t, h.Logs, "stdout"); got != wantLines("out", 0, 200) {
		t.Errorf("stdout:\n%s", got)
	}
	if got := streamOf(t, h.Logs, "stderr"); got != wantLines("err", 0, 200) {
		t.Errorf("stderr:\n%s", got)
	}
	if logs.HasSpools(h.Logs) {
		t.Error("the spools are left after Remove")
	}
}

// restartableExecutors makes executors on one sandbox root and a containerd namespace of their
// own, as an agent stopped and started again on the same data dir has.
func restartableExecutors(t *testing.T) func() *Executor {
	ns := fmt.Sprintf("agora-test-spool-%d", time.Now().UnixNano())
	root := t.TempDir()
	client := containerdtest.Client(t)
	t.Cleanup(func() { containerdtest.RemoveNamespace(t, client, ns) })
	return func() *Executor {
		return newExecutorWith(t, func(c *Config) { c.Namespace, c.SandboxRoot = ns, root })
	}
}

// stopPumping stops an executor as the agent's stop does (the ctx its tasks were launched or
// re-attached with ends), and waits until its pump has let go of every spool.
func stopPumping(t *testing.T, e *Executor, cancel context.CancelFunc) {
	t.Helper()
	cancel()
	waitFor(t, 10*time.Second, "the stopped executor's pump lets go", func() bool { return e.pump.Len() == 0 })
}

// spoolSize is how far the shim has written a stream.
func spoolSize(t *testing.T, logDir, stream string) int64 {
	t.Helper()
	info, err := os.Stat(logs.SpoolPath(logDir, stream))
	if err != nil {
		t.Fatal(err)
	}
	return info.Size()
}

// TestOutputWrittenWhileTheAgentIsDownIsKeptOnce: the executor stops while its task writes; the
// task goes on writing; a new executor re-attaches, and the log files hold every line once, in
// order, up to the task's end.
func TestOutputWrittenWhileTheAgentIsDownIsKeptOnce(t *testing.T) {
	executor := restartableExecutors(t)
	first := executor()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := first.Launch(ctx, Spec{TaskID: taskID(t), Cmd: strings.Join([]string{
		numbered("line", 0, 100, true), gate("down"), numbered("line", 100, 400, true), gate("back"), numbered("line", 400, 500, true)}, "; ")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the first lines copied", func() bool {
		return streamOf(t, h.Logs, "stdout") == wantLines("line", 0, 100) && streamOf(t, h.Logs, "stderr") == wantLines("err", 0, 100)
	})
	stopPumping(t, first, cancel)
	openGate(t, h, "down")
	waitFor(t, 30*time.Second, "the task writes on while no pump runs", func() bool {
		return spoolSize(t, h.Logs, "stdout") == int64(len(wantLines("line", 0, 400))) && spoolSize(t, h.Logs, "stderr") == int64(len(wantLines("err", 0, 400)))
	})
	if got := streamOf(t, h.Logs, "stdout"); got != wantLines("line", 0, 100) {
		t.Fatalf("the stopped executor's pump copied on: %d bytes", len(got))
	}

	second := executor()
	found, _, err := second.Recover(context.Background(), []string{h.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Handle == nil {
		t.Fatalf("recovered %+v, want the running task re-attached", found)
	}
	waitFor(t, 30*time.Second, "what the task wrote meanwhile copied", func() bool {
		return streamOf(t, h.Logs, "stdout") == wantLines("line", 0, 400) && streamOf(t, h.Logs, "stderr") == wantLines("err", 0, 400)
	})
	openGate(t, h, "back")
	if ex := waitExit(t, second, found[0].Handle, 60*time.Second); ex.Code != 0 {
		t.Fatalf("exit %+v", ex)
	}
	if got := streamOf(t, h.Logs, "stdout"); got != wantLines("line", 0, 500) {
		t.Fatalf("stdout after the re-attach:\n%s", got)
	}
	if got := streamOf(t, h.Logs, "stderr"); got != wantLines("err", 0, 500) {
		t.Fatalf("stderr after the re-attach:\n%s", got)
	}
}

// TestOutputOfATaskThatEndedWhileTheAgentWasDown: a task that writes its last lines and ends
// while no executor runs has all of them in its log files once the re-attached executor's
// Remove returns (which the agent waits for before it reports the end).
func TestOutputOfATaskThatEndedWhileTheAgentWasDown(t *testing.T) {
	executor := restartableExecutors(t)
	first := executor()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := first.Launch(ctx, Spec{TaskID: taskID(t), Cmd: strings.Join([]string{
		"echo started", gate("down"), numbered("last", 0, 60, true), "printf 'no newline at the end'"}, "; ")})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the first line copied", func() bool { return streamOf(t, h.Logs, "stdout") == "started\n" })
	stopPumping(t, first, cancel)
	openGate(t, h, "down")
	cctx := namespaces.WithNamespace(context.Background(), first.cfg.Namespace)
	waitFor(t, 30*time.Second, "the task ends", func() bool {
		ctr, err := first.cfg.Client.LoadContainer(cctx, h.ID)
		if err != nil {
			return false
		}
		tk, err := ctr.Task(cctx, nil)
		if err != nil {
			return false
		}
		st, err := tk.Status(cctx)
		return err == nil && st.Status == ctrd.Stopped
	})
	if got := streamOf(t, h.Logs, "stdout"); got != "started\n" {
		t.Fatalf("the files got %q while no pump ran", got)
	}

	second := executor()
	found, _, err := second.Recover(context.Background(), []string{h.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Exit == nil || found[0].Exit.Code != 0 {
		t.Fatalf("recovered %+v, want the task's exit", found)
	}
	if err := second.Remove(context.Background(), h.ID); err != nil {
		t.Fatal(err)
	}
	if got := streamOf(t, h.Logs, "stdout"); got != "started\n"+wantLines("last", 0, 60)+"no newline at the end" {
		t.Fatalf("stdout after the re-attach:\n%s", got)
	}
	if got := streamOf(t, h.Logs, "stderr"); got != wantLines("err", 0, 60) {
		t.Fatalf("stderr after the re-attach:\n%s", got)
	}
	if logs.HasSpools(h.Logs) {
		t.Error("the spools are left after Remove")
	}
}

// TestRecoverTakesBackManyTasksAtOnce: more tasks than Recover re-attaches at a time — most
// running, some that ended while no executor ran, one whose container is gone — come back each
// as it is: the running ones with handles that report their real end (and their output from
// before and after), the ended ones with their exit status, the gone one missing.
func TestRecoverTakesBackManyTasksAtOnce(t *testing.T) {
	executor := restartableExecutors(t)
	first := executor()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const running, ended = reattachers + 4, 3
	var ids []string
	handles := map[string]*Handle{}
	for i := range running + ended {
		cmd := fmt.Sprintf("echo before-%d; %s; echo after-%d; sleep 3600", i, gate("back"), i)
		if i >= running {
			cmd = fmt.Sprintf("%s; exit %d", gate("down"), 10+i)
		}
		h, err := first.Launch(ctx, Spec{TaskID: taskID(t), Cmd: cmd})
		if err != nil {
			t.Fatal(err)
		}
		ids, handles[h.ID] = append(ids, h.ID), h
	}
	stopPumping(t, first, cancel)
	for _, id := range ids[running:] {
		openGate(t, handles[id], "down")
	}
	client := containerdtest.Client(t)
	cctx := first.ctx(context.Background())
	waitFor(t, 60*time.Second, "the short tasks end while no executor runs", func() bool {
		for _, id := range ids[running:] {
			c, err := client.LoadContainer(cctx, id)
			if err != nil {
				return false
			}
			tk, err := c.Task(cctx, nil)
			if err != nil {
				return false
			}
			if st, err := tk.Status(cctx); err != nil || st.Status != ctrd.Stopped {
				return false
			}
		}
		return true
	})

	second := executor()
	found, orphans, err := second.Recover(context.Background(), append(slices.Clone(ids), "never-made"))
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 0 || len(found) != running+ended+1 {
		t.Fatalf("recovered %d (orphans %v), want %d", len(found), orphans, running+ended+1)
	}
	byID := map[string]Recovered{}
	for i, r := range found {
		if i > 0 && found[i-1].TaskID >= r.TaskID {
			t.Fatalf("not in task id order: %s before %s", found[i-1].TaskID, r.TaskID)
		}
		byID[r.TaskID] = r
	}
	if r := byID["never-made"]; !r.Missing {
		t.Fatalf("a task without a container: %+v, want missing", r)
	}
	for i, id := range ids[running:] {
		if r := byID[id]; r.Exit == nil || r.Exit.Code != uint32(10+running+i) {
			t.Fatalf("a task that ended while no executor ran: %+v, want exit %d", r, 10+running+i)
		}
	}
	for i, id := range ids[:running] {
		r := byID[id]
		if r.Handle == nil {
			t.Fatalf("running task %s: %+v, want re-attached", id, r)
		}
		openGate(t, r.Handle, "back")
		want := fmt.Sprintf("before-%d\nafter-%d\n", i, i)
		waitFor(t, 30*time.Second, "the output from before and after the restart", func() bool { return streamOf(t, r.Handle.Logs, "stdout") == want })
	}
	victim := byID[ids[0]].Handle
	if err := second.Kill(context.Background(), victim.ID, 0); err != nil {
		t.Fatal(err)
	}
	if ex := waitExit(t, second, victim, 30*time.Second); ex.Code != 128+9 && ex.Code != 128+15 {
		t.Fatalf("the killed re-attached task: exit %+v, want a signal's", ex)
	}
	select {
	case ex := <-byID[ids[1]].Handle.Done():
		t.Fatalf("another re-attached task reported an end: %+v", ex)
	default:
	}
}
