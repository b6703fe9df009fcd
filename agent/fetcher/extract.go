package fetcher

import (
	"archive/tar"
	"archive/zip"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
)

// maxEntries bounds the entries of one archive.
const maxEntries = 100_000

// extract unpacks the archive name (in root) into root, beside it.
func (f *Fetcher) extract(ctx context.Context, root *os.Root, name string) error {
	file, err := root.Open(name)
	if err != nil {
		return err
	}
	defer file.Close()
	u := &unpacker{ctx: ctx, root: root, left: f.cfg.MaxBytes, max: f.cfg.MaxBytes}
	switch api.ArchiveKind(name) {
	case "tar":
		return u.tar(file)
	case "tar.gz":
		z, err := gzip.NewReader(file)
		if err != nil {
			return err
		}
		return u.tar(z)
	case "tar.bz2":
		return u.tar(bzip2.NewReader(file))
	case "zip":
		fi, err := file.Stat()
		if err != nil {
			return err
		}
		return u.zip(file, fi.Size())
	}
	return nil
}

// unpacker writes an archive's entries into root, within its bounds.
type unpacker struct {
	ctx     context.Context
	root    *os.Root
	left    int64 // bytes that may still be written
	max     int64
	entries int
}

// entryName is an entry's name in the sandbox, or an error for one that would leave it.
func (u *unpacker) entryName(name string) (string, error) {
	u.entries++
	if u.entries > maxEntries {
		return "", fmt.Errorf("more than %d entries", maxEntries)
	}
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if clean == "." {
		return "", nil
	}
	if err := api.SandboxPath(clean); err != nil {
		return "", fmt.Errorf("entry %q would be outside the sandbox", name)
	}
	return clean, nil
}

func (u *unpacker) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := u.entryName(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			err = u.dir(name, mode)
		case tar.TypeReg:
			err = u.file(name, mode, tr)
		case tar.TypeSymlink:
			err = u.symlink(name, h.Linkname)
		case tar.TypeLink:
			var target string
			if target, err = u.entryName(h.Linkname); err == nil {
				err = u.link(target, name)
			}
		default:
			continue // devices, fifos: nothing a task needs from an artifact
		}
		if err != nil {
			return err
		}
	}
}

func (u *unpacker) zip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return err
	}
	for _, zf := range zr.File {
		name, err := u.entryName(zf.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		mode := zf.Mode()
		switch {
		case mode.IsDir():
			err = u.dir(name, mode.Perm())
		case mode&fs.ModeSymlink != 0:
			err = u.zipSymlink(zf, name)
		case mode.IsRegular():
			err = u.zipFile(zf, name, mode.Perm())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (u *unpacker) zipFile(zf *zip.File, name string, mode fs.FileMode) error {
	rc, err := zf.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return u.file(name, mode, rc)
}

func (u *unpacker) zipSymlink(zf *zip.File, name string) error {
	rc, err := zf.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	target, err := io.ReadAll(io.LimitReader(rc, 4096))
	if err != nil {
		return err
	}
	return u.symlink(name, string(target))
}

func (u *unpacker) parent(name string) error {
	if dir := path.Dir(name); dir != "." {
		return u.root.MkdirAll(dir, 0o755)
	}
	return nil
}

func (u *unpacker) dir(name string, mode fs.FileMode) error {
	if err := u.root.MkdirAll(name, 0o755); err != nil {
		return err
	}
	return u.root.Chmod(name, mode|0o700) // the task's user may always go in and write
}

func (u *unpacker) file(name string, mode fs.FileMode, r io.Reader) error {
	if err := u.parent(name); err != nil {
		return err
	}
	u.root.Remove(name) // an earlier entry of the name, a link among them: never written through
	out, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(contextReader{u.ctx, r}, u.left+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	u.left -= n
	if u.left < 0 {
		return fmt.Errorf("unpacks to more than the agent's limit of %d bytes (--fetch-max-bytes)", u.max)
	}
	return u.root.Chmod(name, mode|0o600)
}

// symlink makes a link inside the sandbox; os.Root never follows one out of it, and the task
// sees it in its own container.
func (u *unpacker) symlink(name, target string) error {
	if err := u.parent(name); err != nil {
		return err
	}
	u.root.Remove(name)
	return u.root.Symlink(target, name)
}

func (u *unpacker) link(target, name string) error {
	if err := u.parent(name); err != nil {
		return err
	}
	u.root.Remove(name)
	return u.root.Link(target, name)
}
