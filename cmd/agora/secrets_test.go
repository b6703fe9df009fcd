package main

import (
	"bytes"
	"encoding/base64"
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
