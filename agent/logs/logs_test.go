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
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

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
