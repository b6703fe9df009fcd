package containerdtest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"

	"github.com/agora-sched/agora/pkg/ociimage"
)

// TestAppImage is the name the test workload is imported under.
const TestAppImage = "agora.local/testapp:latest"

// Namespace is the containerd namespace tests work in, apart from the agents' "agora".
const Namespace = "agora-test"

// EnvSocket names the environment variable that points tests at a containerd socket; make test
// sets it from scripts/containerd.sh.
const EnvSocket = "AGORA_CONTAINERD_SOCK"

var (
	sockOnce sync.Once
	sock     string
	sockErr  error
)

// Socket returns the socket of a containerd that answers: $AGORA_CONTAINERD_SOCK when set,
// otherwise whatever `scripts/containerd.sh start` gives (the system containerd or a private one
// it starts). It fails the test when there is none; it never skips.
func Socket(t testing.TB) string {
	t.Helper()
	sockOnce.Do(func() { sock, sockErr = findSocket() })
	if sockErr != nil {
		t.Fatalf("containerdtest: no containerd: %v", sockErr)
	}
	return sock
}

func findSocket() (string, error) {
	if s := os.Getenv(EnvSocket); s != "" {
		return s, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "scripts", "containerd.sh"), "start")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/containerd.sh start: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Client connects to Socket's containerd with Namespace as the default namespace and closes the
// client when the test ends.
func Client(t testing.TB) *containerd.Client {
	t.Helper()
	c, err := containerd.New(Socket(t), containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("containerdtest: connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Context returns a context in Namespace, cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), Namespace))
	t.Cleanup(cancel)
	return ctx
}

var importMu sync.Mutex

// ImportTestApp builds examples/testapp, packs it into TestAppImage and imports and unpacks it
// into the client's containerd under namespace ns. Importing an image that is already there with
// the same content is cheap, so every test may call it.
func ImportTestApp(t testing.TB, client *containerd.Client, ns string) containerd.Image {
	t.Helper()
	importMu.Lock()
	defer importMu.Unlock()

	archive, err := TestAppArchive()
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	ctx := namespaces.WithNamespace(context.Background(), ns)
	// Test binaries of several packages import at once; containerd locks a blob being written
	// and answers "unavailable" to the others meanwhile, so those retry.
	var imgs []images.Image
	err = retryUnavailable(func() (err error) {
		imgs, err = client.Import(ctx, bytes.NewReader(archive))
		return err
	})
	if err != nil {
		t.Fatalf("containerdtest: import %s: %v", TestAppImage, err)
	}
	if len(imgs) != 1 || imgs[0].Name != TestAppImage {
		t.Fatalf("containerdtest: import gave %v, want one image %s", imgs, TestAppImage)
	}
	img := containerd.NewImage(client, imgs[0])
	if err := retryUnavailable(func() error { return img.Unpack(ctx, containerd.DefaultSnapshotter) }); err != nil {
		t.Fatalf("containerdtest: unpack %s: %v", TestAppImage, err)
	}
	return img
}

// retryUnavailable runs f until it stops failing with containerd's "unavailable" (a lock held
// by another test process), for up to five seconds.
func retryUnavailable(f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || !errdefs.IsUnavailable(err) || attempt == 50 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	archiveOnce sync.Once
	archive     []byte
	archiveErr  error
)

// TestAppArchive returns the OCI archive of TestAppImage, building the program once per process.
func TestAppArchive() ([]byte, error) {
	archiveOnce.Do(func() { archive, archiveErr = buildArchive() })
	return archive, archiveErr
}

func buildArchive() ([]byte, error) {
	dir, err := os.MkdirTemp("", "agora-testapp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "testapp")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/agora-sched/agora/examples/testapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build testapp: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = ociimage.WriteArchive(&buf, ociimage.Image{
		Name:       TestAppImage,
		Entrypoint: []string{"/testapp"},
		Files: []ociimage.File{
			{Path: "/testapp", Mode: 0o755, Data: data},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/etc", Mode: fs.ModeDir | 0o755},
		},
	})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// moduleRoot finds the directory holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// RemoveNamespace deletes everything in a containerd namespace a test made for itself: its
// containers (killing their tasks), its images, then the namespace. Failures are logged, not
// fatal: it runs in cleanups.
func RemoveNamespace(t testing.TB, client *containerd.Client, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	ctrs, err := client.Containers(ctx)
	if err != nil {
		t.Logf("containerdtest: list containers of %s: %v", ns, err)
		return
	}
	for _, c := range ctrs {
		if task, err := c.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
				t.Logf("containerdtest: delete task %s: %v", c.ID(), err)
			}
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			t.Logf("containerdtest: delete container %s: %v", c.ID(), err)
		}
	}
	imgs, err := client.ImageService().List(ctx)
	if err == nil {
		for _, im := range imgs {
			if err := client.ImageService().Delete(ctx, im.Name, images.SynchronousDelete()); err != nil {
				t.Logf("containerdtest: delete image %s: %v", im.Name, err)
			}
		}
	}
	if err := client.NamespaceService().Delete(ctx, ns); err != nil {
		t.Logf("containerdtest: delete namespace %s: %v", ns, err)
	}
}

// TaskPID is the pid of a container's task in namespace ns as containerd knows it; 0 when there
// is no such container or task.
func TaskPID(t testing.TB, client *containerd.Client, ns, id string) uint32 {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	c, err := client.LoadContainer(ctx, id)
	if err != nil {
		return 0
	}
	tk, err := c.Task(ctx, nil)
	if err != nil {
		return 0
	}
	return tk.Pid()
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on right now.
func FreePort(t testing.TB) uint64 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint64(ln.Addr().(*net.TCPAddr).Port)
}

// WaitListening waits until something accepts TCP connections on 127.0.0.1:port, polling for up
// to within: a task reported RUNNING has a process, not yet a listening socket.
func WaitListening(t testing.TB, port uint64, within time.Duration) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s after %s: %v", addr, within, err)
		}
	}
}
