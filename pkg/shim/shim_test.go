package shim

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestListFindsAShimByItsCommandLineAndKillEndsIt: a process whose program is named like a
// containerd shim is listed with the namespace, id and socket of its command line, and Kill
// ends it and what it started.
func TestListFindsAShimByItsCommandLineAndKillEndsIt(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err == nil {
		sh, err = filepath.EvalSymlinks(sh) // a link to a link would name the wrong program
	}
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(t.TempDir(), "containerd-shim-runc-v2")
	if err := os.Link(sh, prog); err != nil {
		b, err := os.ReadFile(sh)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(prog, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// sh -c SCRIPT NAME ARGS...: the shim's flags are the script's positional arguments, and the
	// script starts a child as a shim starts runc.
	cmd := exec.Command(prog, "-c", "sleep 60 & wait", "containerd-shim-runc-v2", "-namespace", "ns-1", "-id", "task-1", "-address", "/run/test.sock")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	var found Process
	for deadline := time.Now().Add(10 * time.Second); found.PID == 0; time.Sleep(20 * time.Millisecond) {
		for _, p := range List() {
			if p.PID == cmd.Process.Pid {
				found = p
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the shim-named process was not listed")
		}
	}
	if found.Namespace != "ns-1" || found.ID != "task-1" || found.Address != "/run/test.sock" {
		t.Fatalf("listed as %+v", found)
	}
	if err := found.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Kill did not end the shim")
	}
	for _, p := range List() {
		if p.PID == cmd.Process.Pid {
			t.Fatalf("still listed after Kill: %+v", p)
		}
	}
}
