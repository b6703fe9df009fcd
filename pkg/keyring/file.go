package keyring

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrFileMode: a keyring file that group or others may read, write or run; keys are for the
// masters' user alone.
var ErrFileMode = errors.New("keyring: file is open to group or others")

// Parse reads a keyring file's content: one key per line as "ID BASE64-KEY" (standard base64 of
// 32 bytes, as `head -c 32 /dev/urandom | base64` prints), the first line's key the primary;
// '#' starts a comment, blank lines are skipped. path only names the file in errors, which say
// the line and never show a key.
func Parse(path string, data []byte) (*Keyring, error) {
	var keys []Key
	firstLine := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("keyring %s line %d: %s", path, n, fmt.Sprintf(format, args...))
		}
		if len(fields) != 2 {
			return nil, bad("want 'ID BASE64-KEY', got %d fields", len(fields))
		}
		id := fields[0]
		if validID(id) != nil {
			// Not quoted back: a line with its fields swapped would show its key.
			return nil, bad("the key id (first field) must be 1 to %d letters, digits, '.', '_' or '-'", maxIDLen)
		}
		if first, dup := firstLine[id]; dup {
			return nil, bad("key id %s is given twice (first on line %d)", id, first)
		}
		firstLine[id] = n
		key, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil {
			if key, err = base64.RawStdEncoding.DecodeString(fields[1]); err != nil {
				return nil, bad("key %s is not base64 (make one with: head -c 32 /dev/urandom | base64)", id)
			}
		}
		if len(key) != KeySize {
			return nil, bad("key %s is %d bytes, want %d (make one with: head -c 32 /dev/urandom | base64)", id, len(key), KeySize)
		}
		keys = append(keys, Key{ID: id, Bytes: key})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("keyring %s holds no key", path)
	}
	return New(keys...)
}

// Load reads the keyring file at path. It refuses a file that group or others may read (or
// write), saying the chmod that fixes it.
func Load(path string) (*Keyring, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; run: chmod 600 %s", ErrFileMode, path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return Parse(path, data)
}

// LoadOrCreate reads the keyring file at path, or, when there is none, makes one (mode 0600)
// with one key read from rnd, id "local-" and the key's fingerprint. created says it was made
// now. Two processes racing to make it end up with the same file: the loser reads the winner's.
func LoadOrCreate(path string, rnd io.Reader) (k *Keyring, created bool, err error) {
	k, err = Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(rnd, key); err != nil {
		return nil, false, fmt.Errorf("keyring: new key: %w", err)
	}
	id := "local-" + fingerprint(key)
	content := fmt.Sprintf("# Agora's secrets keyring, made by the master that keeps its data here (it ran without\n"+
		"# --secrets-keyring and --cluster-secret-file). One key a line, 'ID BASE64-KEY'; the first\n"+
		"# encrypts secrets, every one decrypts. Masters of one cluster need the same keys.\n%s %s\n",
		id, base64.StdEncoding.EncodeToString(key))
	if err := createFile(path, []byte(content)); errors.Is(err, fs.ErrExist) {
		k, err = Load(path)
		return k, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("keyring: %w", err)
	}
	k, err = New(Key{ID: id, Bytes: key})
	return k, true, err
}

// createFile writes data to a temporary file (0600), syncs it, and links it to path, which
// fails with fs.ErrExist when path is there already: the file appears whole or not at all, and
// never replaces another.
func createFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // CreateTemp made it 0600
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}
