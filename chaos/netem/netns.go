package netem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetnsDir is where `ip netns add NAME` puts the named network namespaces.
const NetnsDir = "/var/run/netns"

// netnsPath checks that name names an existing network namespace and returns its file.
func netnsPath(name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", fmt.Errorf("netem: network namespace name %q is not a name (as `ip netns add` takes)", name)
	}
	p := filepath.Join(NetnsDir, name)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("netem: network namespace %q does not exist (no %s)", name, p)
		}
		return "", fmt.Errorf("netem: network namespace %q: %w", name, err)
	}
	return p, nil
}

// InNamespace runs f on an OS thread that has entered the network namespace name (as `ip netns
// add` names it), as inNetns does: sockets f makes, and processes f starts, belong to it.
func InNamespace(name string, f func() error) error {
	p, err := netnsPath(name)
	if err != nil {
		return err
	}
	return inNetns(p, f)
}

// inNetns runs f on an OS thread that has entered the network namespace at nsPath. Sockets f
// makes belong to that namespace for good and can be used from any thread afterwards. The thread
// goes back to its own namespace after f, or, if it cannot, ends with its goroutine, so no other
// goroutine ever runs in the wrong namespace.
func inNetns(nsPath string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked unless the thread is back home: a locked thread ends with its goroutine.
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("netem: this thread's network namespace: %w", err)
			return
		}
		defer unix.Close(home)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("netem: open %s: %w%s", nsPath, err, needRoot(err))
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netem: enter %s: %w%s", nsPath, err, needRoot(err))
			return
		}
		err = f()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func needRoot(err error) string {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return " (entering a network namespace needs root: CAP_SYS_ADMIN)"
	}
	return ""
}
