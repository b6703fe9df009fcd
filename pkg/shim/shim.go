// Package shim finds the containerd shim processes of this host by reading /proc, for the
// moments when containerd itself cannot say: a shim it lost track of when it was killed while
// creating a task (containerd 1.6, containerd#6860), which only its command line still names.
package shim

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Process is a running shim: its pid, and the namespace, container id and containerd socket
// its command line names.
type Process struct {
	PID           int
	Namespace, ID string
	Address       string // the socket of the containerd that started it
}

// List answers the shims running now (processes whose program is a containerd-shim).
func List() []Process {
	procs, _ := os.ReadDir("/proc")
	var out []Process
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue // ended meanwhile
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		sh := Process{PID: pid}
		for i := 1; i+1 < len(args); i++ {
			switch args[i] {
			case "-namespace":
				sh.Namespace = args[i+1]
			case "-id":
				sh.ID = args[i+1]
			case "-address":
				sh.Address = args[i+1]
			}
		}
		out = append(out, sh)
	}
	return out
}

// Kill ends the shim and what it started (a `runc init` waiting to start, the logging process
// of a task an earlier agent started) with SIGKILL. Its children are found first and killed
// after it, so it can start no other; a shim that ended meanwhile (its last child killed, say)
// is no error.
func (p Process) Kill() error {
	children := Children(p.PID)
	err := syscall.Kill(p.PID, syscall.SIGKILL)
	for _, child := range children {
		syscall.Kill(child, syscall.SIGKILL)
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Children are the processes whose parent is pid, found by their parent in /proc/*/stat: a
// shim is a Go program, which starts processes from any of its threads, and
// /proc/PID/task/PID/children lists only those of one thread.
func Children(pid int) []int {
	procs, _ := os.ReadDir("/proc")
	var out []int
	for _, p := range procs {
		child, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after its closing paren.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
