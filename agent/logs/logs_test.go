package logs

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "logger" {
		if err := RunLogger(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestRotationKeepsOffsets(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFile(dir, "stdout", 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for i := 0; i < 12; i++ {
		line := fmt.Sprintf("line%02d\n", i) // 7 bytes: one per file
		f.Write([]byte(line))
		all.WriteString(line)
	}
	f.Close()
	// 12 writes of 7 bytes, at most 10 per file: each in its own file; the current one plus 2 kept.
	if got := fmt.Sprint(names(t, dir)); got != "[stdout stdout.63 stdout.70]" {
		t.Fatalf("files = %s", got)
	}
	c, end, err := Read(dir, "stdout", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if end != 84 || c.Offset != 63 || string(c.Data) != all.String()[63:] {
		t.Fatalf("read from 0: offset %d end %d %q", c.Offset, end, c.Data)
	}
	// Across a file boundary.
	if c, _, _ := Read(dir, "stdout", 66, 8); c.Offset != 66 || string(c.Data) != all.String()[66:74] {
		t.Fatalf("across files: %d %q", c.Offset, c.Data)
	}
	// A tail.
	if c, _, _ := Read(dir, "stdout", -7, 100); c.Offset != 77 || string(c.Data) != "line11\n" {
		t.Fatalf("tail: %d %q", c.Offset, c.Data)
	}
	// Past the end.
	if c, _, _ := Read(dir, "stdout", 500, 100); c.Offset != 84 || len(c.Data) != 0 {
		t.Fatalf("past the end: %d %q", c.Offset, c.Data)
	}
	// Reopened, it goes on where it was.
	f, err = OpenFile(dir, "stdout", 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("again\n"))
	f.Write([]byte("more\n"))
	f.Close()
	c, end, _ = Read(dir, "stdout", 77, 100)
	if string(c.Data) != "line11\nagain\nmore\n" || end != 95 {
		t.Fatalf("after reopening: %q end %d", c.Data, end)
	}
	if c, _, _ := Read(dir, "stderr", 0, 100); len(c.Data) != 0 {
		t.Fatalf("a stream never written: %q", c.Data)
	}
}

func TestOptionsRoundTrip(t *testing.T) {
	o := Options{Dir: "/var/lib/agora/sandboxes/a:b", MaxBytes: 123, Keep: 4}
	got, err := DecodeOptions(o.Encode())
	if err != nil || got != o {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"", "1:2", "x:1:/a", "1:0:/a", "1:1:relative"} {
		if _, err := DecodeOptions(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestFollowSeesAppendsAndRotations(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFile(dir, "stdout", 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("first\n"))
	var finished atomic.Bool
	pr, pw := io.Pipe()
	go func() {
		Follow(context.Background(), dir, "stdout", 0, pw, finished.Load)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	want := []string{"first"}
	for i := 0; i < 6; i++ {
		want = append(want, fmt.Sprintf("next-%d", i)) // 7 bytes: rotates every other write
	}
	go func() {
		for _, l := range want[1:] {
			time.Sleep(30 * time.Millisecond)
			f.Write([]byte(l + "\n"))
		}
		finished.Store(true)
	}()
	var got []string
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("followed %v, want %v", got, want)
	}
}

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	f, _ := OpenFile(dir, "stderr", 1<<20, 1)
	f.Write([]byte("oops\n"))
	var finished atomic.Bool
	h := Handler(func(r *http.Request) (string, bool) { return dir, r.URL.Path == "/t" }, func(*http.Request) bool { return finished.Load() })
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		query string
		code  int
		field string
	}{
		{"stream=stdin", 400, "stream"},
		{"stream=stderr&offset=x", 400, "offset"},
		{"stream=stderr&length=-1", 400, "length"},
		{"stream=stderr&follow=maybe", 400, "follow"},
	} {
		resp, err := http.Get(srv.URL + "/t?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Field, Message string }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || body.Field != tc.field || body.Message == "" {
			t.Errorf("%s: %d %+v", tc.query, resp.StatusCode, body)
		}
	}
	if resp, _ := http.Get(srv.URL + "/other?stream=stderr"); resp.StatusCode != 404 {
		t.Errorf("unknown task: %d", resp.StatusCode)
	}
	resp, err := http.Get(srv.URL + "/t?stream=stderr&offset=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ops\n" || resp.Header.Get(HeaderOffset) != "1" || resp.Header.Get(HeaderEnd) != "5" {
		t.Fatalf("read: %q %v", b, resp.Header)
	}
	resp, err = http.Get(srv.URL + "/t?stream=stderr&follow=true")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || sc.Text() != "oops" {
		t.Fatalf("follow: first line %q", sc.Text())
	}
	f.Write([]byte("later\n"))
	if !sc.Scan() || sc.Text() != "later" {
		t.Fatalf("follow: appended line %q", sc.Text())
	}
	finished.Store(true)
	if sc.Scan() {
		t.Fatalf("follow went on after the end: %q", sc.Text())
	}
	resp.Body.Close()
}

// TestRunLoggerAsTheShimRunsIt runs this test binary as the logging process with the shim's
// file descriptors, writes to both pipes, then closes them; SIGTERM while bytes are still in a
// pipe loses none of them.
func TestRunLoggerAsTheShimRunsIt(t *testing.T) {
	dir := t.TempDir()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	readyR, readyW, _ := os.Pipe()
	cmd := exec.Command(os.Args[0], "logger", Options{Dir: dir, MaxBytes: 1 << 20, Keep: 2}.Encode())
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outR.Close()
	errR.Close()
	readyW.Close()
	if _, err := readyR.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("ready: %v", err)
	}
	big := strings.Repeat("x", 200<<10) + "\n"
	outW.Write([]byte("hello\n"))
	errW.Write([]byte("warning\n"))
	done := make(chan struct{})
	go func() { outW.Write([]byte(big)); close(done) }()
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	outW.Close()
	errW.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logger: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stdout")); string(b) != "hello\n"+big {
		t.Fatalf("stdout: %d bytes", len(b))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stderr")); string(b) != "warning\n" {
		t.Fatalf("stderr: %q", b)
	}
}

func TestBigWritesAreSplitAtLines(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenFile(dir, "stdout", 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("aaaa\nbbbb\ncccc\n" + strings.Repeat("z", 25) + "\nend\n"))
	f.Close()
	var parts []string
	for _, n := range names(t, dir) {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		if len(b) > 10 {
			t.Errorf("%s has %d bytes, over the limit", n, len(b))
		}
		parts = append(parts, n+"="+string(b))
	}
	want := "[stdout=zzzzz\nend\n stdout.0=aaaa\nbbbb\n stdout.10=cccc\n stdout.15=zzzzzzzzzz stdout.25=zzzzzzzzzz]"
	if fmt.Sprint(parts) != want {
		t.Fatalf("files %q\nwant %q", parts, want)
	}
	if c, _, _ := Read(dir, "stdout", 0, 100); string(c.Data) != "aaaa\nbbbb\ncccc\n"+strings.Repeat("z", 25)+"\nend\n" {
		t.Fatalf("read back %q", c.Data)
	}
}
