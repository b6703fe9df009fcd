package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

func keyLine(id string, b byte) string {
	return id + " " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) + "\n"
}

func writeKeyring(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsKeyringRefusals: a master or dev node does not start on a keyring file it cannot
// trust; the usage error (exit 2) names the flag, the file and the line, or the chmod to run.
func TestSecretsKeyringRefusals(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"bad line", "# keys\nk1\n", 0o600, "line 2: want 'ID BASE64-KEY'"},
		{"short key", "k1 " + base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!")) + "\n", 0o600, "line 1: key k1 is 16 bytes, want 32"},
		{"duplicate id", keyLine("k1", 1) + keyLine("k1", 2), 0o600, "line 2: key id k1 is given twice (first on line 1)"},
		{"readable by others", keyLine("k1", 1), 0o644, "run: chmod 600 "},
		{"no key", "# none yet\n", 0o600, "holds no key"},
	}
	for _, tt := range tests {
		for _, role := range []string{"master", "dev"} {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+"-"+role)
			writeKeyring(t, path, tt.content, tt.mode)
			args := []string{"agora", role, "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--secrets-keyring", path}
			if role == "dev" {
				args = append(args, "--agent-http", "127.0.0.1:0", "--containerd", "/nonexistent.sock")
			}
			err := run(t.Context(), args, io.Discard, io.Discard)
			if exitCode(err, io.Discard) != exitUsage || !strings.Contains(err.Error(), "--secrets-keyring: ") || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s, %s: %v; want a usage error naming --secrets-keyring, %s and %q", tt.name, role, err, path, tt.want)
			}
		}
	}
}

// TestSecretsKeyOfAMaster: the start banner says where a master's key of secrets comes from:
// derived from the cluster secret, or made in its data dir (kept 0600, the same on a restart)
// with a warning that several masters need a shared key.
func TestSecretsKeyOfAMaster(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o600)
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--cluster-secret-file", secret},
		`secrets:\s+(encrypted with key cs-[0-9a-f]{8}, derived from --cluster-secret-file)`)
	t.Log(got[0])

	p, _ := startProcess(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0"}, `secrets:\s+(encrypted)`)
	if !strings.Contains(p.out.String(), "a cluster of several masters needs --secrets-keyring or --cluster-secret-file") {
		t.Fatalf("no warning about the master's own key:\n%s", p.out.String())
	}

	data := t.TempDir()
	args := []string{"master", "--data-dir", data, "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0"}
	b, got := startCmd(t, args, `secrets:\s+encrypted with key (local-[0-9a-f]{8}), made for this master in `+regexp.QuoteMeta(filepath.Join(data, "secrets-keyring")))
	if fi, err := os.Stat(filepath.Join(data, "secrets-keyring")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the keyring file: %v %v", fi, err)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	_, again := startCmd(t, args, `secrets:\s+encrypted with key (local-[0-9a-f]{8})`)
	if again[0] != got[0] {
		t.Fatalf("after a restart the key is %s, was %s", again[0], got[0])
	}
}

// TestSecretsKeyringReloadsOnSIGHUP: an operator rotates the key of secrets by putting a new key
// first in the keyring file and sending SIGHUP: the leader seals the stored secrets again with
// it and says how many. A file that does not load changes nothing and the log says why.
func TestSecretsKeyringReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keyring")
	writeKeyring(t, keys, "# the first key encrypts\n"+keyLine("k1", 1), 0o600)
	p, got := startProcess(t, []string{"--log-level", "info", "master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--secrets-keyring", keys}, `API:\s+(http://\S+)`, `secrets:\s+(encrypted with key k1 of \S+ \(1 keys\))`)
	base := got[0]
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body, _ := call(t, "PUT", base+"/v1/secrets/db/password", "", map[string]string{"value": "rotate-me-0123"})
		if code == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT a secret: %d %s", code, body)
		}
	}
	hangup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(what string, re *regexp.Regexp) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !re.MatchString(p.out.String()); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10 s for %s; the master said:\n%s", what, p.out.String())
			}
		}
	}
	writeKeyring(t, keys, keyLine("k2", 2)+keyLine("k1", 1), 0o600)
	hangup()
	waitLog("the leader to re-encrypt with k2", regexp.MustCompile(`msg="secrets re-encrypted with the primary key" .*key=k2 count=1 `))

	writeKeyring(t, keys, keyLine("k2", 2)+keyLine("k1", 1), 0o640)
	hangup()
	waitLog("the log to refuse the keyring", regexp.MustCompile(`secrets keyring not reloaded; the one in use stays.*chmod 600`))
	if p.cmd.ProcessState != nil {
		t.Fatalf("the master exited: %s", p.out.String())
	}
	if strings.Contains(p.out.String(), "rotate-me-0123") {
		t.Fatalf("the log shows the value:\n%s", p.out.String())
	}
}

// TestTasksNeverSeeTheKeyring: the dev node's agent hides the secrets keyring from its tasks,
// as it hides the cluster secret and tokens files.
func TestTasksNeverSeeTheKeyring(t *testing.T) {
	var policy taskPolicy
	app := &cli.App{
		Flags: append(accessFlags(), taskFlags()...),
		Action: func(c *cli.Context) (err error) {
			policy, err = readTaskPolicy(c, "/var/lib/agora")
			return err
		},
	}
	if err := app.Run([]string{"agora", "--secrets-keyring", "/etc/agora/secrets-keyring", "--cluster-secret-file", "/etc/agora/cluster-secret"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(policy.protected, "/etc/agora/secrets-keyring") || !slices.Contains(policy.protected, "/var/lib/agora") {
		t.Fatalf("protected: %v", policy.protected)
	}
}

// noFileHolds fails the test for each file under root, but those under skip (a task's own
// output, where it printed the value itself), that holds value; and for each mount under root
// (a tmpfs of secret files left behind).
func noFileHolds(t *testing.T, root, value, skip string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skip != "" && path == skip {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), value) {
			t.Errorf("%s holds the secret's value", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], root) {
			t.Errorf("%s is mounted under the data dir", f[4])
		}
	}
}

// noAnswerHolds fails the test for each URL whose answer holds value.
func noAnswerHolds(t *testing.T, value string, urls ...string) {
	t.Helper()
	for _, url := range urls {
		if code, body, _ := call(t, "GET", url, "", nil); code != http.StatusOK || strings.Contains(body, value) {
			t.Errorf("GET %s: %d, shows the secret: %s", url, code, body)
		}
	}
}

// TestJobFileSecretsOnContainerd: a Metronome job's secret volume (run.volumes {containerPath,
// secret} with run.secrets) is a file the run's task reads: relative in its sandbox, absolute in
// an image, holding the value exactly, mode 0400 and owned by the task's user, on a tmpfs, not
// writable. No API shows it, no file of the dev node's data dir holds it (but the task's output,
// where the task printed it), and nothing stays mounted. What cannot be is a 422 naming the
// field.
func TestJobFileSecretsOnContainerd(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	base, agentBase, _ := startMarathonDevIn(t, dataDir, taskPorts())
	waitJob(t, "the batch framework", 20*time.Second, func() bool { return httpJSON(t, "GET", base+"/v1/jobs", nil, nil) == http.StatusOK })

	// Metronome's 422: {"message": "Object is not valid", "details": [{"path", "errors"}]}.
	for _, tc := range []struct{ volume, path, says string }{
		{`{"containerPath": "creds/db", "secret": "nope"}`, "/run/volumes(0)/secret", `references the secret "nope", which run.secrets does not define`},
		{`{"containerPath": "creds/db", "secret": "db", "hostPath": "/srv"}`, "/run/volumes(0)/secret", "no hostPath or mode"},
		{`{"containerPath": "creds/db", "secret": "db", "mode": "RO"}`, "/run/volumes(0)/secret", "no hostPath or mode"},
		{`{"containerPath": "/etc/db", "secret": "db"}`, "/run/volumes(0)/containerPath", "only a task with an image may have"},
	} {
		var e struct {
			Message string
			Details []struct {
				Path   string
				Errors []string
			}
		}
		bad := `{"id": "bad", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "secrets": {"db": {"source": "backup/dbpass"}}, "volumes": [` + tc.volume + `]}}`
		code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(bad), &e)
		if code != http.StatusUnprocessableEntity || e.Message != "Object is not valid" || len(e.Details) != 1 || e.Details[0].Path != tc.path ||
			len(e.Details[0].Errors) != 1 || !strings.Contains(e.Details[0].Errors[0], tc.says) {
			t.Errorf("volume %s: %d %+v, want 422 at %s: %q", tc.volume, code, e, tc.path, tc.says)
		}
	}

	const value = "file-s3cr3t-51\nsecond line"
	if code := httpJSON(t, "PUT", base+"/v1/secrets/backup/dbpass", map[string]string{"value": value}, nil); code != http.StatusNoContent {
		t.Fatalf("PUT secret: %d", code)
	}
	reader := `{"id": "reader", "run": {"cpus": 0.1, "mem": 32, "user": "4321",
		"cmd": "cat creds/db; echo '<<end'; stat -c 'mode=%a owner=%u:%g' creds/db; stat -f -c 'fs=%T' creds/db; if echo x >> creds/db 2>/dev/null; then echo WROTE; else echo NOT-WRITABLE; fi",
		"secrets": {"db": {"source": "backup/dbpass"}}, "volumes": [{"containerPath": "creds/db", "secret": "db"}]}}`
	inImage := `{"id": "reader-image", "run": {"docker": {"image": "` + containerdtest.TestAppImage + `"}, "args": ["-print-file", "/run/secrets/db"], "cpus": 0.1, "mem": 32,
		"secrets": {"db": {"source": "backup/dbpass"}}, "volumes": [{"containerPath": "/run/secrets/db", "secret": "db"}]}}`
	for _, job := range []string{reader, inImage} {
		if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(job), nil); code != http.StatusCreated {
			t.Fatalf("POST %s: %d", job, code)
		}
	}
	for job, want := range map[string][]string{
		"reader": {value + "<<end", "mode=400 owner=4321:4321", "fs=tmpfs", "NOT-WRITABLE"},
		"reader-image": {fmt.Sprintf("file /run/secrets/db: content=%q", value), "file /run/secrets/db: mode=0400 uid=65534 gid=65534", "file /run/secrets/db: fs=tmpfs",
			"file /run/secrets/db: chmod: chmod /run/secrets/db: read-only file system"},
	} {
		if out, err := agora(t, "job", "run", "--master", base, job, "--wait"); err != nil {
			t.Fatalf("job run %s: %v\n%s", job, err, out)
		}
		logs, err := agora(t, "job", "logs", "--master", base, job, runsOf(t, base, job)[0].ID)
		for _, w := range want {
			if err != nil || !strings.Contains(logs, w+"\n") {
				t.Errorf("job %s's output lacks %q: %v\n%s", job, w, err, logs)
			}
		}
	}

	var shown struct {
		Run struct {
			Volumes []map[string]string `json:"volumes"`
		} `json:"run"`
	}
	if httpJSON(t, "GET", base+"/v1/jobs/reader", nil, &shown); len(shown.Run.Volumes) != 1 || shown.Run.Volumes[0]["secret"] != "db" || shown.Run.Volumes[0]["containerPath"] != "creds/db" {
		t.Errorf("the job shows its volumes as %v", shown.Run.Volumes)
	}
	noAnswerHolds(t, "file-s3cr3t-51", base+"/v1/jobs/reader", base+"/v1/jobs/reader/runs?include=finished", base+"/v1/jobs?embed=history",
		base+"/scheduler/jobs", base+"/v1/tasks", base+"/v1/state", agentBase+"/v1/tasks")
	noFileHolds(t, dataDir, "file-s3cr3t-51", filepath.Join(dataDir, "agent", "sandboxes-logs"))
}

// TestMarathonFileSecretsOnContainerd: a Marathon app's secret volume (container.volumes
// {containerPath, secret} with the app's secrets) is a file each task reads, as Marathon 1.10
// writes it: relative in the sandbox, absolute in its image, 0400 and the task user's, on a
// tmpfs, read-only; no API shows the value and no file of the data dir holds it (but the task's
// output). What cannot be is a 422 naming the path.
func TestMarathonFileSecretsOnContainerd(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	base, agentBase, _ := startMarathonDevIn(t, dataDir, taskPorts())
	const value = "marathon-file-s3cr3t-88"
	app := func(id, volumes string) string {
		return `{"id": "` + id + `", "container": {"type": "DOCKER", "docker": {"image": "` + containerdtest.TestAppImage + `"}, "volumes": [` + volumes + `]},
			"args": ["-print-file", "/run/secrets/pw", "-print-file", "path/to/db/password", "-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1, "user": "4321:4322",
			"secrets": {"pw": {"source": "/db/password"}}}`
	}
	if code := httpJSON(t, "PUT", base+"/v1/secrets/db/password", map[string]string{"value": value}, nil); code != http.StatusNoContent {
		t.Fatalf("PUT secret: %d", code)
	}
	postApp(t, base, app("/vault-files", `{"containerPath": "/run/secrets/pw", "secret": "pw"}, {"containerPath": "path/to/db/password", "secret": "pw"}`))

	// Marathon's 422: {"message", "details": [{"path", "errors"}]}.
	var bad struct {
		Details []struct {
			Path   string   `json:"path"`
			Errors []string `json:"errors"`
		} `json:"details"`
	}
	for _, tc := range []struct{ body, path, says string }{
		{app("/bad", `{"containerPath": "pw", "secret": "nope"}`), "/container/volumes(0)/secret", `references the secret "nope", which /secrets does not define`},
		{app("/bad", `{"containerPath": "pw", "secret": "pw", "hostPath": "/srv"}`), "/container/volumes(0)/secret", "no hostPath or mode"},
		{`{"id": "/bad", "cmd": "true", "container": {"type": "MESOS", "volumes": [{"containerPath": "/etc/pw", "secret": "pw"}]}, "secrets": {"pw": {"source": "/db/password"}}}`,
			"/container/volumes(0)/containerPath", "only a task with an image may have"},
	} {
		bad.Details = nil
		code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(tc.body), &bad)
		if code != http.StatusUnprocessableEntity || len(bad.Details) != 1 || bad.Details[0].Path != tc.path || len(bad.Details[0].Errors) != 1 || !strings.Contains(bad.Details[0].Errors[0], tc.says) {
			t.Errorf("%s: %d %+v, want 422 at %s: %q", tc.body, code, bad, tc.path, tc.says)
		}
	}

	a := waitAppRunning(t, base, "/vault-files", 1)
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if out = readLogs(t, agentBase, a.Tasks[0].ID); strings.Count(out, ": chmod: ") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task never printed both files:\n%s", out)
		}
	}
	for _, p := range []string{"/run/secrets/pw", "path/to/db/password"} {
		f := "file " + p + ": "
		for _, want := range []string{f + `content="` + value + `"`, f + "mode=0400 uid=4321 gid=4322", f + "fs=tmpfs", f + "chmod: chmod " + p + ": read-only file system"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("the task's output lacks %q:\n%s", want, out)
			}
		}
	}

	var shown struct {
		App struct {
			Container struct {
				Volumes []map[string]string `json:"volumes"`
			} `json:"container"`
		} `json:"app"`
	}
	if httpJSON(t, "GET", base+"/v2/apps/vault-files", nil, &shown); len(shown.App.Container.Volumes) != 2 || shown.App.Container.Volumes[0]["secret"] != "pw" {
		t.Errorf("the app shows its volumes as %v", shown.App.Container.Volumes)
	}
	noAnswerHolds(t, value, base+"/v2/apps/vault-files?embed=app.tasks", base+"/v2/tasks", base+"/v1/tasks", base+"/v1/state",
		agentBase+"/v1/tasks", agentBase+"/v1/tasks/"+a.Tasks[0].ID)
	noFileHolds(t, dataDir, value, filepath.Join(dataDir, "agent", "sandboxes-logs"))
}
