package fetcher

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/fetcher/fetchertest"
	"github.com/agora-sched/agora/pkg/api"
)

type tarEntry struct {
	name, body, link string
	mode             int64
	dir              bool
}

func tarGz(t *testing.T, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	tw := tar.NewWriter(z)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		switch {
		case e.dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	z.Close()
	return buf.Bytes()
}

func zipOf(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	zw.Close()
	return buf.Bytes()
}

// loopback lets the tests' fetchers download from their loopback servers, which an agent's
// fetcher refuses by default.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func newFetcher(t *testing.T, cfg Config) *Fetcher {
	t.Helper()
	if cfg.AllowNets == nil {
		cfg.AllowNets = loopback
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFetchPlainExecutableAndExtracted: a plain file lands under its URI's name or its output
// file, an executable one gets mode 0755, a tarball and a zip are unpacked beside themselves
// with their directories, modes and links, but no setuid bit.
func TestFetchPlainExecutableAndExtracted(t *testing.T) {
	srv := fetchertest.NewServer(t, map[string][]byte{
		"/conf.txt":          []byte("hello"),
		"/tool.sh":           []byte("#!/bin/sh\necho tool\n"),
		"/bundle.tar.gz":     tarGz(t, tarEntry{name: "app/", dir: true, mode: 0o755}, tarEntry{name: "app/data", body: "from the tarball"}, tarEntry{name: "app/run", body: "x", mode: 0o4755}, tarEntry{name: "app/current", link: "data"}),
		"/files.zip":         zipOf(t, map[string]string{"z/one.txt": "from the zip"}),
		"/not-extracted.tgz": tarGz(t, tarEntry{name: "hidden", body: "no"}),
	})
	f := newFetcher(t, Config{})
	sandbox := filepath.Join(t.TempDir(), "task-1")
	err := f.Fetch(context.Background(), sandbox, []api.Artifact{
		{URI: srv.URL + "/conf.txt"},
		{URI: srv.URL + "/conf.txt", OutputFile: "etc/renamed.txt"},
		{URI: srv.URL + "/tool.sh", Executable: true},
		{URI: srv.URL + "/bundle.tar.gz", Extract: true},
		{URI: srv.URL + "/files.zip", Extract: true},
		{URI: srv.URL + "/not-extracted.tgz"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(sandbox, "conf.txt")); got != "hello" {
		t.Errorf("conf.txt = %q", got)
	}
	if got := read(t, filepath.Join(sandbox, "etc/renamed.txt")); got != "hello" {
		t.Errorf("etc/renamed.txt = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(sandbox, "tool.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("tool.sh: %v %v, want mode 0755", fi.Mode(), err)
	}
	if got := read(t, filepath.Join(sandbox, "app/current")); got != "from the tarball" {
		t.Errorf("app/current (a link to app/data) = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(sandbox, "app/run")); err != nil || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("app/run: %v %v, want 0755 without setuid", fi.Mode(), err)
	}
	if got := read(t, filepath.Join(sandbox, "z/one.txt")); got != "from the zip" {
		t.Errorf("z/one.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(sandbox, "hidden")); !os.IsNotExist(err) {
		t.Errorf("an archive fetched without extract was unpacked: %v", err)
	}
}

// TestFetchFailuresNameTheURI: a 404, an unreachable server and a download over the size bound
// fail with the URI and the cause in the error.
func TestFetchFailuresNameTheURI(t *testing.T) {
	srv := fetchertest.NewServer(t, map[string][]byte{"/big": bytes.Repeat([]byte("x"), 2048)})
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	f := newFetcher(t, Config{MaxBytes: 1024})
	for _, tc := range []struct {
		uri, want string
		cache     bool
	}{
		{srv.URL + "/missing", "404 Not Found", false},
		{deadURL + "/x", "connection refused", false},
		{srv.URL + "/big", "larger than the agent's limit of 1024 bytes", false},
		{srv.URL + "/big", "larger than the agent's limit of 1024 bytes", true},
		{"file:///etc/passwd", "fetches no file:// URIs", false},
	} {
		err := f.Fetch(context.Background(), t.TempDir(), []api.Artifact{{URI: tc.uri, Cache: tc.cache}})
		if err == nil || !strings.Contains(err.Error(), tc.uri) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("fetch %s: %v, want an error naming the URI and %q", tc.uri, err, tc.want)
		}
	}
	if n, b := f.CacheUsage(); n != 0 || b != 0 {
		t.Errorf("the cache holds %d downloads (%d bytes) after failures", n, b)
	}
}

// TestArchiveBombsAndEscapesRefused: an archive that unpacks past the size bound, or whose
// entries or links lead out of the sandbox, fails and writes nothing outside it.
func TestArchiveBombsAndEscapesRefused(t *testing.T) {
	outside := t.TempDir()
	srv := fetchertest.NewServer(t, map[string][]byte{
		"/bomb.tar.gz":   tarGz(t, tarEntry{name: "a", body: strings.Repeat("0", 3000)}),
		"/escape.tar.gz": tarGz(t, tarEntry{name: "../../evil", body: "x"}),
		"/abs.tar.gz":    tarGz(t, tarEntry{name: "/tmp/evil", body: "x"}),
		"/link.tar.gz":   tarGz(t, tarEntry{name: "out", link: outside}, tarEntry{name: "out/evil", body: "x"}),
	})
	f := newFetcher(t, Config{MaxBytes: 2048})
	for _, name := range []string{"bomb", "escape", "abs", "link"} {
		err := f.Fetch(context.Background(), filepath.Join(t.TempDir(), "sb"), []api.Artifact{{URI: srv.URL + "/" + name + ".tar.gz", Extract: true}})
		if err == nil {
			t.Errorf("%s.tar.gz was unpacked", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if des, _ := os.ReadDir(outside); len(des) != 0 {
		t.Errorf("something was written outside the sandbox: %v", des)
	}
}

// TestCacheHitAndLRUEviction: an artifact fetched with cache is downloaded once for many tasks;
// one without is downloaded each time; the cache keeps within its bound by dropping the least
// recently used, and a restarted fetcher finds what it holds.
func TestCacheHitAndLRUEviction(t *testing.T) {
	srv := fetchertest.NewServer(t, map[string][]byte{"/a": bytes.Repeat([]byte("a"), 400), "/b": bytes.Repeat([]byte("b"), 400), "/c": bytes.Repeat([]byte("c"), 400)})
	dir := filepath.Join(t.TempDir(), "cache")
	f := newFetcher(t, Config{CacheDir: dir, CacheBytes: 1000})
	fetch := func(p string, cache bool) {
		t.Helper()
		sb := filepath.Join(t.TempDir(), "sb")
		if err := f.Fetch(context.Background(), sb, []api.Artifact{{URI: srv.URL + p, Cache: cache}}); err != nil {
			t.Fatal(err)
		}
		if got := read(t, filepath.Join(sb, strings.TrimPrefix(p, "/"))); len(got) != 400 || got[0] != p[1] {
			t.Fatalf("%s fetched as %d bytes", p, len(got))
		}
	}
	fetch("/a", true)
	fetch("/a", true)
	fetch("/a", true)
	if n := srv.Count("/a"); n != 1 {
		t.Fatalf("/a, cached, was downloaded %d times for three tasks", n)
	}
	fetch("/b", false)
	fetch("/b", false)
	if n := srv.Count("/b"); n != 2 {
		t.Fatalf("/b, not cached, was downloaded %d times for two tasks", n)
	}
	fetch("/b", true) // cache: a, b (800 bytes)
	fetch("/a", true) // a used last
	fetch("/c", true) // 1200 > 1000: b, the least recently used, goes
	if n, b := f.CacheUsage(); n != 2 || b != 800 {
		t.Fatalf("cache holds %d downloads, %d bytes; want 2, 800", n, b)
	}
	before := srv.Count("/b")
	fetch("/a", true)
	fetch("/c", true)
	if srv.Count("/a") != 1 || srv.Count("/c") != 1 {
		t.Fatalf("a and c were downloaded again: %d, %d", srv.Count("/a"), srv.Count("/c"))
	}
	fetch("/b", true)
	if srv.Count("/b") != before+1 {
		t.Fatal("b, evicted, was not downloaded again")
	}

	// A new fetcher on the same dir (an agent restart) keeps what it held.
	g := newFetcher(t, Config{CacheDir: dir, CacheBytes: 1000})
	if n, b := g.CacheUsage(); n != 2 || b != 800 {
		t.Fatalf("after a restart the cache holds %d downloads, %d bytes; want 2, 800", n, b)
	}
}

// TestFileURIsOnlyFromAllowedDirs: file:// reads a file under a --fetch-file-dir, and nothing
// else of the host, links out of the directory included.
func TestFileURIsOnlyFromAllowedDirs(t *testing.T) {
	allowed, other := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(allowed, "ok.txt"), []byte("allowed"), 0o644)
	os.WriteFile(filepath.Join(other, "secret"), []byte("no"), 0o644)
	os.Symlink(filepath.Join(other, "secret"), filepath.Join(allowed, "sneaky"))
	f := newFetcher(t, Config{FileDirs: []string{allowed}})
	sb := filepath.Join(t.TempDir(), "sb")
	if err := f.Fetch(context.Background(), sb, []api.Artifact{{URI: "file://" + filepath.Join(allowed, "ok.txt")}}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(sb, "ok.txt")); got != "allowed" {
		t.Fatalf("ok.txt = %q", got)
	}
	for _, p := range []string{filepath.Join(other, "secret"), filepath.Join(allowed, "sneaky")} {
		if err := f.Fetch(context.Background(), sb, []api.Artifact{{URI: "file://" + p}}); err == nil || !strings.Contains(err.Error(), "not under a directory") {
			t.Errorf("file://%s: %v, want a refusal", p, err)
		}
	}
}

// TestFetchTimeout: a server that stalls fails the fetch once the timeout ends, naming it.
func TestFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("start"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	f := newFetcher(t, Config{Timeout: 300 * time.Millisecond})
	err := f.Fetch(context.Background(), t.TempDir(), []api.Artifact{{URI: srv.URL + "/slow"}})
	if err == nil || !strings.Contains(err.Error(), "--fetch-timeout") || !strings.Contains(err.Error(), srv.URL+"/slow") {
		t.Fatalf("a stalled download: %v, want a timeout naming the URI and --fetch-timeout", err)
	}
}

func TestValidateArtifacts(t *testing.T) {
	for _, tc := range []struct {
		a     api.Artifact
		field string
	}{
		{api.Artifact{URI: ""}, "artifacts[0].uri"},
		{api.Artifact{URI: "ftp://x/y"}, "artifacts[0].uri"},
		{api.Artifact{URI: "hdfs://x/y"}, "artifacts[0].uri"},
		{api.Artifact{URI: "http:///y"}, "artifacts[0].uri"},
		{api.Artifact{URI: "file://host/y"}, "artifacts[0].uri"},
		{api.Artifact{URI: "file:///a/../etc/passwd"}, "artifacts[0].uri"},
		{api.Artifact{URI: "http://h/"}, "artifacts[0].uri"},
		{api.Artifact{URI: "http://h/x", OutputFile: "../x"}, "artifacts[0].output_file"},
		{api.Artifact{URI: "http://h/x", OutputFile: "/etc/x"}, "artifacts[0].output_file"},
		{api.Artifact{URI: "https://h/x.tar.xz", Extract: true}, "artifacts[0].extract"},
		{api.Artifact{URI: "https://h/x.tar.xz"}, ""},
		{api.Artifact{URI: "https://h/x.tgz", OutputFile: "a/b.tgz", Extract: true}, ""},
		{api.Artifact{URI: "file:///srv/x"}, ""},
	} {
		err := api.ValidateArtifacts("artifacts", []api.Artifact{tc.a})
		fe, _ := err.(*api.FieldError)
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%+v: %v", tc.a, err)
		case tc.field != "" && (fe == nil || fe.Field != tc.field):
			t.Errorf("%+v: %v, want an error on %s", tc.a, err, tc.field)
		}
	}
}
