// Package fetchertest serves artifacts to tests of what fetches them (agent/fetcher, the agent,
// the frameworks' fetch): an HTTP server on loopback that answers files by path, 404 for the
// rest, and counts the requests for each path, so a test can tell a cached artifact from one
// downloaded again; and TarGz makes an archive to serve.
package fetchertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Server serves files by URL path on loopback until the test ends.
type Server struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int // requests by path, found or not
}

// NewServer serves files, keyed by URL path ("/conf.txt"); it is closed when the test ends.
func NewServer(t testing.TB, files map[string][]byte) *Server {
	t.Helper()
	s := &Server{files: files, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		b, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// Count is how many times path was asked for.
func (s *Server) Count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// TarGz is a gzipped tar archive of files (name → content), each a regular file of mode 0644.
func TarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	tw := tar.NewWriter(z)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
