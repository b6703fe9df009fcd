package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/clock"
	"golang.org/x/sys/unix"
)

// shimWrite appends to a stream's spool as containerd's shim does (O_WRONLY|O_APPEND, no
// O_CREATE).
func shimWrite(t *testing.T, dir, stream, s string) {
	t.Helper()
	f, err := os.OpenFile(SpoolPath(dir, stream), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// stoppedPump is a pump whose own goroutine never ticks (its clock does not move): the test
// copies with pumpNow, one tick at a time. It forgets every task when the test ends, which ends
// its goroutine.
func stoppedPump(t *testing.T, cfg PumpConfig) *Pump {
	cfg.Clock = clock.NewFake(time.Unix(0, 0))
	p := NewPump(cfg)
	t.Cleanup(func() {
		p.mu.Lock()
		var dirs []string
		for d := range p.tasks {
			dirs = append(dirs, d)
		}
		p.mu.Unlock()
		for _, d := range dirs {
			p.Forget(d)
		}
	})
	return p
}

// pumpNow is one tick of the pump.
func pumpNow(p *Pump) { pumpReading(p, copyBuf) }

// pumpReading is one tick of a pump that reads the spools n bytes at a time.
func pumpReading(p *Pump, n int) {
	p.mu.Lock()
	var list []*spooled
	for _, s := range p.tasks {
		list = append(list, s)
	}
	p.mu.Unlock()
	p.pumpAll(list, make([]byte, n))
}

// readAll is a stream's whole history as Read answers it.
func readAll(t *testing.T, dir, stream string) string {
	t.Helper()
	c, _, err := Read(dir, stream, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return string(c.Data)
}

// spoolDir is a log dir with spools, as the executor makes it.
func spoolDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := MakeSpools(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPumpCopiesEachStreamIntoItsFiles: what the shim appends to each spool reaches that
// stream's files, in order; a partial last line waits one tick for its end, then goes as it is.
func TestPumpCopiesEachStreamIntoItsFiles(t *testing.T) {
	dir := spoolDir(t)
	p := stoppedPump(t, PumpConfig{})
	if !p.Add(dir) {
		t.Fatal("Add found no spools")
	}
	shimWrite(t, dir, "stdout", "one\ntw")
	shimWrite(t, dir, "stderr", "oops\n")
	pumpNow(p)
	if got, errs := readAll(t, dir, "stdout"), readAll(t, dir, "stderr"); got != "one\n" || errs != "oops\n" {
		t.Fatalf("after a tick: stdout %q, stderr %q; want the whole lines", got, errs)
	}
	pumpNow(p)
	if got := readAll(t, dir, "stdout"); got != "one\ntw" {
		t.Fatalf("a tick later: stdout %q; want the partial line too", got)
	}
	shimWrite(t, dir, "stdout", "o\nthree\n")
	pumpNow(p)
	if got := readAll(t, dir, "stdout"); got != "one\ntwo\nthree\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := fmt.Sprint(names(t, dir)); got != "[.stderr.spool .stdout.spool stderr stdout]" {
		t.Fatalf("files %s", got)
	}
	if err := p.Drain(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(names(t, dir)); got != "[stderr stdout]" {
		t.Fatalf("after the drain: files %s, want the spools gone", got)
	}
	if p.Len() != 0 {
		t.Fatalf("the pump still holds %d tasks", p.Len())
	}
}

// TestPumpRunsOnItsOwn: with a real clock the pump copies without being asked, and its
// goroutine ends once it has no task left.
func TestPumpRunsOnItsOwn(t *testing.T) {
	dir := spoolDir(t)
	p := NewPump(PumpConfig{Every: 10 * time.Millisecond})
	p.Add(dir)
	shimWrite(t, dir, "stdout", "hello\n")
	for deadline := time.Now().Add(10 * time.Second); readAll(t, dir, "stdout") != "hello\n"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never copied: %q", readAll(t, dir, "stdout"))
		}
	}
	p.Forget(dir)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pump's goroutine runs on without a task")
		}
	}
}

// TestPumpRotationKeepsLinesWhole: a task's output copied over ticks and reads that end in the
// middle of lines, rotated at a limit, still has every file hold whole lines within the limit,
// together the output. The limit and the lengths are chosen so that a line cut by the pump's
// first read, and one cut by a tick, each come where the file is too full for the whole line
// (at 80 of 95 bytes): copied as they came, their ends would start the next files.
func TestPumpRotationKeepsLinesWhole(t *testing.T) {
	dir := spoolDir(t)
	p := stoppedPump(t, PumpConfig{MaxBytes: 95, Keep: 1000})
	p.Add(dir)
	// A 24-byte line, then 20-byte ones: files of 84 and then 80 bytes (4 lines; a fifth does
	// not fit). The line at 884 is 80 bytes into its file: a read of 896 bytes cuts it.
	out := "header, 24 bytes long..\n"
	for i := 0; i < 300; i++ {
		out += fmt.Sprintf("L%05d %s\n", i, strings.Repeat("x", 12))
	}
	tickCut := len(out) - 10 // the last line begins 80 bytes into its file; a tick cuts it
	shimWrite(t, dir, "stdout", out[:tickCut])
	pumpReading(p, 896)
	shimWrite(t, dir, "stdout", out[tickCut:])
	pumpReading(p, 896)
	pumpReading(p, 896)
	if got := readAll(t, dir, "stdout"); got != out {
		t.Fatalf("read back %q\nwant %q", got, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "stdout*"))
	if len(files) < 70 {
		t.Fatalf("%d files: the limit did not rotate", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 95 || len(b) == 0 || b[len(b)-1] != '\n' || b[0] != 'L' && b[0] != 'h' {
			t.Fatalf("%s: %d bytes, not whole lines within the limit: %q", f, len(b), b)
		}
	}
}

// TestPumpResumesWhereTheFilesEnd: a pump stopped (the agent stops) and another started on the
// same dir (the agent restarted) copy everything the task wrote, once, in order, whatever it
// wrote while no pump ran; and while the first one holds the spools the second copies nothing.
func TestPumpResumesWhereTheFilesEnd(t *testing.T) {
	dir := spoolDir(t)
	first := stoppedPump(t, PumpConfig{MaxBytes: 100, Keep: 100})
	first.Add(dir)
	var want strings.Builder
	write := func(from, to int) {
		for i := from; i < to; i++ {
			l := fmt.Sprintf("line-%d\n", i)
			shimWrite(t, dir, "stdout", l)
			want.WriteString(l)
		}
	}
	write(0, 20)
	pumpNow(first)
	second := stoppedPump(t, PumpConfig{MaxBytes: 100, Keep: 100})
	second.Add(dir)
	write(20, 30)
	pumpNow(second)
	if got := readAll(t, dir, "stdout"); got != want.String()[:len(got)] || strings.Contains(got, "line-20") {
		t.Fatalf("the second pump copied while the first held the spool: %q", got)
	}
	pumpNow(first)
	first.Forget(dir)
	write(30, 45) // no pump copies these
	pumpNow(second)
	write(45, 50)
	pumpNow(second)
	if got := readAll(t, dir, "stdout"); got != want.String() {
		t.Fatalf("after the restart:\n%q\nwant\n%q", got, want.String())
	}
}

// TestMakeSpoolsContinuesAStream: spools made in a dir whose streams already have files start at
// their end, so that the pump copies the new output after the old, not over it.
func TestMakeSpoolsContinuesAStream(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFile(dir, "stdout", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("earlier\n"))
	f.Close()
	if err := MakeSpools(dir); err != nil {
		t.Fatal(err)
	}
	p := stoppedPump(t, PumpConfig{})
	p.Add(dir)
	shimWrite(t, dir, "stdout", "later\n")
	if err := p.Drain(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, dir, "stdout"); got != "earlier\nlater\n" {
		t.Fatalf("stdout %q", got)
	}
}

// blocksOf is the disk a file takes, in bytes.
func blocksOf(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestPumpFreesTheSpoolsBlocks: what the pump copied leaves the spool's disk, the spool keeping
// its size (the shim's offsets).
func TestPumpFreesTheSpoolsBlocks(t *testing.T) {
	dir := spoolDir(t)
	var logs bytes.Buffer
	p := stoppedPump(t, PumpConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	p.Add(dir)
	line := strings.Repeat("y", 99) + "\n"
	shimWrite(t, dir, "stdout", strings.Repeat(line, 20_000)) // 2 MB
	spool := SpoolPath(dir, "stdout")
	if b := blocksOf(t, spool); b < 2_000_000 {
		t.Fatalf("the spool takes %d bytes of disk before the pump ran", b)
	}
	pumpNow(p)
	if b := blocksOf(t, spool); b > 64<<10 {
		t.Fatalf("the spool takes %d bytes of disk after the pump copied all of it (%s)", b, logs.String())
	}
	if info, _ := os.Stat(spool); info.Size() != 2_000_000 {
		t.Fatalf("the spool's size is %d, want 2000000 kept", info.Size())
	}
	shimWrite(t, dir, "stdout", strings.Repeat(line, 20_000))
	pumpNow(p)
	if b := blocksOf(t, spool); b > 64<<10 {
		t.Fatalf("the spool takes %d bytes of disk after a second copy", b)
	}
	if c, end, _ := Read(dir, "stdout", -100, 100); end != 4_000_000 || string(c.Data) != line {
		t.Fatalf("end %d, tail %q", end, c.Data)
	}
}

// TestPumpWhereHolesCannotBePunched: a filesystem that refuses to punch holes is said once, and
// the pump copies on; the spools go when drained.
func TestPumpWhereHolesCannotBePunched(t *testing.T) {
	dirs := []string{spoolDir(t), spoolDir(t)}
	var logs bytes.Buffer
	p := stoppedPump(t, PumpConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	punches := 0
	p.punch = func(*os.File, int64, int64) error { punches++; return unix.EOPNOTSUPP }
	line := strings.Repeat("z", 4095) + "\n"
	for _, d := range dirs {
		p.Add(d)
	}
	for i := 0; i < 3; i++ {
		for _, d := range dirs {
			shimWrite(t, d, "stdout", strings.Repeat(line, 4))
		}
		pumpNow(p)
	}
	for _, d := range dirs {
		if got := readAll(t, d, "stdout"); got != strings.Repeat(line, 12) {
			t.Fatalf("%s: copied %d bytes, want %d", d, len(got), 12*len(line))
		}
		if b := blocksOf(t, SpoolPath(d, "stdout")); b < int64(12*len(line)) {
			t.Fatalf("the spool takes %d bytes of disk: it was freed after all", b)
		}
	}
	if n := strings.Count(logs.String(), "cannot punch holes"); n != 1 || punches != 2 {
		t.Fatalf("said %d times, punched %d times (once per spool, want 2):\n%s", n, punches, logs.String())
	}
	for _, d := range dirs {
		if err := p.Drain(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if HasSpools(d) {
			t.Fatalf("%s: spools left after the drain", d)
		}
	}
}

// TestDrainOfATaskNoPumpHeld: a task that ended while no pump ran (the agent was down) has all
// its output, a partial last line too, copied by the restarted agent's drain; a drain waits
// while another pump still holds a spool.
func TestDrainOfATaskNoPumpHeld(t *testing.T) {
	dir := spoolDir(t)
	shimWrite(t, dir, "stdout", "first\nlast, no newline")
	shimWrite(t, dir, "stderr", "warning\n")
	holder := stoppedPump(t, PumpConfig{})
	holder.Add(dir)
	pumpNow(holder)
	p := NewPump(PumpConfig{Every: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Drain(ctx, dir); err == nil {
		t.Fatal("drained while another pump held the spools")
	}
	if !HasSpools(dir) {
		t.Fatal("a failed drain removed the spools")
	}
	holder.Forget(dir)
	if err := p.Drain(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if got, errs := readAll(t, dir, "stdout"), readAll(t, dir, "stderr"); got != "first\nlast, no newline" || errs != "warning\n" {
		t.Fatalf("stdout %q, stderr %q", got, errs)
	}
	if HasSpools(dir) {
		t.Fatal("spools left")
	}
	if err := p.Drain(context.Background(), dir); err != nil {
		t.Fatalf("a second drain: %v", err)
	}
}

// BenchmarkFollowLatency: how long a line the shim appends to a spool takes to reach a reader
// following the stream (the pump's tick, then Follow's poll), with the default periods, lines
// written at random moments.
func BenchmarkFollowLatency(b *testing.B) {
	dir := b.TempDir()
	if err := MakeSpools(dir); err != nil {
		b.Fatal(err)
	}
	p := NewPump(PumpConfig{})
	p.Add(dir)
	defer p.Forget(dir)
	spool, err := os.OpenFile(SpoolPath(dir, "stdout"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer spool.Close()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { Follow(ctx, dir, "stdout", 0, pw, func() bool { return false }); pw.Close() }()
	lines := make(chan time.Time)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := pr.Read(buf); err != nil {
				return
			}
			lines <- time.Now()
		}
	}()
	var total, worst time.Duration
	n := 0
	for b.Loop() {
		time.Sleep(rand.N(400 * time.Millisecond)) // lines come at any moment of the ticks
		start := time.Now()
		spool.WriteString("a line\n")
		took := (<-lines).Sub(start)
		total += took
		worst = max(worst, took)
		n++
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(n), "mean-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "max-ms")
}

// BenchmarkPumpMemoryPerTask: the Go heap a pump holds per task whose spools it copies (two
// streams, each its spool and its current file open: four file descriptors).
func BenchmarkPumpMemoryPerTask(b *testing.B) {
	const tasks = 500
	root := b.TempDir()
	var dirs []string
	for i := 0; i < tasks; i++ {
		d := filepath.Join(root, fmt.Sprint(i))
		if err := os.Mkdir(d, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := MakeSpools(d); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	var total int64
	for b.Loop() {
		p := NewPump(PumpConfig{Clock: clock.NewFake(time.Unix(0, 0))})
		before := heap()
		for _, d := range dirs {
			p.Add(d)
		}
		total += heap() - before
		for _, d := range dirs {
			p.Forget(d)
		}
	}
	b.ReportMetric(float64(total)/float64(b.N*tasks), "heap-per-task-B")
}
