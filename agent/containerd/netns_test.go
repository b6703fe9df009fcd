package containerd

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

// TestTasksJoinTheNetworkNamespaceGiven: with NetNS, a task listens in that namespace — it
// answers on the namespace's loopback and not on the host's.
func TestTasksJoinTheNetworkNamespaceGiven(t *testing.T) {
	name := fmt.Sprintf("agora-exec-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add (needs root, as the containerd tests do): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	path := "/var/run/netns/" + name
	e := newExecutorWith(t, func(c *Config) { c.NetNS = path })
	port := containerdtest.FreePort(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-sleep", "1h"}, Ports: []uint64{port}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { e.Kill(context.Background(), h.ID, time.Second); waitExit(t, e, h, 30*time.Second) }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	inside := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		return dialIn(path, a)
	}}}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := inside.Get("http://" + addr + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Fatalf("GET %s in %s = %d %q", addr, name, resp.StatusCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app never answered on %s in the namespace %s: %v", addr, name, err)
		}
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the app answers on the host's %s too: it is not in the namespace alone", addr)
	}
}

func TestNetNSMustBeANetworkNamespace(t *testing.T) {
	for path, want := range map[string]string{
		"/etc/hostname":      "is not a namespace",
		"/proc/self/ns/pid":  "of another kind than network",
		"/nonexistent/netns": "no such file",
	} {
		if err := CheckNetNS(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckNetNS(%s) = %v, want an error saying %q", path, err, want)
		}
	}
	if err := CheckNetNS("/proc/self/ns/net"); err != nil {
		t.Errorf("CheckNetNS(/proc/self/ns/net) = %v, want nil", err)
	}
}

// dialIn connects to addr from inside the network namespace at path, on a thread of its own
// that ends with the goroutine.
func dialIn(path, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
