package volumes

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/pkg/api"
)

// These tests make real ext4 images on real loop devices: they need root.

type env struct {
	dir  string
	book *checkpoint.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("persistent volumes need root (loop devices, mount)")
	}
	dir := t.TempDir()
	book, err := checkpoint.Open(filepath.Join(dir, "checkpoint.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: filepath.Join(dir, "volumes"), book: book}
	// Registered first, run last: whatever a test leaves mounted or attached goes.
	t.Cleanup(func() {
		if err := Release(e.dir); err != nil {
			t.Error(err)
		}
		book.Close()
	})
	return e
}

func (e *env) open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(Config{Dir: e.dir, Book: e.book, Logger: slog.New(slog.NewTextHandler(tWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

func mounted(t *testing.T, path string) bool {
	t.Helper()
	m, err := isMountPoint(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// writeFull writes n bytes to path and syncs them, answering the error the writer gets.
func writeFull(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := bytes.Repeat([]byte{'x'}, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestVolumeHoldsItsSizeAndNotMuchMore(t *testing.T) {
	for _, size := range []float64{8, 64, 300} {
		e := newEnv(t)
		s := e.open(t)
		began := time.Now()
		v, made, err := s.Ensure(api.PersistentVolume{ID: "db", Size: size})
		if err != nil || !made || v.State != Ready {
			t.Fatalf("Ensure %g MiB = %+v %v %v", size, v, made, err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(s.Root("db"), &st); err != nil {
			t.Fatal(err)
		}
		avail := int64(st.Bavail) * st.Bsize
		want := sizeBytes(size)
		t.Logf("%g MiB: image %d MiB (ext4 overhead %.1f %%), usable %d bytes, made and mounted in %v",
			size, v.ImageBytes>>20, 100*float64(v.ImageBytes-avail)/float64(v.ImageBytes), avail, time.Since(began).Round(time.Millisecond))
		if avail < want || avail > want+max(2<<20, want/50) {
			t.Fatalf("%g MiB: %d bytes usable, want %d to %d", size, avail, want, want+max(2<<20, want/50))
		}
		if entries, _ := os.ReadDir(s.Root("db")); len(entries) != 0 {
			t.Fatalf("a new volume's root holds %v, want nothing (no lost+found)", entries)
		}
		// The whole size can be written; then a write fails with ENOSPC and what was written stays.
		if err := writeFull(filepath.Join(s.Root("db"), "within"), want); err != nil {
			t.Fatalf("%g MiB: writing the volume's size: %v", size, err)
		}
		err = writeFull(filepath.Join(s.Root("db"), "past"), max(2<<20, want/50)+1<<20)
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("%g MiB: writing past the bound: %v, want ENOSPC", size, err)
		}
		if fi, err := os.Stat(filepath.Join(s.Root("db"), "within")); err != nil || fi.Size() != want {
			t.Fatalf("the data within the bound: %v %v", fi, err)
		}
		if used, _ := s.Usage(v); used < size || used > size+size/10+3 {
			t.Fatalf("usage %g MiB, want about %g", used, size)
		}
	}
}

func TestEnsureIsIdempotentAndRefusesAnotherSize(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	if _, made, err := s.Ensure(api.PersistentVolume{ID: "a", Size: 16}); err != nil || !made {
		t.Fatal(made, err)
	}
	if _, made, err := s.Ensure(api.PersistentVolume{ID: "a", Size: 16}); err != nil || made {
		t.Fatalf("the same again = %v %v, want there already", made, err)
	}
	if _, _, err := s.Ensure(api.PersistentVolume{ID: "a", Size: 32}); !errors.Is(err, ErrSizeConflict) {
		t.Fatalf("another size = %v, want ErrSizeConflict", err)
	}
	for _, pv := range []api.PersistentVolume{{ID: "../x", Size: 1}, {ID: "b", Size: 0}, {ID: "b", Size: -1}} {
		if _, _, err := s.Ensure(pv); err == nil {
			t.Fatalf("Ensure(%+v) took it", pv)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused volume left %v", err)
	}
}

func TestRecoveryMountsAgainAndNeverDeletes(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	for _, id := range []string{"kept", "rebooted"} {
		if _, _, err := s.Ensure(api.PersistentVolume{ID: id, Size: 16}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Root(id), "data"), []byte(id), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A stray directory no record names, and a volume being made when the agent stopped.
	stray := filepath.Join(e.dir, "stray")
	if err := os.MkdirAll(stray, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stray, "keep"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.book.SaveVolume("half", []byte(`{"id":"half","size":16,"state":"creating"}`)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "half", "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The host "reboots" for one volume: its mount is gone.
	if err := unmountAll(s.Root("rebooted")); err != nil {
		t.Fatal(err)
	}
	if mounted(t, s.Root("rebooted")) {
		t.Fatal("still mounted")
	}
	s2 := e.open(t) // as an agent killed with -9 and started again
	for _, id := range []string{"kept", "rebooted"} {
		if !mounted(t, s2.Root(id)) {
			t.Fatalf("%s is not mounted after recovery", id)
		}
		if b, err := os.ReadFile(filepath.Join(s2.Root(id), "data")); err != nil || string(b) != id {
			t.Fatalf("%s's data after recovery: %q %v", id, b, err)
		}
		if s2.Broken(id) != "" {
			t.Fatalf("%s broken: %s", id, s2.Broken(id))
		}
	}
	if b, err := os.ReadFile(filepath.Join(stray, "keep")); err != nil || string(b) != "mine" {
		t.Fatalf("the stray directory was touched: %q %v", b, err)
	}
	if _, ok := s2.Get("half"); ok {
		t.Fatal("a half-made volume was kept")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "half")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a half-made volume's directory: %v", err)
	}
	if _, _, err := s2.Ensure(api.PersistentVolume{ID: "stray", Size: 8}); !errors.Is(err, ErrStray) {
		t.Fatalf("a volume over a stray directory: %v, want ErrStray", err)
	}
	if got := s2.List(); len(got) != 2 || got[0].ID != "kept" || got[1].ID != "rebooted" || got[0].Path != s2.Root("kept") {
		t.Fatalf("List = %+v", got)
	}
}

func TestDestroyLeavesNothing(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	if _, _, err := s.Ensure(api.PersistentVolume{ID: "gone", Size: 16}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(e.dir, "gone", "image.ext4")
	if loops, _ := loopsOf(img); len(loops) != 1 {
		t.Fatalf("loop devices of the image: %v, want 1", loops)
	}
	if err := s.Destroy("gone"); err == nil {
		t.Fatal("Destroy without BeginDestroy took it")
	}
	if ok, err := s.BeginDestroy("gone"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, _, err := s.Ensure(api.PersistentVolume{ID: "gone", Size: 16}); !errors.Is(err, ErrDestroying) {
		t.Fatalf("Ensure while destroying = %v", err)
	}
	if err := s.Destroy("gone"); err != nil {
		t.Fatal(err)
	}
	if mounted(t, filepath.Join(e.dir, "gone", "root")) {
		t.Fatal("still mounted")
	}
	if loops, _ := loopsOf(img); len(loops) != 0 {
		t.Fatalf("loop devices left: %v", loops)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory left: %v", err)
	}
	if vs, _ := e.book.Volumes(); len(vs) != 0 {
		t.Fatalf("records left: %v", vs)
	}
	if ok, err := s.BeginDestroy("gone"); ok || err != nil {
		t.Fatalf("BeginDestroy of none = %v %v", ok, err)
	}
	// A destroy the agent was told but did not finish is finished at the next start.
	if _, _, err := s.Ensure(api.PersistentVolume{ID: "later", Size: 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BeginDestroy("later"); err != nil {
		t.Fatal(err)
	}
	s2 := e.open(t)
	if _, ok := s2.Get("later"); ok {
		t.Fatal("a volume being destroyed survived the restart")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "later")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory left: %v", err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134y`: `/x\y`, `/end\04`: `/end\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReleaseUnmountsAndKeepsTheData(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	if _, _, err := s.Ensure(api.PersistentVolume{ID: "r", Size: 8}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root("r"), "f"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(e.dir, "r", "image.ext4")
	if err := Release(e.dir); err != nil {
		t.Fatal(err)
	}
	if mounted(t, s.Root("r")) {
		t.Fatal("still mounted")
	}
	if loops, _ := loopsOf(img); len(loops) != 0 {
		t.Fatalf("loop devices left: %v", loops)
	}
	s2 := e.open(t)
	if b, err := os.ReadFile(filepath.Join(s2.Root("r"), "f")); err != nil || string(b) != "kept" {
		t.Fatalf("after Release and Open: %q %v", b, err)
	}
}

func TestVolumeNotMountableAtOpenIsKeptAndTriedAgain(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	if _, _, err := s.Ensure(api.PersistentVolume{ID: "late", Size: 8}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root("late"), "f"), []byte("still here"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Release(e.dir); err != nil {
		t.Fatal(err)
	}
	// Its image is away (a disk not attached yet): the store keeps it, unusable, and says why.
	img := filepath.Join(e.dir, "late", "image.ext4")
	if err := os.Rename(img, img+".away"); err != nil {
		t.Fatal(err)
	}
	s2 := e.open(t)
	if _, ok := s2.Get("late"); !ok || s2.Broken("late") == "" {
		t.Fatalf("a volume that could not be mounted: kept %v, broken %q; want kept and broken", ok, s2.Broken("late"))
	}
	if vs, _ := e.book.Volumes(); vs["late"] == nil {
		t.Fatal("its record is gone")
	}
	if _, _, err := s2.Ensure(api.PersistentVolume{ID: "late", Size: 8}); err == nil {
		t.Fatal("Ensure took a volume it cannot mount")
	}
	if err := os.Rename(img+".away", img); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Ensure(api.PersistentVolume{ID: "late", Size: 8}); err != nil || s2.Broken("late") != "" {
		t.Fatalf("Ensure once the image is back: %v, broken %q", err, s2.Broken("late"))
	}
	if b, err := os.ReadFile(filepath.Join(s2.Root("late"), "f")); err != nil || string(b) != "still here" {
		t.Fatalf("its data: %q %v", b, err)
	}
}
