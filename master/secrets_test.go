package master

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/raft"
)

func testKeyring(t *testing.T, ids ...string) *keyring.Keyring {
	t.Helper()
	var keys []keyring.Key
	for _, id := range ids {
		sum := sha256.Sum256([]byte(id)) // one key per id, the same in every test
		keys = append(keys, keyring.Key{ID: id, Bytes: sum[:]})
	}
	k, err := keyring.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// storedSecret is what the store holds for a secret, as raw bytes.
func storedSecret(t *testing.T, r *running, name string) []byte {
	t.Helper()
	v, err := r.m.store.View(context.Background(), raft.Stale)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := v.Get(secrets.Namespace, name)
	if !ok {
		t.Fatalf("no secret %s in the store", name)
	}
	return b
}

func storedKeyID(t *testing.T, r *running, name string) string {
	t.Helper()
	b := storedSecret(t, r, name)
	if !keyring.IsSealed(b) {
		return "(plain)"
	}
	id, err := keyring.KeyID(b)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// filesHolding lists the files under dir whose bytes contain s.
func filesHolding(t *testing.T, dir, s string) (holding []string, files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(s)) {
			holding = append(holding, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return holding, files
}

func readSecret(t *testing.T, r *running, name string) string {
	t.Helper()
	v, err := r.m.Secret(context.Background(), name)
	if err != nil {
		t.Fatalf("Secret(%s): %v", name, err)
	}
	return v
}

// TestSecretsAreSealedAtRest is issue 16's check: `strings raft.db` and a snapshot do not show
// a secret's value. The value is put through the API, raft takes a snapshot, and every file of
// the master's data dir is read as bytes: none holds the value (the name, a key of the store,
// is there in plain, which shows the files were read). The value still reads back, across a
// restart from the snapshot, and no log line shows it.
func TestSecretsAreSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const name, value = "db/recognisable-name", "VALUE-0f-a-5ecret-8c2e41"
	r := startMasterConfig(t, Config{DataDir: dir, Logger: logger})
	leaderOf(t, r)
	putSecret(t, r.url("/v1/secrets/"+name), value)
	if got := readSecret(t, r, name); got != value {
		t.Fatalf("Secret = %q", got)
	}
	if err := r.m.store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	snapshots, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
	if len(snapshots) == 0 {
		t.Fatal("raft took no snapshot")
	}
	holding, files := filesHolding(t, dir, value)
	if len(holding) > 0 {
		t.Fatalf("the value is in plain text in %v", holding)
	}
	withName, _ := filesHolding(t, dir, name)
	if !slicesContain(withName, filepath.Join(dir, "raft", "raft.db")) || !slicesContain(withName, snapshots[0]) {
		t.Fatalf("the secret's name is not in raft.db and the snapshot (%v): were the files read?", withName)
	}
	t.Logf("%d files read; the name is in %d of them, the value in none", files, len(withName))

	again := startMasterConfig(t, Config{DataDir: dir, Logger: logger})
	leaderOf(t, again)
	if got := readSecret(t, again, name); got != value {
		t.Fatalf("after a restart from the snapshot: Secret = %q", got)
	}
	if strings.Contains(logs.String(), value) {
		t.Fatalf("a log line shows the value:\n%s", logs.String())
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestSecretsRotateToThePrimaryKey: a secret sealed with the old primary key is sealed again
// with the new one when the master leads with the new key first (a restart), and again when
// its keyring is replaced while it leads (a reload); it reads the same all along.
func TestSecretsRotateToThePrimaryKey(t *testing.T) {
	dir := t.TempDir()
	r := startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: testKeyring(t, "old")})
	leaderOf(t, r)
	putSecret(t, r.url("/v1/secrets/db/password"), "rotate-me")
	putSecret(t, r.url("/v1/secrets/other"), "me-too")
	if id := storedKeyID(t, r, "db/password"); id != "old" {
		t.Fatalf("sealed with %s, want old", id)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	r = startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: testKeyring(t, "new", "old")})
	leaderOf(t, r)
	waitUntil(t, "the leader seals the secrets with the new key", 10*time.Second, func() bool {
		return storedKeyID(t, r, "db/password") == "new" && storedKeyID(t, r, "other") == "new"
	})
	if got := readSecret(t, r, "db/password"); got != "rotate-me" {
		t.Fatalf("after rotation: %q", got)
	}

	// A reload: the newest key first, and the old one gone.
	r.m.SetSecretsKeyring(testKeyring(t, "x-newest", "new"))
	waitUntil(t, "the leader seals the secrets with the newest key", 10*time.Second, func() bool {
		return storedKeyID(t, r, "db/password") == "x-newest" && storedKeyID(t, r, "other") == "x-newest"
	})
	r.m.SetSecretsKeyring(testKeyring(t, "x-newest"))
	if got := readSecret(t, r, "other"); got != "me-too" {
		t.Fatalf("after the reload: %q", got)
	}
}

// TestSecretWithAKeyThisMasterLacks: a master without the key a secret was sealed with says so,
// naming the secret and the key (and the flag that fixes it); one with another key under the
// same id says the value does not decrypt. Neither shows the stored bytes, and neither changes
// the secret, which can still be deleted.
func TestSecretWithAKeyThisMasterLacks(t *testing.T) {
	dir := t.TempDir()
	r := startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: testKeyring(t, "k1")})
	leaderOf(t, r)
	putSecret(t, r.url("/v1/secrets/db/password"), "unreachable")
	putSecret(t, r.url("/v1/secrets/gone"), "x")
	sealed := storedSecret(t, r, "db/password")
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r = startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: testKeyring(t, "k2"), Logger: logger})
	leaderOf(t, r)
	_, err := r.m.Secret(context.Background(), "/db/password")
	var ke *SecretKeyError
	want := "secret db/password was stored with key k1, which this master does not have (give every master the same --secrets-keyring)"
	if !errors.As(err, &ke) || !errors.Is(err, keyring.ErrUnknownKey) || ke.KeyID != "k1" || !strings.Contains(err.Error(), want) {
		t.Fatalf("Secret = %v, want %q", err, want)
	}
	if strings.Contains(err.Error(), string(sealed[20:])) || strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("the error shows the stored bytes: %v", err)
	}
	if _, err := r.m.Secret(context.Background(), "nothing"); !errors.Is(err, api.ErrNoSecret) {
		t.Fatalf("a missing secret: %v", err)
	}
	// The leader's re-sealing leaves what it cannot open as it is, and says so.
	warning := regexp.MustCompile(`msg="secrets stored with a key this master does not have; left as they are \(give every master the same --secrets-keyring\)" .*key=k1 count=2 names="\[db/password gone\]"`)
	waitUntil(t, "the leader to warn of secrets it cannot open", 10*time.Second, func() bool { return warning.MatchString(logs.String()) })
	if !bytes.Equal(storedSecret(t, r, "db/password"), sealed) {
		t.Fatal("a secret this master cannot open was changed")
	}
	del, _ := http.NewRequest(http.MethodDelete, r.url("/v1/secrets/gone"), nil)
	resp, err := http.DefaultClient.Do(del)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE an undecryptable secret: %d", resp.StatusCode)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	r = startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: testKeyring(t, "k3")})
	leaderOf(t, r)
	// Same id, other bytes: built by hand, since testKeyring takes the bytes from the id.
	impostor, _ := keyring.New(keyring.Key{ID: "k1", Bytes: bytes.Repeat([]byte("z"), keyring.KeySize)})
	r.m.SetSecretsKeyring(impostor)
	if _, err := r.m.Secret(context.Background(), "db/password"); !errors.Is(err, keyring.ErrNotAuthentic) || !strings.Contains(err.Error(), "does not decrypt with this master's key k1") {
		t.Fatalf("another key under the same id: %v", err)
	}
}

// TestPlainSecretsOfAnEarlierBuildAreSealed: a value an earlier build stored in plain text
// (its secret.put command) reads as it is, and the next leader seals it with its primary key.
func TestPlainSecretsOfAnEarlierBuildAreSealed(t *testing.T) {
	dir := t.TempDir()
	keys := testKeyring(t, "k1")
	r := startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: keys})
	leaderOf(t, r)
	data, _ := json.Marshal(struct{ Name, Value string }{"legacy/pw", "plain-from-an-older-build"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.m.store.Apply(ctx, raft.Command{Namespace: secrets.Namespace, Type: "secret.put", Data: data}); err != nil {
		t.Fatal(err)
	}
	if id := storedKeyID(t, r, "legacy/pw"); id != "(plain)" {
		t.Fatalf("stored as %s", id)
	}
	if got := readSecret(t, r, "legacy/pw"); got != "plain-from-an-older-build" {
		t.Fatalf("a plain value reads %q", got)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	r = startMasterConfig(t, Config{DataDir: dir, SecretsKeyring: keys})
	leaderOf(t, r)
	waitUntil(t, "the leader seals the plain value", 10*time.Second, func() bool { return storedKeyID(t, r, "legacy/pw") == "k1" })
	if got := readSecret(t, r, "legacy/pw"); got != "plain-from-an-older-build" {
		t.Fatalf("after sealing: %q", got)
	}
	// The FSM takes no plain value through the new commands.
	bad, _ := json.Marshal(map[string]any{"name": "x", "sealed": []byte("plain")})
	if _, err := r.m.store.Apply(ctx, raft.Command{Namespace: secrets.Namespace, Type: "secret.seal", Data: bad}); err == nil || !strings.Contains(err.Error(), "not sealed") {
		t.Fatalf("secret.seal of a plain value: %v", err)
	}
}

// TestResealNeverUndoesANewerWrite: a re-sealed value proposed for an older version of a secret
// is dropped by the FSM when the secret changed since.
func TestResealNeverUndoesANewerWrite(t *testing.T) {
	r := startMasterConfig(t, Config{DataDir: t.TempDir(), SecretsKeyring: testKeyring(t, "k1")})
	leaderOf(t, r)
	putSecret(t, r.url("/v1/secrets/s"), "first")
	v, _ := r.m.store.View(context.Background(), raft.Stale)
	old, _ := v.GetValue(secrets.Namespace, "s")
	stale, _ := r.m.SecretsKeyring().Seal(rand.Reader, "s", []byte("first"))
	putSecret(t, r.url("/v1/secrets/s"), "second")
	data, _ := json.Marshal(map[string]any{"secrets": []map[string]any{{"name": "s", "sealed": stale, "index": old.ModifyIndex}}})
	res, err := r.m.store.Apply(context.Background(), raft.Command{Namespace: secrets.Namespace, Type: "secret.reseal", Data: data})
	if err != nil || res.Value != 0 {
		t.Fatalf("reseal of a stale version: %v %v, want 0 stored", res.Value, err)
	}
	if got := readSecret(t, r, "s"); got != "second" {
		t.Fatalf("Secret = %q, want the newer write", got)
	}
}
