package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func testImage() Image {
	return Image{
		Name:       "agora.local/testapp:v1",
		Entrypoint: []string{"/testapp"},
		Files: []File{
			{Path: "/testapp", Mode: 0o755, Data: []byte("#!binary")},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/etc/hostname", Mode: 0o644, Data: []byte("box\n")},
		},
	}
}

// readArchive returns the archive's entries by name.
func readArchive(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = data
	}
}

func TestWriteArchiveIsAValidLayout(t *testing.T) {
	var buf bytes.Buffer
	desc, err := WriteArchive(&buf, testImage())
	if err != nil {
		t.Fatal(err)
	}
	files := readArchive(t, buf.Bytes())

	var layout ocispec.ImageLayout
	mustJSON(t, files["oci-layout"], &layout)
	if layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version = %q", layout.Version)
	}

	var index ocispec.Index
	mustJSON(t, files["index.json"], &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != desc.Digest {
		t.Fatalf("index manifests = %+v, want the returned descriptor %s", index.Manifests, desc.Digest)
	}
	if got := index.Manifests[0].Annotations[AnnotationImageName]; got != "agora.local/testapp:v1" {
		t.Errorf("image name annotation = %q", got)
	}
	if got := index.Manifests[0].Annotations[ocispec.AnnotationRefName]; got != "v1" {
		t.Errorf("ref name annotation = %q, want the tag v1", got)
	}

	blob := func(d digest.Digest) []byte {
		t.Helper()
		b, ok := files[blobPath(d)]
		if !ok {
			t.Fatalf("blob %s missing", d)
		}
		if digest.FromBytes(b) != d {
			t.Fatalf("blob %s has digest %s", d, digest.FromBytes(b))
		}
		return b
	}
	var manifest ocispec.Manifest
	mustJSON(t, blob(desc.Digest), &manifest)
	var config ocispec.Image
	mustJSON(t, blob(manifest.Config.Digest), &config)
	if len(manifest.Layers) != 1 {
		t.Fatalf("layers = %d, want 1", len(manifest.Layers))
	}
	layer := blob(manifest.Layers[0].Digest)
	if config.RootFS.DiffIDs[0] != manifest.Layers[0].Digest {
		t.Errorf("diff id %s != layer digest %s of an uncompressed layer", config.RootFS.DiffIDs[0], manifest.Layers[0].Digest)
	}
	if got := config.Config.Entrypoint; len(got) != 1 || got[0] != "/testapp" {
		t.Errorf("entrypoint = %v", got)
	}
	if len(config.Config.Env) == 0 || config.Config.Env[0] != defaultPath {
		t.Errorf("env = %v, want a default PATH", config.Config.Env)
	}

	// The layer holds the files with their modes, and the parents nobody named.
	tr := tar.NewReader(bytes.NewReader(layer))
	modes := map[string]int64{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[hdr.Name] = hdr.Mode
	}
	want := map[string]int64{"etc/": 0o755, "etc/hostname": 0o644, "testapp": 0o755, "tmp/": 0o1777}
	for name, mode := range want {
		if got, ok := modes[name]; !ok || got != mode {
			t.Errorf("layer entry %s mode = %o (present %v), want %o", name, got, ok, mode)
		}
	}
}

func TestWriteArchiveIsReproducible(t *testing.T) {
	var a, b bytes.Buffer
	da, err := WriteArchive(&a, testImage())
	if err != nil {
		t.Fatal(err)
	}
	db, err := WriteArchive(&b, testImage())
	if err != nil {
		t.Fatal(err)
	}
	if da.Digest != db.Digest || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two writes of one image differ: %s vs %s", da.Digest, db.Digest)
	}
}

func TestWriteArchiveRejectsBadImages(t *testing.T) {
	tests := []struct {
		name string
		img  Image
		want error
	}{
		{"no name", Image{Files: []File{{Path: "a", Data: []byte("x")}}}, ErrNoName},
		{"no files", Image{Name: "x"}, ErrNoLayout},
		{"dot dot", Image{Name: "x", Files: []File{{Path: "../etc/passwd"}}}, ErrBadPath},
		{"root", Image{Name: "x", Files: []File{{Path: "/"}}}, ErrBadPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := WriteArchive(io.Discard, tt.img); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTagOf(t *testing.T) {
	tests := map[string]string{
		"agora.local/testapp:latest": "latest",
		"agora.local/testapp":        "latest",
		"localhost:5000/app":         "latest",
		"localhost:5000/app:v2":      "v2",
		"app:1.0@sha256:abc":         "1.0",
	}
	for ref, want := range tests {
		if got := tagOf(ref); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", ref, got, want)
		}
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
