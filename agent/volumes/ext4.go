package volumes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The file systems of volumes: an ext4 image made to size, loop-mounted, and unmounted (doc.go).

// toolTimeout bounds each mkfs and mount.
const toolTimeout = 2 * time.Minute

// image is what makeImage made.
type image struct {
	imageBytes int64 // the image file's size
	avail      int64 // what statfs says a task can write, at least the volume's size
	used       int64 // what statfs counts as used on the new file system
	tries      int
	took       time.Duration
}

// makeImage makes an ext4 image at path on which at least size bytes can be written, and
// leaves it mounted at root with an empty root directory (no lost+found: programs that want
// an empty data dir, as databases do, get one). The overhead is measured: see doc.go.
func makeImage(path, root string, size int64) (image, error) {
	began := time.Now()
	// A first estimate, from what was measured (doc.go): mkfs.ext4 makes images under 512 MiB
	// with 1 KiB blocks, which cost more; the second try, if any, knows.
	overhead := size/6 + 2<<20
	if size >= 448<<20 {
		overhead = size/14 + 8<<20
	}
	for try := 1; ; try++ {
		imageBytes := roundUp(size+overhead, 1<<20)
		if err := allocate(path, imageBytes); err != nil {
			return image{}, err
		}
		if out, err := run("mkfs.ext4", "-q", "-F", "-m", "0", path); err != nil {
			return image{}, fmt.Errorf("mkfs.ext4: %w: %s", err, out)
		}
		if err := mountImage(path, root); err != nil {
			return image{}, err
		}
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err != nil {
			return image{}, errors.Join(err, unmountAll(root))
		}
		avail := int64(st.Bavail) * st.Bsize
		// A tight bound: at least size, and not more than a little over it.
		fits := avail >= size && (avail-size <= max(2<<20, size/50) || try == 3)
		if fits {
			if err := os.Remove(filepath.Join(root, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return image{}, errors.Join(err, unmountAll(root))
			}
			if err := unix.Statfs(root, &st); err != nil {
				return image{}, errors.Join(err, unmountAll(root))
			}
			used := int64(st.Blocks-st.Bfree) * st.Bsize
			return image{imageBytes: imageBytes, avail: int64(st.Bavail) * st.Bsize, used: used, tries: try, took: time.Since(began)}, nil
		}
		if err := unmountAll(root); err != nil {
			return image{}, err
		}
		if try == 3 { // avail < size: ext4 took far more than its size's share
			return image{}, fmt.Errorf("an image of %d bytes has %d usable, short of %d", imageBytes, avail, size)
		}
		// What ext4 took of this image, and a little more for the bigger or smaller one.
		overhead = imageBytes - avail
		overhead += overhead/32 + 256<<10
	}
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// allocate makes the image file of n bytes, its disk allocated (a sparse file where the file
// system cannot allocate ahead).
func allocate(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, n)
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = f.Truncate(n)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("allocate the image: %w", err)
	}
	return nil
}

// mountImage loop-mounts an ext4 image at root, without setuid programs or devices; mount(8)
// attaches the loop device with autoclear, so that the unmount frees it.
func mountImage(img, root string) error {
	if out, err := run("mount", "-t", "ext4", "-o", "loop,nosuid,nodev", img, root); err != nil {
		return fmt.Errorf("mount %s: %w: %s", img, err, out)
	}
	return nil
}

func run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return bytes.TrimSpace(out), err
}

// unmountAll unmounts whatever is mounted at path (nothing mounted is no error).
func unmountAll(path string) error {
	for range 8 {
		mounted, err := isMountPoint(path)
		if err != nil || !mounted {
			return err
		}
		if err := unix.Unmount(path, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", path)
}

// isMountPoint says whether something is mounted at path, as /proc/self/mountinfo tells.
func isMountPoint(path string) (bool, error) {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	} else if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// detachLoops detaches any loop device still attached to the image (a mount that failed half
// way, or one attached by hand), as /sys/block/loop*/loop/backing_file tells.
func detachLoops(img string) error {
	if p, err := filepath.EvalSymlinks(img); err == nil {
		img = p
	} else if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	devs, err := loopsOf(img)
	if err != nil {
		return err
	}
	var errs []error
	for _, dev := range devs {
		f, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil && !errors.Is(err, unix.ENXIO) {
			errs = append(errs, fmt.Errorf("%s: %w", dev, err))
		}
		f.Close()
	}
	return errors.Join(errs...)
}

// loopsOf lists the loop devices whose backing file is img.
func loopsOf(img string) ([]string, error) {
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, err
	}
	var devs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // detached meanwhile
		}
		if strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)") == img {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return devs, nil
}
