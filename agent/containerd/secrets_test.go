package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

// newPrivateExecutor is an executor in a containerd namespace of the test's own, with the test
// image imported there as this build makes it.
func newPrivateExecutor(t *testing.T) *Executor {
	t.Helper()
	ns := fmt.Sprintf("agora-test-secrets-%d", time.Now().UnixNano())
	e := newExecutorWith(t, func(c *Config) { c.Namespace = ns })
	containerdtest.ImportTestApp(t, e.cfg.Client, ns)
	t.Cleanup(func() { containerdtest.RemoveNamespace(t, e.cfg.Client, ns) })
	return e
}

// hostMountsUnder lists the host's mount points under dir.
func hostMountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// TestSecretFilesAreTheTasksOwnAndOffTheHost: a task's secret files hold their values byte for
// byte, on a tmpfs, mode 0400 and owned by the user it runs as, read-only even to that user; a
// relative path is in the sandbox, an absolute one in an image's root. Once Launch returns the
// host holds no copy: no tmpfs of them is mounted, their directory is gone, and the sandbox's
// file under the mount is empty.
func TestSecretFilesAreTheTasksOwnAndOffTheHost(t *testing.T) {
	e := newPrivateExecutor(t)
	const dbValue = "line one\nzwei – ü\n"
	const tokenValue = "tok-3b1f"

	id := taskID(t)
	h, err := e.Launch(context.Background(), Spec{TaskID: id, User: "4321", Cmd: `
		cat secrets/db; echo "<<end"
		stat -c 'mode=%a owner=%u:%g' secrets/db
		stat -f -c 'fs=%T' secrets/db
		if echo x >> secrets/db 2>/dev/null; then echo WROTE; else echo NOT-WRITABLE; fi
		if chmod 600 secrets/db 2>/dev/null; then echo CHMODDED; else echo NO-CHMOD; fi
		grep -q " $PWD/secrets/db ro," /proc/self/mountinfo && echo MOUNTED-RO
		cat other; echo "<<end"
	`, SecretFiles: []SecretFile{{ContainerPath: "secrets/db", Value: dbValue}, {ContainerPath: "other", Value: tokenValue}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.secretDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the task's secret dir on the host once it started: %v, want it gone", err)
	}
	if m := hostMountsUnder(t, e.secretRoot()); len(m) > 0 {
		t.Errorf("the host still mounts %v", m)
	}
	if b, err := os.ReadFile(filepath.Join(e.Sandbox(id), "secrets", "db")); err != nil || len(b) != 0 {
		t.Errorf("the sandbox's file on the host: %q %v, want it empty (the value is in the container's mount only)", b, err)
	}
	ex := waitExit(t, e, h, 60*time.Second)
	out := readFile(t, filepath.Join(h.Logs, "stdout"))
	if ex.Code != 0 {
		t.Fatalf("exit %+v\n%s", ex, out)
	}
	for _, want := range []string{dbValue + "<<end", "mode=400 owner=4321:4321", "fs=tmpfs", "NOT-WRITABLE", "NO-CHMOD", "MOUNTED-RO", tokenValue + "<<end"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the task's output lacks %q:\n%s", want, out)
		}
	}

	// An image task, at an absolute path, as uid:gid.
	out, ex = runToEnd(t, e, Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, User: "1234:4321", Args: []string{"-print-file", "/run/secrets/token"},
		SecretFiles: []SecretFile{{ContainerPath: "/run/secrets/token", Value: tokenValue}}})
	if ex.Code != 0 {
		t.Fatalf("exit %+v\n%s", ex, out)
	}
	const f = "file /run/secrets/token: "
	for _, want := range []string{f + `content="` + tokenValue + `"`, f + "mode=0400 uid=1234 gid=4321", f + "fs=tmpfs", f + "chmod: chmod /run/secrets/token: read-only file system"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the image task's output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, f+"write: open /run/secrets/token: ") || strings.Contains(out, f+"write: ok") {
		t.Errorf("the image task could write its secret file:\n%s", out)
	}
	if m := hostMountsUnder(t, e.secretRoot()); len(m) > 0 {
		t.Errorf("the host still mounts %v", m)
	}
}

// TestSecretFilesRefused: what cannot be mounted is refused before anything is made, naming the
// path and never the value.
func TestSecretFilesRefused(t *testing.T) {
	e := newPrivateExecutor(t)
	for _, s := range []Spec{
		{TaskID: taskID(t), Cmd: "true", SecretFiles: []SecretFile{{ContainerPath: "/etc/db", Value: "v-4821"}}},
		{TaskID: taskID(t), Cmd: "true", SecretFiles: []SecretFile{{ContainerPath: "a/../../db", Value: "v-4821"}}},
		{TaskID: taskID(t), Image: containerdtest.TestAppImage, SecretFiles: []SecretFile{{ContainerPath: "/", Value: "v-4821"}}},
	} {
		_, err := e.Launch(context.Background(), s)
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), s.SecretFiles[0].ContainerPath) || strings.Contains(err.Error(), "v-4821") {
			t.Errorf("%q: %v, want ErrBadSpec naming the path", s.SecretFiles[0].ContainerPath, err)
		}
	}
	if entries, _ := os.ReadDir(e.secretRoot()); len(entries) > 0 {
		t.Errorf("refused launches left %v", entries)
	}
}

// TestRecoverDropsLeftSecretFiles: the tmpfs of a launch an agent did not finish (it stopped
// between writing the files and starting the task) is gone after Recover.
func TestRecoverDropsLeftSecretFiles(t *testing.T) {
	e := newPrivateExecutor(t)
	if err := e.writeSecrets("left", []SecretFile{{ContainerPath: "db", Value: "v"}}, identity{UID: 65534, GID: 65534}); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.secretDir("left"), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("written secret files: %v, type %x", err, st.Type)
	}
	if _, _, err := e.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.secretDir("left")); !errors.Is(err, os.ErrNotExist) || len(hostMountsUnder(t, e.secretRoot())) > 0 {
		t.Fatalf("after Recover: %v, mounts %v", err, hostMountsUnder(t, e.secretRoot()))
	}
}
