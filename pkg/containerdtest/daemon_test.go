package containerdtest

import (
	"context"
	"testing"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
)

// TestDaemonKilledAndStartedAgain: a container of the private containerd runs on while the
// daemon is killed -9, its shim is found by Shims, and the daemon started again on the same
// root and state knows it, with the same pid.
func TestDaemonKilledAndStartedAgain(t *testing.T) {
	d := StartDaemon(t)
	client := d.Client(t)
	img := ImportTestApp(t, client, "daemon-test")
	ctx := namespaces.WithNamespace(context.Background(), "daemon-test")
	ctr, err := client.NewContainer(ctx, "steady", containerd.WithImage(img), containerd.WithNewSnapshot("steady", img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("/testapp", "-sleep", "1h")))
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := task.Pid()
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if d.Running() {
		t.Fatal("the daemon runs after Kill")
	}
	shims := d.Shims()
	if len(shims) != 1 || shims[0].Namespace != "daemon-test" || shims[0].ID != "steady" {
		t.Fatalf("shims while the daemon is dead: %+v", shims)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if got := TaskPID(t, client, "daemon-test", "steady"); got != pid {
		t.Fatalf("after the restart the task's pid is %d, want %d", got, pid)
	}
}
