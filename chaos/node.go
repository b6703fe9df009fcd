package chaos

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

// Node is one process of the cluster: a master or an agent, started from the agora binary with
// the same arguments (and data dir, and ports) each time.
type Node struct {
	Name   string // m1..m3, a1..
	Master bool
	HTTP   string // http://127.0.0.1:port, or http://10.217.0.x:port in network mode
	Gossip string // 127.0.0.1:port, or 10.217.0.x:port
	NS     string // an agent's containerd namespace
	// Addr is the node's address in network mode (zero on loopback).
	Addr netip.Addr
	// DataDir is set for a node on its own small disk (Config.SmallDisk).
	DataDir string

	// clockFile holds a master's clock offset (agora master --chaos-clock-file).
	clockFile string

	bin  string
	args []string
	log  *containerdtest.Buffer
	net  *network // network mode: the cluster's namespaces
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	heal func() error // network mode: undoes CutOff
}

// Start runs the node's process (again).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := cmd.Start
	if n.net != nil {
		start = func() error { return n.net.start(n.Name, cmd) }
	}
	if err := start(); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
	return nil
}

func (n *Node) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("%s is not running", n.Name)
	}
	return n.cmd.Process.Signal(sig)
}

// Kill is kill -9, and waits until the process is gone.
func (n *Node) Kill() error {
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	<-done
	return nil
}

// Stop is SIGTERM, and waits (up to 30 s, then SIGKILL).
func (n *Node) Stop() {
	if n.signal(syscall.SIGCONT) != nil { // a paused process cannot act on SIGTERM
		return
	}
	n.signal(syscall.SIGTERM)
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		n.Kill()
	}
}

// CutOff cuts a node off the others, or heals it. In network mode every packet between it and
// the other nodes is dropped on the way (the harness still reaches it). On loopback it is
// SIGUSR1 and SIGUSR2 to a node started with --chaos-faults (pkg/faultnet): a master loses raft,
// gossip and its calls to other nodes; an agent loses gossip, its calls to masters and theirs to
// it. An agent's containers keep running either way.
func (n *Node) CutOff(on bool) error {
	if n.net != nil {
		n.mu.Lock()
		defer n.mu.Unlock()
		if !on {
			if n.heal == nil {
				return nil
			}
			err := n.heal()
			n.heal = nil
			return err
		}
		if n.heal != nil {
			return nil // cut already
		}
		var others []string
		for h := range n.net.hosts {
			if h != n.Name && h != "cl" {
				others = append(others, h)
			}
		}
		out, err := n.net.drop([]string{n.Name}, others, 100)
		if err != nil {
			return err
		}
		in, err := n.net.drop(others, []string{n.Name}, 100)
		if err != nil {
			out()
			return err
		}
		n.heal = func() error { return errors.Join(out(), in()) }
		return nil
	}
	if on {
		return n.signal(syscall.SIGUSR1)
	}
	return n.signal(syscall.SIGUSR2)
}

// SetClockOffset sets a master's wall clock this far off the host's (--chaos-clock-file, read
// again by the master every 200 ms); ClockOffset tells, from the master's own answer, how far
// off it is now.
func (n *Node) SetClockOffset(d time.Duration) error {
	if n.clockFile == "" {
		return fmt.Errorf("%s has no clock to shift", n.Name)
	}
	tmp := n.clockFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, n.clockFile)
}

// Pause is SIGSTOP; Resume is SIGCONT.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP) }

func (n *Node) Resume() error { return n.signal(syscall.SIGCONT) }

// Exited says whether the process has ended (after Start, not by Kill or Stop: a crash).
func (n *Node) Exited() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Log is what the process wrote.
func (n *Node) Log() string { return n.log.String() }

// Host is where a node's tasks listen: its address in network mode, loopback otherwise.
func (n *Node) Host() string {
	if n.Addr.IsValid() {
		return n.Addr.String()
	}
	return "127.0.0.1"
}
