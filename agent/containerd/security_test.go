package containerd

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

// newExecutorWith is newExecutor with some of the config changed.
func newExecutorWith(t testing.TB, change func(*Config)) *Executor {
	t.Helper()
	client := containerdtest.Client(t)
	containerdtest.ImportTestApp(t, client, containerdtest.Namespace)
	cfg := Config{Client: client, Namespace: containerdtest.Namespace, SandboxRoot: t.TempDir()}
	change(&cfg)
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// runToEnd launches a task, waits for its end and answers its stdout.
func runToEnd(t *testing.T, e *Executor, s Spec) (string, Exit) {
	t.Helper()
	h, err := e.Launch(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	ex := waitExit(t, e, h, 60*time.Second)
	return readFile(t, filepath.Join(h.Logs, "stdout")), ex
}

// lines are the output lines that start with prefix, without it.
func lines(out, prefix string) map[string]bool {
	got := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			got[rest] = true
		}
	}
	return got
}

// TestHostTaskSeesACuratedHostAsNobody: a task without an image and without a user runs as
// nobody with no capability, no new privileges and the default seccomp filter; it sees the host
// dirs read-only, a copy of /etc without shadow, its sandbox writable, and nothing else: not
// /root, not containerd's state, not the agent's data dir or key files even where they lie in a
// host dir.
func TestHostTaskSeesACuratedHostAsNobody(t *testing.T) {
	shared, err := os.MkdirTemp("/var/tmp", "agora-hostdir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	dataDir, keyFile := filepath.Join(shared, "agent-data"), filepath.Join(shared, "cluster-secret")
	os.MkdirAll(dataDir, 0o755)
	os.WriteFile(filepath.Join(dataDir, "checkpoint.db"), []byte("STATE"), 0o644)
	os.WriteFile(keyFile, []byte("SECRET-1234567890"), 0o644)
	os.WriteFile(filepath.Join(shared, "visible.txt"), []byte("VISIBLE"), 0o644)
	e := newExecutorWith(t, func(c *Config) {
		c.HostDirs = append(slices.Clone(DefaultHostDirs), shared)
		c.Hidden = []string{dataDir, keyFile}
	})
	out, ex := runToEnd(t, e, Spec{TaskID: taskID(t), Cmd: `
		echo "uid=$(id -u) gid=$(id -g)"
		grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t ' ' ' | sed 's/^/status /'
		for p in /etc/shadow /etc/gshadow /root /var/lib/containerd /run/containerd /home; do [ -e $p ] && echo "sees $p"; done
		ls -A / | sed 's/^/root /'
		cat ` + filepath.Join(shared, "visible.txt") + `; echo
		echo "data dir: [$(ls -A ` + dataDir + `)] key: [$(cat ` + keyFile + `)]"
		grep -q '^root:' /etc/passwd && echo "passwd readable"
		touch /usr/agora-test 2>/dev/null && echo "wrote /usr"
		echo hello > here.txt && echo "sandbox $(cat here.txt)"
	`})
	if ex.Code != 0 {
		t.Fatalf("exit %+v; output:\n%s", ex, out)
	}
	for _, want := range []string{"uid=65534 gid=65534", "status CapEff: 0000000000000000", "status CapBnd: 0000000000000000",
		"status NoNewPrivs: 1", "status Seccomp: 2", "VISIBLE", "data dir: [] key: []", "passwd readable", "sandbox hello"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, not := range []string{"sees ", "wrote /usr", "STATE", "SECRET-1234567890"} {
		if strings.Contains(out, not) {
			t.Errorf("output has %q", not)
		}
	}
	// The root holds the host dirs that exist here, /etc, what the runtime gives (its own
	// /proc, /sys, /dev, and fresh /tmp and /run) and the first directory of the sandbox's and
	// the shared dir's paths: nothing else of the host.
	want := map[string]bool{"etc": true, "proc": true, "sys": true, "dev": true, "tmp": true, "run": true}
	for _, d := range append(slices.Clone(DefaultHostDirs), shared, e.Sandbox("x")) {
		if _, err := os.Lstat(d); err == nil {
			want[strings.Split(strings.TrimPrefix(d, "/"), "/")[0]] = true
		}
	}
	if got := lines(out, "root "); !maps.Equal(got, want) {
		t.Errorf("the task's / holds %v, want %v\n%s", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)), out)
	}
}

// TestRootOnlyWhereAllowed: a task asking for root is refused by an executor that does not
// allow it, also when its image or the default user would be root; where allowed, it runs as
// uid 0 with containerd's default capabilities, still without new privileges.
func TestRootOnlyWhereAllowed(t *testing.T) {
	strict := newExecutorWith(t, func(*Config) {})
	for _, user := range []string{"root", "0", "0:0"} {
		if _, err := strict.Launch(context.Background(), Spec{TaskID: taskID(t), Cmd: "id", User: user}); !errors.Is(err, ErrRootRefused) {
			t.Errorf("user %q on a strict executor: %v, want ErrRootRefused", user, err)
		}
	}
	if _, err := New(Config{Client: strict.cfg.Client, SandboxRoot: t.TempDir(), DefaultUser: "root"}); err == nil {
		t.Error("an executor whose default user is root, without AllowRoot, was made")
	}
	open := newExecutorWith(t, func(c *Config) { c.AllowRoot = true })
	out, ex := runToEnd(t, open, Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-print-identity"}, User: "root"})
	if ex.Code != 0 || !strings.Contains(out, "identity: uid=0 gid=0") || strings.Contains(out, "CapEff: 0000000000000000") ||
		!strings.Contains(out, "NoNewPrivs: 1") || !strings.Contains(out, "Seccomp: 2") {
		t.Fatalf("root where allowed: exit %+v\n%s", ex, out)
	}
	// Allowing root is not defaulting to it.
	if out, _ := runToEnd(t, open, Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, Args: []string{"-print-identity"}}); !strings.Contains(out, "identity: uid=65534 gid=65534") {
		t.Fatalf("no user where root is allowed:\n%s", out)
	}
}

// TestImageTaskUsers: an image task runs as the default user when nobody names one, as a uid,
// uid:gid or a name of the host's when the image has no such user, and is refused for a user
// found nowhere. Its sandbox is its own (owner, 0750); its logs are not in it.
func TestImageTaskUsers(t *testing.T) {
	e := newExecutorWith(t, func(*Config) {})
	for user, want := range map[string]string{"": "uid=65534 gid=65534", "1234": "uid=1234 gid=1234", "1234:4321": "uid=1234 gid=4321", "nobody": "uid=65534 gid=65534"} {
		id := taskID(t)
		out, ex := runToEnd(t, e, Spec{TaskID: id, Image: containerdtest.TestAppImage, Args: []string{"-print-identity"}, User: user})
		if ex.Code != 0 || !strings.Contains(out, "identity: "+want+" ") || !strings.Contains(out, "CapEff: 0000000000000000") || !strings.Contains(out, "NoNewPrivs: 1") || !strings.Contains(out, "Seccomp: 2") {
			t.Errorf("user %q: exit %+v, want %s\n%s", user, ex, want, out)
		}
		fi, err := os.Stat(e.Sandbox(id))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if uid := strings.Fields(strings.TrimPrefix(want, "uid="))[0]; strings.TrimSpace(uid) != strconv.FormatUint(uint64(st.Uid), 10) || fi.Mode().Perm() != 0o750 {
			t.Errorf("user %q: sandbox owned by %d, mode %v", user, st.Uid, fi.Mode().Perm())
		}
		if entries, _ := os.ReadDir(e.Sandbox(id)); len(entries) != 0 {
			t.Errorf("user %q: the sandbox holds %v, want nothing (the logs are elsewhere)", user, entries)
		}
	}
	if _, err := e.Launch(context.Background(), Spec{TaskID: taskID(t), Image: containerdtest.TestAppImage, User: "no-such-user"}); !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), "no-such-user") {
		t.Errorf("an unknown user: %v", err)
	}
}

// TestEtcCopyLeavesSecretsOut: the /etc tasks without an image get has what all may read, but
// not shadow, gshadow, sudoers, Agora's own files, files only root may read, nor hidden paths.
func TestEtcCopyLeavesSecretsOut(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "etc")
	write := func(rel string, mode os.FileMode) {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(rel), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("passwd", 0o644)
	write("group", 0o644)
	write("ssl/certs/ca.pem", 0o644)
	write("shadow", 0o640)
	write("gshadow", 0o644) // even if someone left it readable
	write("sudoers.d/ops", 0o440)
	write("agora/tokens", 0o644)
	write("ssh/ssh_host_ed25519_key", 0o600)
	write("ssh/ssh_host_ed25519_key.pub", 0o644)
	write("private/key.pem", 0o644)
	os.Chmod(filepath.Join(src, "private"), 0o700)
	write("app/cluster-secret", 0o644)
	os.Symlink("passwd", filepath.Join(src, "passwd.link"))
	if err := copyEtc(src, dst, []string{filepath.Join(src, "app/cluster-secret")}); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, rel)
		}
		return nil
	})
	slices.Sort(got)
	want := []string{"group", "passwd", "passwd.link", "ssh/ssh_host_ed25519_key.pub", "ssl/certs/ca.pem"}
	if !slices.Equal(got, want) {
		t.Fatalf("the copy holds %v, want %v", got, want)
	}
}

func TestHostDirsRefused(t *testing.T) {
	const dataDir = "/var/lib/agora"
	for _, dirs := range [][]string{{"/"}, {"/etc"}, {"/etc/ssl"}, {"usr"}, {"/proc"}, {"/tmp/x"}, {"/var/lib"}, {"/var/lib/agora/sandboxes-logs"}} {
		if err := CheckHostDirs(dirs, dataDir); err == nil {
			t.Errorf("host dirs %v accepted", dirs)
		}
	}
	if err := CheckHostDirs(append(slices.Clone(DefaultHostDirs), "/opt"), dataDir); err != nil {
		t.Errorf("the defaults and /opt: %v", err)
	}
}
