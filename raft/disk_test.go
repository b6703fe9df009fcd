package raft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFullDiskFailsWritesAndLosesNothing fills a small tmpfs under the data dir: writes then
// fail with an error that says so, nothing acknowledged is lost, and once there is room again
// the server comes back with every acknowledged write.
func TestFullDiskFailsWritesAndLosesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test mounts a tmpfs and needs root, which CI has")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	mount := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}
	mount("-t", "tmpfs", "-o", "size=3m", "tmpfs", dir)
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	data := filepath.Join(dir, "data")

	c := newCluster(t, 1, func(cfg *Config) { cfg.Dir = data })
	nd := c.nodes[0]
	value := strings.Repeat("x", 4096)
	var acked []string
	var writeErr error
	for i := 0; i < 5000 && writeErr == nil; i++ {
		key := fmt.Sprintf("k%05d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, writeErr = nd.store.Apply(ctx, put(key, value))
		cancel()
		if writeErr == nil {
			acked = append(acked, key)
		}
	}
	if writeErr == nil {
		t.Fatal("5000 writes of 4 KiB fit in a 3 MiB tmpfs")
	}
	t.Logf("after %d acknowledged writes: %v", len(acked), writeErr)
	if !strings.Contains(writeErr.Error(), "no space left on device") && !errors.Is(writeErr, ErrNotLeader) {
		t.Errorf("the write error does not say the disk is full: %v", writeErr)
	}
	c.kill(nd)

	mount("-o", "remount,size=64m", dir)
	c.open(nd)
	state := c.converge()
	for _, key := range acked {
		if !strings.Contains(string(state), key+"=") {
			t.Fatalf("acknowledged write %s lost after the disk filled", key)
		}
	}
	c.apply(put("after", "room"))
}
