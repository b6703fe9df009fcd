// Package shim finds the containerd shim processes of this host by reading /proc, for the
// moments when containerd itself cannot say: a shim it lost track of when it was killed while
// creating a task (containerd 1.6, containerd#6860), which only its command line still names.
package shim

import (
	"fmt"
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

// Kill ends the shim and what it started (a `runc init` waiting to start, a task's logger)
// with SIGKILL.
func (p Process) Kill() error {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID, p.PID)); err == nil {
		for _, c := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(c); err == nil {
				syscall.Kill(child, syscall.SIGKILL)
			}
		}
	}
	return syscall.Kill(p.PID, syscall.SIGKILL)
}
