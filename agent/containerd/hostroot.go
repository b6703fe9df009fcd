package containerd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agora-sched/agora/pkg/hostaccess"
)

// DefaultHostDirs are the host directories a task without an image sees, read-only: programs and
// libraries. Those that do not exist on a host are left out. The task also gets a copy of the
// host's /etc (see copyEtc), its own sandbox, /tmp, /proc, /sys and /dev.
var DefaultHostDirs = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr"}

// etcSkipped are the files and directories of /etc that the copy leaves out, besides anything
// not readable by all: passwords, sudo's rules, Agora's own keys and secrets.
var etcSkipped = map[string]bool{"shadow": true, "shadow-": true, "gshadow": true, "gshadow-": true, "sudoers": true, "sudoers.d": true, "agora": true}

// maxEtcFile bounds a file of the /etc copy; larger ones (no configuration is) are left out.
const maxEtcFile = 16 << 20

// CheckHostDirs refuses host directories that cannot be a curated read-only view: relative
// paths, the root, /etc (tasks get a copy of it), what the kernel's or runtime's own mounts
// give a container, and any that holds or lies in the agent's data dir (its sandboxes, logs
// and checkpoint).
func CheckHostDirs(dirs []string, dataDir string) error {
	dataDir = filepath.Clean(dataDir)
	for _, d := range dirs {
		clean := filepath.Clean(d)
		switch {
		case !filepath.IsAbs(d):
			return fmt.Errorf("containerd: host dir %q is not an absolute path", d)
		case clean == "/":
			return errors.New("containerd: the host's root directory cannot be a host dir: name the directories tasks need (e.g. /usr)")
		case hostaccess.Within(clean, "/etc"):
			return fmt.Errorf("containerd: host dir %s: tasks get a copy of /etc without its secrets; it cannot be mounted", d)
		case slices.ContainsFunc([]string{"/proc", "/sys", "/dev", "/tmp"}, func(p string) bool { return hostaccess.Within(clean, p) }):
			return fmt.Errorf("containerd: host dir %s: the runtime gives each task its own", d)
		case hostaccess.Within(dataDir, clean) || hostaccess.Within(clean, dataDir):
			return fmt.Errorf("containerd: host dir %s holds the agent's data (%s), which tasks must not see: keep the data dir out of the host dirs", d, dataDir)
		}
	}
	return nil
}

// prepareHostRoot makes, when the executor starts, what tasks without an image run in: an empty
// root directory (read-only to them) with the host's top-level links among the host dirs (/bin
// -> usr/bin and the like), and a fresh copy of the host's /etc.
func (e *Executor) prepareHostRoot() error {
	if err := os.MkdirAll(e.hostRoot, 0o755); err != nil {
		return fmt.Errorf("containerd: host root: %w", err)
	}
	for _, d := range e.cfg.HostDirs {
		d = filepath.Clean(d)
		fi, err := os.Lstat(d)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			continue
		}
		target, err := os.Readlink(d)
		if err != nil {
			continue
		}
		link := filepath.Join(e.hostRoot, d)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return fmt.Errorf("containerd: host root: %w", err)
		}
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return fmt.Errorf("containerd: host root: %w", err)
		}
	}
	if err := os.RemoveAll(e.hostEtc); err != nil {
		return fmt.Errorf("containerd: /etc copy: %w", err)
	}
	if err := copyEtc("/etc", e.hostEtc, e.cfg.Hidden); err != nil {
		return fmt.Errorf("containerd: /etc copy: %w", err)
	}
	return nil
}

// copyEtc copies the host's /etc (src) to dst for tasks without an image: directories, links and
// the regular files that everybody may read, without etcSkipped and without hidden paths.
func copyEtc(src, dst string, hidden []string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == src {
				return err
			}
			return nil // unreadable: left out
		}
		rel, _ := filepath.Rel(src, path)
		if rel != "." && etcSkipped[strings.Split(rel, string(filepath.Separator))[0]] || isHidden(path, hidden) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return nil
		}
		switch {
		case d.IsDir():
			if info.Mode().Perm()&0o005 != 0o005 && rel != "." {
				return filepath.SkipDir // not open to all
			}
			return os.MkdirAll(out, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return nil
			}
			return os.Symlink(target, out)
		case d.Type().IsRegular():
			if info.Mode().Perm()&0o004 == 0 || info.Size() > maxEtcFile {
				return nil
			}
			return copyFile(path, out, info.Mode().Perm()&0o755)
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return nil // gone meanwhile, or unreadable: left out
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.LimitReader(in, maxEtcFile)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// isHidden says whether path is or lies in a hidden path.
func isHidden(path string, hidden []string) bool {
	return slices.ContainsFunc(hidden, func(h string) bool { return h != "" && hostaccess.Within(path, filepath.Clean(h)) })
}

// hostMountList are the mounts of a task without an image, worked out once when the executor
// starts (as the /etc copy is made): each host dir that is a directory, recursively read-only
// (so that no filesystem mounted below it is writable either); the /etc copy; and an empty
// read-only mount over every hidden path that lies in a host dir.
func (e *Executor) hostMountList() []specs.Mount {
	var mounts []specs.Mount
	var shown []string
	for _, d := range e.cfg.HostDirs {
		d = filepath.Clean(d)
		fi, err := os.Lstat(d)
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			continue // absent here, or a link prepareHostRoot made
		}
		mounts = append(mounts, specs.Mount{Destination: d, Source: d, Type: "bind", Options: []string{"rbind", "ro", "rro", "nosuid", "nodev"}})
		shown = append(shown, d)
	}
	mounts = append(mounts, specs.Mount{Destination: "/etc", Source: e.hostEtc, Type: "bind", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}})
	for _, h := range e.cfg.Hidden {
		h = filepath.Clean(h)
		if h == "" || !slices.ContainsFunc(shown, func(d string) bool { return hostaccess.Within(h, d) }) {
			continue
		}
		fi, err := os.Stat(h)
		switch {
		case err != nil:
		case fi.IsDir():
			mounts = append(mounts, specs.Mount{Destination: h, Source: "tmpfs", Type: "tmpfs", Options: []string{"ro", "nosuid", "nodev", "noexec", "size=4k"}})
		default:
			mounts = append(mounts, specs.Mount{Destination: h, Source: "/dev/null", Type: "bind", Options: []string{"bind", "ro"}})
		}
	}
	return mounts
}
