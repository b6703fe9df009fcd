package keyring

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustNew(t *testing.T, keys ...Key) *Keyring {
	t.Helper()
	k, err := New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpensUnderItsNameOnly(t *testing.T) {
	k := mustNew(t, Key{"k1", key(1)})
	value := []byte("s3cr3t-value-42")
	sealed, err := k.Seal(rand.Reader, "db/password", value)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(sealed) || bytes.Contains(sealed, value) {
		t.Fatalf("sealed = %q", sealed)
	}
	if id, err := KeyID(sealed); err != nil || id != "k1" {
		t.Fatalf("KeyID = %q, %v", id, err)
	}
	got, err := k.Open("db/password", sealed)
	if err != nil || string(got) != string(value) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Two seals of one value differ (random nonces).
	again, _ := k.Seal(rand.Reader, "db/password", value)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one value are equal")
	}
	// Moved to another name, or changed anywhere, it does not open.
	if _, err := k.Open("db/other", sealed); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("under another name: %v", err)
	}
	for i := range sealed {
		if i == 0 || i == 1 || i == 2 {
			continue // magic, version and id length: other errors, below
		}
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 0x01
		if _, err := k.Open("db/password", bad); err == nil {
			t.Fatalf("a bit flipped at %d still opens", i)
		} else if strings.Contains(err.Error(), string(value)) {
			t.Fatalf("the error shows the value: %v", err)
		}
	}
}

func TestOpenSaysWhichKeyIsMissing(t *testing.T) {
	old := mustNew(t, Key{"old", key(1)})
	sealed, _ := old.Seal(rand.Reader, "x", []byte("v"))
	other := mustNew(t, Key{"new", key(2)})
	if _, err := other.Open("x", sealed); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "old") {
		t.Fatalf("Open without the key = %v", err)
	}
	// Another key under the same id does not authenticate.
	impostor := mustNew(t, Key{"old", key(3)})
	if _, err := impostor.Open("x", sealed); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("Open with another key of the same id = %v", err)
	}
	// A rotated keyring: the new key seals, the old one still opens.
	rotated := mustNew(t, Key{"new", key(2)}, Key{"old", key(1)})
	if got, err := rotated.Open("x", sealed); err != nil || string(got) != "v" {
		t.Fatalf("rotated Open = %q, %v", got, err)
	}
	resealed, _ := rotated.Seal(rand.Reader, "x", []byte("v"))
	if id, _ := KeyID(resealed); id != "new" || rotated.Primary() != "new" {
		t.Fatalf("rotated seals with %s", id)
	}
	for name, b := range map[string][]byte{"empty": nil, "plain": []byte("plain text"), "version 2": {0xFF, 2, 1, 'k'}, "short": {0xFF, 1, 5, 'k'}, "no id": {0xFF, 1, 0}} {
		if _, err := rotated.Open("x", b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestPlainValuesAreNeverSealed: values stored before sealing came in as JSON strings, valid
// UTF-8, which never starts with the sealed form's first byte.
func TestPlainValuesAreNeverSealed(t *testing.T) {
	for _, s := range []string{"", "x", "{\"v\":1}", "\u00ff\u00ff", "日本", string([]byte{0xC3, 0xBF})} {
		if !utf8.ValidString(s) {
			t.Fatalf("%q is not UTF-8", s)
		}
		if IsSealed([]byte(s)) {
			t.Errorf("%q taken for a sealed value", s)
		}
	}
}

func TestFromClusterSecret(t *testing.T) {
	a, err := FromClusterSecret("a cluster secret of 16+ characters")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := FromClusterSecret("a cluster secret of 16+ characters")
	c, _ := FromClusterSecret("another cluster secret, 16+ chars")
	if a.Primary() != b.Primary() || a.Primary() == c.Primary() || !strings.HasPrefix(a.Primary(), "cs-") || len(a.Primary()) != 11 {
		t.Fatalf("ids %s %s %s", a.Primary(), b.Primary(), c.Primary())
	}
	sealed, _ := a.Seal(rand.Reader, "n", []byte("v"))
	if v, err := b.Open("n", sealed); err != nil || string(v) != "v" {
		t.Fatalf("same secret: %q %v", v, err)
	}
	if _, err := c.Open("n", sealed); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("another secret: %v", err)
	}
	if _, err := FromClusterSecret(""); err == nil {
		t.Fatal("an empty secret derived a key")
	}
}

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyring")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestLoadReadsKeysInOrder(t *testing.T) {
	p := writeFile(t, "# the cluster's keys\n\nnew-2 "+b64(key(2))+"   # since May\n  old.1\t"+strings.TrimRight(b64(key(1)), "=")+"\n", 0o600)
	k, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if ids := k.IDs(); len(ids) != 2 || ids[0] != "new-2" || ids[1] != "old.1" || !k.Has("old.1") || k.Has("x") {
		t.Fatalf("ids = %v", ids)
	}
}

// TestLoadRefuses: each refusal names the file and line, says what is wrong, and never shows a
// key.
func TestLoadRefuses(t *testing.T) {
	good := b64(key(7))
	tests := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group may read", "k " + good + "\n", 0o640, "mode 0640; run: chmod 600 "},
		{"others may read", "k " + good + "\n", 0o604, "chmod 600"},
		{"empty", "# nothing\n\n", 0o600, "holds no key"},
		{"one field", "k\n", 0o600, "line 1: want 'ID BASE64-KEY', got 1 fields"},
		{"three fields", "k " + good + " extra\n", 0o600, "line 1: want 'ID BASE64-KEY', got 3 fields"},
		{"swapped", good + " k\n", 0o600, "line 1: the key id (first field) must be"},
		{"not base64", "k not*base64\n", 0o600, "line 1: key k is not base64"},
		{"short key", "# ok\nk " + b64(key(1)[:16]) + "\n", 0o600, "line 2: key k is 16 bytes, want 32"},
		{"long key", "k " + b64(append(key(1), 1)) + "\n", 0o600, "line 1: key k is 33 bytes, want 32"},
		{"duplicate id", "k " + good + "\nj " + b64(key(2)) + "\nk " + b64(key(3)) + "\n", 0o600, "line 3: key id k is given twice (first on line 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, tt.content, tt.mode)
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Load = %v, want an error naming %s with %q", err, p, tt.want)
			}
			if strings.Contains(err.Error(), good) {
				t.Fatalf("the error shows a key: %v", err)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}

func TestLoadOrCreateMakesOneKeyOnce(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets-keyring")
	k, created, err := LoadOrCreate(p, rand.Reader)
	if err != nil || !created || !strings.HasPrefix(k.Primary(), "local-") {
		t.Fatalf("first: %v %v %v", k, created, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v %v", fi, err)
	}
	again, created, err := LoadOrCreate(p, rand.Reader)
	if err != nil || created || again.Primary() != k.Primary() {
		t.Fatalf("second: %v %v %v", again, created, err)
	}
	sealed, _ := k.Seal(rand.Reader, "n", []byte("v"))
	if v, err := again.Open("n", sealed); err != nil || string(v) != "v" {
		t.Fatalf("the reloaded key: %q %v", v, err)
	}
	// Racing makers agree on one file.
	p2 := filepath.Join(t.TempDir(), "secrets-keyring")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			k, _, err := LoadOrCreate(p2, rand.Reader)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.Primary()
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("racing makers got %v", ids)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(p2))
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, keys := range map[string][]Key{
		"none":      nil,
		"bad id":    {{"a b", key(1)}},
		"short":     {{"k", key(1)[:31]}},
		"duplicate": {{"k", key(1)}, {"k", key(2)}},
	} {
		if _, err := New(keys...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
