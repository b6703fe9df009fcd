package containerdtest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Registry is a read-only OCI registry on loopback serving one image from an OCI layout archive
// under any name and tag, so that pulls are tested without the internet. containerd talks
// plain HTTP to registries on localhost.
type Registry struct {
	Host  string       // host:port
	Pulls atomic.Int64 // manifest requests answered
}

// ServeRegistry serves archive (an OCI image layout tar, as TestAppArchive makes) until the
// test ends.
func ServeRegistry(t testing.TB, archive []byte) *Registry {
	t.Helper()
	blobs := map[string][]byte{}
	var index ocispec.Index
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("containerdtest: registry archive: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch name := strings.TrimPrefix(h.Name, "./"); {
		case name == "index.json":
			if err := json.Unmarshal(data, &index); err != nil {
				t.Fatalf("containerdtest: registry index: %v", err)
			}
		case strings.HasPrefix(name, "blobs/sha256/"):
			blobs["sha256:"+strings.TrimPrefix(name, "blobs/sha256/")] = data
		}
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("containerdtest: registry: the archive has %d manifests, want 1", len(index.Manifests))
	}
	manifest := index.Manifests[0]
	reg := &Registry{}
	serve := func(w http.ResponseWriter, r *http.Request, digest, mediaType string) {
		data, ok := blobs[digest]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", mediaType)
		w.Header().Set("Docker-Content-Digest", digest)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method != http.MethodHead {
			w.Write(data)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == "/v2/" || p == "/v2":
			w.Write([]byte("{}"))
		case strings.Contains(p, "/manifests/"):
			reg.Pulls.Add(1)
			ref := p[strings.LastIndex(p, "/")+1:]
			if strings.HasPrefix(ref, "sha256:") && ref != manifest.Digest.String() {
				http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			serve(w, r, manifest.Digest.String(), manifest.MediaType)
		case strings.Contains(p, "/blobs/"):
			serve(w, r, p[strings.LastIndex(p, "/")+1:], "application/octet-stream")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	reg.Host = srv.Listener.Addr().String()
	return reg
}
