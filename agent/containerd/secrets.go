package containerd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A task's secret files never touch the agent's disk and outlive nothing but the task:
//
//  1. Launch, once the container is made and the task's user known, mounts a tmpfs of the
//     task's own (SandboxRoot-secrets/<task id>, mode 0700, sized to the values) and writes
//     each value there as a file of that user, mode 0400 (writeSecrets).
//  2. The container's spec bind-mounts each file read-only at its path (secretMounts): runc
//     makes those mounts, in the container's own mount namespace, when the task is created.
//  3. Before the process starts, the agent unmounts the tmpfs and removes its directory
//     (dropSecrets): the container's mounts keep the files alive, the host keeps nothing, and
//     the kernel frees them once the task's last process has ended.
//
// An agent that stopped between 1 and 3 leaves a tmpfs behind; Recover drops every one.

// SecretFile is a secret the task reads as a file, mounted read-only at ContainerPath (relative:
// inside the sandbox).
type SecretFile struct {
	ContainerPath string
	Value         string
}

// secretRoot is where the tmpfs of each task's secret files is mounted while it launches.
func (e *Executor) secretRoot() string { return e.cfg.SandboxRoot + "-secrets" }

func (e *Executor) secretDir(taskID string) string { return filepath.Join(e.secretRoot(), taskID) }

// secretDest is where a secret file appears in the container.
func secretDest(sandbox, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(sandbox, p)
}

// checkSecretFiles refuses what cannot be mounted: paths outside the sandbox of a task without an
// image, or with '..'. Its errors name the path, never the value.
func checkSecretFiles(s Spec) error {
	for _, f := range s.SecretFiles {
		p := f.ContainerPath
		switch {
		case p == "" || slices.Contains(strings.Split(p, "/"), ".."):
			return fmt.Errorf("%w: %s: secret file path %q must not be empty nor hold '..'", ErrBadSpec, s.TaskID, p)
		case filepath.IsAbs(p) && s.Image == "":
			return fmt.Errorf("%w: %s: secret file path %q is absolute, which only a task with an image may have", ErrBadSpec, s.TaskID, p)
		case filepath.Clean(p) == "/":
			return fmt.Errorf("%w: %s: secret file path %q is the root", ErrBadSpec, s.TaskID, p)
		}
	}
	return nil
}

// secretPlaceholders makes, in the sandbox, the empty files the secret files with relative paths
// are mounted on, and their directories, so that chownTree gives them to the task's user.
// Nothing is followed out of the sandbox (what a fetched artifact put there included).
func secretPlaceholders(sandbox string, files []SecretFile) error {
	root, err := os.OpenRoot(sandbox)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range files {
		if filepath.IsAbs(f.ContainerPath) {
			continue // in the image's root: runc makes it
		}
		p := filepath.Clean(f.ContainerPath)
		if dir := filepath.Dir(p); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("the directory of secret file %s: %w", f.ContainerPath, err)
			}
		}
		if fi, err := root.Lstat(p); err == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("secret file %s: the sandbox holds a %s there, not a file", f.ContainerPath, fi.Mode().Type())
		}
		pf, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o400)
		if err != nil {
			return fmt.Errorf("secret file %s: %w", f.ContainerPath, err)
		}
		pf.Close()
	}
	return nil
}

// secretMounts are the read-only bind mounts of a task's secret files.
func (e *Executor) secretMounts(s Spec, sandbox string) []specs.Mount {
	var out []specs.Mount
	for i, f := range s.SecretFiles {
		out = append(out, specs.Mount{
			Destination: secretDest(sandbox, filepath.Clean(f.ContainerPath)),
			Source:      filepath.Join(e.secretDir(s.TaskID), strconv.Itoa(i)),
			Type:        "bind",
			Options:     []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return out
}

// writeSecrets mounts the task's tmpfs and writes its secret files there, owned by who, mode
// 0400. On error nothing is left mounted.
func (e *Executor) writeSecrets(taskID string, files []SecretFile, who identity) (err error) {
	dir := e.secretDir(taskID)
	if err := os.MkdirAll(e.secretRoot(), 0o700); err != nil {
		return fmt.Errorf("containerd: %s: secret files: %w", taskID, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("containerd: %s: secret files: %w", taskID, err)
	}
	page := os.Getpagesize()
	pages := 1
	for _, f := range files {
		pages += (len(f.Value) + page - 1) / page
	}
	opts := fmt.Sprintf("mode=0700,size=%d,nr_inodes=%d", pages*page, len(files)+2)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		os.Remove(dir)
		return fmt.Errorf("containerd: %s: mount a tmpfs for its secret files at %s: %w", taskID, dir, err)
	}
	defer func() {
		if err != nil {
			if derr := e.dropSecrets(taskID); derr != nil {
				e.logger.Error("remove a task's secret files", "task", taskID, "err", derr)
			}
		}
	}()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("containerd: %s: secret files: %w", taskID, err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("containerd: %s: %s is not the tmpfs just mounted there: no secret is written to disk", taskID, dir)
	}
	for i, f := range files {
		if err := writeSecret(filepath.Join(dir, strconv.Itoa(i)), f.Value, who); err != nil {
			return fmt.Errorf("containerd: %s: secret file %s: %w", taskID, f.ContainerPath, err)
		}
	}
	return nil
}

func writeSecret(path, value string, who identity) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o400)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if err == nil {
		err = f.Chown(int(who.UID), int(who.GID))
	}
	if err == nil {
		err = f.Chmod(0o400) // whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dropSecrets unmounts a task's tmpfs of secret files and removes its directory; what is not
// there is not an error. The container's own mounts of the files are not touched.
func (e *Executor) dropSecrets(taskID string) error {
	dir := e.secretDir(taskID)
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("containerd: %s: unmount its secret files at %s: %w", taskID, dir, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("containerd: %s: secret files: %w", taskID, err)
	}
	return nil
}

// clearSecrets drops the tmpfs of secret files an agent that stopped while launching left.
func (e *Executor) clearSecrets() error {
	entries, err := os.ReadDir(e.secretRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("containerd: secret files: %w", err)
	}
	for _, d := range entries {
		if err := e.dropSecrets(d.Name()); err != nil {
			return err
		}
		e.logger.Warn("removed the secret files of a launch the agent did not finish", "task", d.Name())
	}
	return nil
}
