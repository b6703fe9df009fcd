package containerdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"

	"github.com/agora-sched/agora/pkg/shim"
)

// Daemon is a containerd of a test's own, which the test may kill -9 and start again on the same
// root and state (the shared containerd of Socket must never be): its root, state, config, log
// and socket live in a short temporary directory. It needs root, as a private containerd of
// scripts/containerd.sh does; without it the test fails, it never skips.
type Daemon struct {
	Dir    string // root, state, config and log
	Socket string
	t      testing.TB
	log    *Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartDaemon starts a private containerd and waits until it answers. When the test ends, it
// removes every namespace the daemon holds (killing their containers), stops it and removes its
// directory.
func StartDaemon(t testing.TB) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containerdtest: a private containerd needs root")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Fatalf("containerdtest: %v (apt-get install containerd runc)", err)
	}
	// A unix socket path holds at most 107 bytes: a short directory, not t.TempDir's.
	dir, err := os.MkdirTemp("", "agora-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "containerd.sock"), t: t, log: &Buffer{}}
	config := fmt.Sprintf(`# A private containerd of one test (pkg/containerdtest).
version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""

[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Socket, d.Socket+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cleanup)
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	return d
}

// Start runs the daemon (again, on the same root and state) and waits up to 30 s until it
// answers.
func (d *Daemon) Start() error {
	d.mu.Lock()
	if d.cmd != nil {
		select {
		case <-d.done:
		default:
			d.mu.Unlock()
			return fmt.Errorf("containerdtest: the private containerd runs already")
		}
	}
	cmd := exec.Command("containerd", "--config", filepath.Join(d.Dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = d.log, d.log
	// Its own process group: signals meant for the test never reach it, nor its shims.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("containerdtest: start containerd: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if d.answers() {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("containerdtest: containerd exited at start: %s", tailOf(d.log.String(), 2000))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerdtest: containerd did not answer on %s within 30s: %s", d.Socket, tailOf(d.log.String(), 2000))
		}
	}
}

// answers says whether the daemon serves its socket.
func (d *Daemon) answers() bool {
	if _, err := os.Stat(d.Socket); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := containerd.New(d.Socket, containerd.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	return err == nil && ok
}

// Kill is kill -9 of the daemon (its shims and containers run on), and waits until it is gone.
func (d *Daemon) Kill() error {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("containerdtest: the private containerd was never started")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("containerdtest: kill containerd: %w", err)
	}
	<-done
	return nil
}

// Running says whether the daemon's process runs.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Log is what the daemon wrote.
func (d *Daemon) Log() string { return d.log.String() }

// Client connects to the daemon with Namespace as the default namespace and closes the client
// when the test ends. The client outlives restarts of the daemon (gRPC dials again).
func (d *Daemon) Client(t testing.TB) *containerd.Client {
	t.Helper()
	c, err := containerd.New(d.Socket, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("containerdtest: connect to the private containerd: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// cleanup empties the daemon (started again if a test left it dead), stops it and removes its
// directory.
func (d *Daemon) cleanup() {
	t := d.t
	if !d.Running() {
		if err := d.Start(); err != nil {
			t.Logf("containerdtest: start the private containerd to clean it: %v", err)
		}
	}
	if d.Running() {
		if c, err := containerd.New(d.Socket, containerd.WithTimeout(5*time.Second)); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			nss, err := c.NamespaceService().List(ctx)
			cancel()
			if err != nil {
				t.Logf("containerdtest: namespaces of the private containerd: %v", err)
			}
			for _, ns := range nss {
				RemoveNamespace(t, c, ns)
			}
			c.Close()
		}
		d.mu.Lock()
		cmd, done := d.cmd, d.done
		d.mu.Unlock()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	// Shims containerd lost track of (killed while it created a task: containerd#6860, not
	// fixed in Debian's 1.6) would outlive it, each with a `runc init`: they go too.
	for _, sh := range d.Shims() {
		t.Logf("containerdtest: killing a shim the private containerd lost: %s/%s (pid %d)", sh.Namespace, sh.ID, sh.PID)
		sh.Kill()
	}
	// What containerd mounted under its root and state (snapshots, rootfs) goes before the dir.
	if data, err := os.ReadFile("/proc/self/mounts"); err == nil {
		lines := strings.Split(string(data), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			f := strings.Fields(lines[i])
			if len(f) > 1 && strings.HasPrefix(f[1], d.Dir+"/") {
				syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Logf("containerdtest: remove %s: %v", d.Dir, err)
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Shim is a containerd shim process of the daemon, and the container it was started for.
type Shim = shim.Process

// Shims are the shim processes started by this daemon (they name its socket), running now.
func (d *Daemon) Shims() []Shim {
	var out []Shim
	for _, sh := range shim.List() {
		if sh.Address == d.Socket {
			out = append(out, sh)
		}
	}
	return out
}
