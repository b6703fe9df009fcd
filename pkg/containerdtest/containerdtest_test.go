package containerdtest

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
)

// Buffer is a bytes.Buffer safe for the writer goroutine of cio and the test's reads.
// runTestApp creates a container of the test image running /testapp with args, starts it and
// returns its task with the channel its exit status arrives on.
func runTestApp(t *testing.T, client *containerd.Client, img containerd.Image, stdout, stderr *Buffer, args ...string) (containerd.Task, <-chan containerd.ExitStatus) {
	t.Helper()
	ctx := Context(t)
	id := fmt.Sprintf("chain-%d", time.Now().UnixNano())
	ctr, err := client.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(append([]string{"/testapp"}, args...)...)),
	)
	if err != nil {
		t.Fatalf("new container: %v", err)
	}
	t.Cleanup(func() {
		if err := ctr.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup); err != nil {
			t.Errorf("delete container: %v", err)
		}
	})
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, stdout, stderr)))
	if err != nil {
		t.Fatalf("new task: %v", err)
	}
	t.Cleanup(func() {
		// Tests that deleted the task already get NotFound here.
		if _, err := task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("delete task: %v", err)
		}
	})
	exitCh, err := task.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return task, exitCh
}

func waitExit(t *testing.T, exitCh <-chan containerd.ExitStatus, within time.Duration) uint32 {
	t.Helper()
	select {
	case st := <-exitCh:
		code, _, err := st.Result()
		if err != nil {
			t.Fatalf("exit status: %v", err)
		}
		return code
	case <-time.After(within):
		t.Fatalf("container did not exit within %v", within)
		return 0
	}
}

// TestContainerdRunsTestApp is the foundation's chain, end to end: a containerd from
// scripts/containerd.sh, the test image built from examples/testapp and imported without a
// registry, a container run from it through the Go client, its output read and its exit seen.
func TestContainerdRunsTestApp(t *testing.T) {
	client := Client(t)
	ctx := Context(t)
	if v, err := client.Version(ctx); err != nil {
		t.Fatalf("containerd version: %v", err)
	} else {
		t.Logf("containerd %s on %s", v.Version, Socket(t))
	}
	img := ImportTestApp(t, client, Namespace)

	t.Run("output and exit status", func(t *testing.T) {
		var stdout, stderr Buffer
		task, exitCh := runTestApp(t, client, img, &stdout, &stderr, "-print-args", "-stderr", "oops", "-exit", "3")
		if code := waitExit(t, exitCh, 30*time.Second); code != 3 {
			t.Errorf("exit status = %d, want 3", code)
		}
		// Deleting the task waits until its output has been copied out.
		if _, err := task.Delete(Context(t)); err != nil {
			t.Fatalf("delete task: %v", err)
		}
		if got := stdout.String(); !strings.Contains(got, "args: -print-args -stderr oops -exit 3") {
			t.Errorf("stdout = %q, want the args printed", got)
		}
		if got := stderr.String(); !strings.Contains(got, "oops") {
			t.Errorf("stderr = %q, want oops", got)
		}
	})

	t.Run("SIGTERM stops a long runner", func(t *testing.T) {
		var stdout, stderr Buffer
		task, exitCh := runTestApp(t, client, img, &stdout, &stderr, "-sleep", "1h", "-exit", "0")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stdout.String(), "testapp: started") {
			if time.Now().After(deadline) {
				t.Fatalf("testapp never started; stdout %q stderr %q", stdout.String(), stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		st, err := task.Status(Context(t))
		if err != nil || st.Status != containerd.Running {
			t.Fatalf("status = %+v, %v; want running", st, err)
		}
		if err := task.Kill(Context(t), syscall.SIGTERM); err != nil {
			t.Fatalf("kill: %v", err)
		}
		if code := waitExit(t, exitCh, 30*time.Second); code != 0 {
			t.Errorf("exit status after SIGTERM = %d, want 0 (testapp exits cleanly)", code)
		}
		if _, err := task.Delete(Context(t)); err != nil {
			t.Fatalf("delete task: %v", err)
		}
		if got := stdout.String(); !strings.Contains(got, "testapp: got terminated") {
			t.Errorf("stdout = %q, want the signal reported", got)
		}
	})
}

func TestTestAppArchiveImportsUnderItsName(t *testing.T) {
	client := Client(t)
	img := ImportTestApp(t, client, Namespace)
	// A second import of the same content is the same image.
	again := ImportTestApp(t, client, Namespace)
	if img.Target().Digest != again.Target().Digest {
		t.Fatalf("re-import changed the digest: %s then %s", img.Target().Digest, again.Target().Digest)
	}
	got, err := client.GetImage(Context(t), TestAppImage)
	if err != nil {
		t.Fatalf("get %s: %v", TestAppImage, err)
	}
	if got.Target().Digest != img.Target().Digest {
		t.Fatalf("stored image digest %s, imported %s", got.Target().Digest, img.Target().Digest)
	}
}
