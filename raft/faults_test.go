package raft

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openSingle(t *testing.T, dir, addr string) (*Store, error) {
	t.Helper()
	return Open(Config{ID: "m1", Dir: dir, BindAddr: addr, Appliers: map[string]Applier{"kv": kvApplier()}, Logger: testLogger(t)})
}

func TestOpenRejectsAPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = openSingle(t, t.TempDir(), ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "raft: listen on "+ln.Addr().String()) {
		t.Fatalf("err = %v, want one naming the address in use", err)
	}
}

func TestOpenRejectsADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := openSingle(t, dir, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := openSingle(t, dir, "127.0.0.1:0"); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second open of one data dir: %v, want ErrDataDirInUse", err)
	}
}

func TestOpenRejectsADamagedLog(t *testing.T) {
	for name, damage := range map[string]func(path string) error{
		"truncated": func(p string) error { return os.Truncate(p, 100) },
		"garbage": func(p string) error {
			return os.WriteFile(p, []byte(strings.Repeat("not a bolt file ", 1024)), 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCluster(t, 1, func(cfg *Config) { cfg.Dir = dir })
			c.apply(put("k", "v"))
			c.kill(c.nodes[0])
			if err := damage(filepath.Join(dir, "raft.db")); err != nil {
				t.Fatal(err)
			}
			_, err := openSingle(t, dir, "127.0.0.1:0")
			if err == nil || !strings.Contains(err.Error(), "raft.db is damaged") {
				t.Fatalf("err = %v, want one saying raft.db is damaged", err)
			}
		})
	}
}

func TestOpenRejectsDamagedSnapshots(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t, 1, func(cfg *Config) { cfg.Dir = dir })
	for i := 0; i < 10; i++ {
		c.apply(put("k", "v"))
	}
	if err := c.nodes[0].store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.kill(c.nodes[0])
	states, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
	if len(states) == 0 {
		t.Fatal("no snapshot written")
	}
	for _, p := range states {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := openSingle(t, dir, "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "raft: start from "+dir) {
		t.Fatalf("err = %v, want the start to fail naming the data dir", err)
	}
	t.Logf("the error a user sees: %v", err)
}
