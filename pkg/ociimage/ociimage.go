package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationImageName is the index annotation containerd reads for an image's full name on
// import; the OCI ref-name annotation carries only the tag.
const AnnotationImageName = "io.containerd.image.name"

// File is one entry of the image's single layer. A Mode with fs.ModeDir makes a directory
// (Data is ignored); anything else is a regular file.
type File struct {
	Path string // inside the image, like "/testapp" or "tmp"
	Mode fs.FileMode
	Data []byte
}

// Image describes the image to write.
type Image struct {
	Name       string   // full reference, like "agora.local/testapp:latest"
	Entrypoint []string // the config's Entrypoint
	Cmd        []string // the config's Cmd
	Env        []string // KEY=VALUE; a PATH is added when none is given
	WorkingDir string
	Files      []File
	// Created is recorded in the config; the zero value keeps the archive reproducible.
	Created time.Time
	// Architecture and OS default to those of the running program.
	Architecture, OS string
}

// Errors that WriteArchive returns for an image it cannot write.
var (
	ErrNoName   = errors.New("ociimage: image has no name")
	ErrBadPath  = errors.New("ociimage: bad file path")
	ErrNoLayout = errors.New("ociimage: nothing to pack")
)

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// WriteArchive writes img to w as an OCI image layout tar (oci-layout, index.json and blobs) with
// one uncompressed layer, and returns the descriptor of its manifest. The same Image always gives
// the same bytes, so the same digest.
func WriteArchive(w io.Writer, img Image) (ocispec.Descriptor, error) {
	if img.Name == "" {
		return ocispec.Descriptor{}, ErrNoName
	}
	if len(img.Files) == 0 {
		return ocispec.Descriptor{}, ErrNoLayout
	}
	layer, err := layerTar(img.Files)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayer,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
	}

	arch, osName := img.Architecture, img.OS
	if arch == "" {
		arch = runtime.GOARCH
	}
	if osName == "" {
		osName = runtime.GOOS
	}
	env := img.Env
	if !hasKey(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	created := img.Created.UTC()
	config, err := json.Marshal(ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: arch, OS: osName},
		Config: ocispec.ImageConfig{
			Entrypoint: img.Entrypoint,
			Cmd:        img.Cmd,
			Env:        env,
			WorkingDir: img.WorkingDir,
		},
		// The layer is not compressed, so its diff id is its digest.
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("ociimage: config: %w", err)
	}
	configDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(config),
		Size:      int64(len(config)),
	}

	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("ociimage: manifest: %w", err)
	}
	manifestDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifest),
		Size:      int64(len(manifest)),
		Platform:  &ocispec.Platform{Architecture: arch, OS: osName},
		Annotations: map[string]string{
			AnnotationImageName:       img.Name,
			ocispec.AnnotationRefName: tagOf(img.Name),
		},
	}

	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("ociimage: index: %w", err)
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("ociimage: layout: %w", err)
	}

	blobs := [][]byte{layer, config, manifest}
	if err := writeLayout(w, layout, index, blobs); err != nil {
		return ocispec.Descriptor{}, err
	}
	return manifestDesc, nil
}

// writeLayout writes an OCI image layout as a tar: oci-layout, index.json and the blobs under
// blobs/sha256/ by their digests.
func writeLayout(w io.Writer, layout, index []byte, blobs [][]byte) error {
	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("ociimage: write archive: %w", err)
		}
	}
	type entry struct {
		name string
		data []byte
	}
	entries := []entry{{ocispec.ImageLayoutFile, layout}, {"index.json", index}}
	for _, b := range blobs {
		entries = append(entries, entry{blobPath(digest.FromBytes(b)), b})
	}
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("ociimage: write archive: %w", err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("ociimage: write archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ociimage: write archive: %w", err)
	}
	return nil
}

// layerTar packs files into a tar with fixed times and owners, parents before children.
func layerTar(files []File) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if p == "" || slices.Contains(strings.Split(f.Path, "/"), "..") {
			return nil, fmt.Errorf("%w: %q", ErrBadPath, f.Path)
		}
		// Parent directories the caller did not name are made 0755.
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = File{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
		f.Path = p
		byPath[p] = f
	}
	names := make([]string, 0, len(byPath))
	for p := range byPath {
		names = append(names, p)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		f := byPath[name]
		hdr := &tar.Header{Name: name, Mode: int64(f.Mode.Perm()), Format: tar.FormatPAX, ModTime: time.Unix(0, 0)}
		if f.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		if f.Mode.IsDir() {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("ociimage: layer: %w", err)
		}
		if !f.Mode.IsDir() {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("ociimage: layer: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: layer: %w", err)
	}
	return buf.Bytes(), nil
}

func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// tagOf returns the tag of a reference like "host/name:tag" ("latest" when there is none).
func tagOf(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if colon := strings.LastIndexByte(ref, ':'); colon > slash {
		return ref[colon+1:]
	}
	return "latest"
}

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}
