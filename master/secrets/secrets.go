package secrets

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/raft"
)

// Namespace is the replicated store's namespace of secrets: values that frameworks pass
// to tasks (Marathon's secret references) and that the API never shows. Values are sealed
// (pkg/keyring: AES-256-GCM, the name bound to the ciphertext) before they are proposed, so
// neither raft's log nor its snapshots hold them in plain text; the FSM stores what it is
// given.
const Namespace = "secrets"

// LocalKeyringFile is the keyring a master makes in its data dir, and uses from then on, when
// it is given none (master.Config.SecretsKeyring): LocalKeyring.
const LocalKeyringFile = "secrets-keyring"

// MaxValue bounds a secret's value.
const MaxValue = 64 << 10

// Re-sealing proposes at most this many secrets, or this many bytes of them, in one command.
const (
	resealBatch      = 64
	resealBatchBytes = 256 << 10
)

// ErrNoSecret: the store has no secret of that name (api.ErrNoSecret, which the frameworks
// check for).
var ErrNoSecret = api.ErrNoSecret

// KeyError says why this master cannot decrypt a stored secret. Err is
// keyring.ErrUnknownKey, keyring.ErrNotAuthentic or keyring.ErrMalformed.
type KeyError struct {
	Name  string
	KeyID string // the key the value was sealed with ("" when unreadable)
	Err   error
}

func (e *KeyError) Error() string {
	switch {
	case errors.Is(e.Err, keyring.ErrUnknownKey):
		return fmt.Sprintf("master: secret %s was stored with key %s, which this master does not have (give every master the same --secrets-keyring)", e.Name, e.KeyID)
	case errors.Is(e.Err, keyring.ErrNotAuthentic):
		return fmt.Sprintf("master: secret %s does not decrypt with this master's key %s: another key under that id, or a damaged value (give every master the same --secrets-keyring)", e.Name, e.KeyID)
	}
	return fmt.Sprintf("master: secret %s: the stored value is damaged: %v", e.Name, e.Err)
}

// Unwrap gives the keyring's error.
func (e *KeyError) Unwrap() error { return e.Err }

// sealedSecret is a secret as the commands carry it: its name and sealed value, and for
// secret.reseal the raft index of the value it replaces.
type sealedSecret struct {
	Name   string `json:"name"`
	Sealed []byte `json:"sealed"`
	Index  uint64 `json:"index,omitempty"`
}

// Applier applies:
//
//   - secret.seal (data: sealedSecret): stores the sealed value as given.
//   - secret.reseal (data: {"secrets": [sealedSecret...]}): stores each sealed value whose
//     secret was last changed at its Index, so a re-encryption never undoes a newer write; the
//     result is how many it stored.
//   - secret.delete (data: the name).
//   - secret.put (data: {"Name", "Value"}): a value in plain text, as builds before sealing
//     proposed it. None is proposed now; it stays so that their log entries replay the same.
func Applier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "secret.seal":
			var s sealedSecret
			if err := json.Unmarshal(cmd.Data, &s); err != nil {
				return nil, fmt.Errorf("secrets: seal: %w", err)
			}
			if !keyring.IsSealed(s.Sealed) {
				return nil, fmt.Errorf("secrets: seal %s: the value is not sealed", s.Name)
			}
			tx.Put(s.Name, s.Sealed)
			return nil, nil
		case "secret.reseal":
			var r struct {
				Secrets []sealedSecret `json:"secrets"`
			}
			if err := json.Unmarshal(cmd.Data, &r); err != nil {
				return nil, fmt.Errorf("secrets: reseal: %w", err)
			}
			n := 0
			for _, s := range r.Secrets {
				if !keyring.IsSealed(s.Sealed) {
					return nil, fmt.Errorf("secrets: reseal %s: the value is not sealed", s.Name)
				}
				if v, ok := tx.GetValue(s.Name); ok && v.ModifyIndex == s.Index {
					tx.Put(s.Name, s.Sealed)
					n++
				}
			}
			return n, nil
		case "secret.delete":
			tx.Delete(string(cmd.Data))
			return nil, nil
		case "secret.put":
			var s struct{ Name, Value string }
			if err := json.Unmarshal(cmd.Data, &s); err != nil {
				return nil, fmt.Errorf("secrets: put: %w", err)
			}
			tx.Put(s.Name, []byte(s.Value))
			return nil, nil
		}
		return nil, fmt.Errorf("secrets: unknown command %q", cmd.Type)
	})
}

// ValidName says what is wrong with a secret's name: it must be a path of segments of letters,
// digits, '-', '_' and '.', not "." or "..".
func ValidName(name string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("1 to 200 characters")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q: empty, '.' and '..' segments are not allowed", name)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("%q: only letters, digits, '-', '_', '.' and '/'", name)
			}
		}
	}
	return nil
}

// LocalKeyring is the keyring of a master given none: the one in dataDir's LocalKeyringFile,
// made with one random key on first start.
func LocalKeyring(dataDir string, logger *slog.Logger) (*keyring.Keyring, error) {
	path := filepath.Join(dataDir, LocalKeyringFile)
	keys, created, err := keyring.LoadOrCreate(path, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("master: secrets: %w", err)
	}
	if created {
		logger.Info("made a secrets keyring of this master's own", "file", path, "key", keys.Primary())
	}
	return keys, nil
}

// Store keeps the secrets of the replicated store: it seals values before they are proposed
// and opens them for the frameworks, with the keys of this master's keyring.
type Store struct {
	store   *raft.Store
	logger  *slog.Logger
	keys    atomic.Pointer[keyring.Keyring] // seals and opens secrets
	rekeyed chan struct{}                   // SetKeyring tells the leader's Reseal
}

// New keeps secrets in store, sealed with keys.
func New(store *raft.Store, keys *keyring.Keyring, logger *slog.Logger) *Store {
	s := &Store{store: store, logger: logger, rekeyed: make(chan struct{}, 1)}
	s.keys.Store(keys)
	return s
}

// Keyring is the keyring this master seals and opens secrets with.
func (s *Store) Keyring() *keyring.Keyring { return s.keys.Load() }

// SetKeyring replaces the keys secrets are sealed and opened with (a reload of
// --secrets-keyring). On the leader, secrets sealed with another key than the new primary, and
// any still in plain text, are sealed again with it.
func (s *Store) SetKeyring(k *keyring.Keyring) {
	s.keys.Store(k)
	select {
	case s.rekeyed <- struct{}{}:
	default:
	}
}

// Get reads a secret's value from this master's copy of the store (frameworks resolve their
// tasks' secret references with it on the leader). It fails with ErrNoSecret when there is none,
// and with a *KeyError when this master's keys do not open it.
func (s *Store) Get(ctx context.Context, name string) (string, error) {
	name = strings.Trim(name, "/")
	v, err := s.store.View(ctx, raft.Stale)
	if err != nil {
		return "", fmt.Errorf("master: secret %s: %w", name, err)
	}
	b, ok := v.Get(Namespace, name)
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNoSecret, name)
	}
	return s.open(name, b)
}

// open decrypts a stored value. A value in plain text was stored by an earlier build and is
// read as it is, until the leader seals it (Reseal).
func (s *Store) open(name string, stored []byte) (string, error) {
	if !keyring.IsSealed(stored) {
		return string(stored), nil
	}
	value, err := s.Keyring().Open(name, stored)
	if err != nil {
		id, _ := keyring.KeyID(stored)
		return "", &KeyError{Name: name, KeyID: id, Err: err}
	}
	return string(value), nil
}

// Put seals a value with the primary key, here, and commits it: raft never sees it in plain
// text. The caller checks the name (ValidName) and the value's size (MaxValue).
func (s *Store) Put(ctx context.Context, name, value string) error {
	sealed, err := s.Keyring().Seal(rand.Reader, name, []byte(value))
	if err != nil {
		return err // a nonce that could not be read; never the value
	}
	data, _ := json.Marshal(sealedSecret{Name: name, Sealed: sealed})
	_, err = s.store.Apply(ctx, raft.Command{Namespace: Namespace, Type: "secret.seal", Data: data})
	return err
}

// Delete deletes a secret (ErrNoSecret when there is none); it needs no key, so a secret this
// master cannot decrypt can still be deleted.
func (s *Store) Delete(ctx context.Context, name string) error {
	v, err := s.store.View(ctx, raft.Stale)
	if err != nil {
		return err
	}
	if _, ok := v.Get(Namespace, name); !ok {
		return fmt.Errorf("%w: %s", ErrNoSecret, name)
	}
	_, err = s.store.Apply(ctx, raft.Command{Namespace: Namespace, Type: "secret.delete", Data: []byte(name)})
	return err
}

// Names lists the secrets' names, never their values, from this master's copy of the store.
func (s *Store) Names(ctx context.Context) ([]string, error) {
	v, err := s.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	names := []string{}
	v.List(Namespace, "", func(key string, _ []byte) bool {
		names = append(names, key)
		return true
	})
	return names, nil
}

// resealPlan is what re-encryption under the primary key decided: batches of commands to
// propose, how many values were still in plain text, and the secrets that stay as they are
// because no key of this master opens them, by the key they name ("" for damaged ones).
type resealPlan struct {
	batches [][]sealedSecret
	plain   int
	stuck   map[string][]string
}

// planReseal decides which stored secrets to seal again with keys' primary key: every one
// sealed with another key this keyring has, and every one in plain text (stored by an earlier
// build). It does no I/O; rnd gives the nonces.
func planReseal(keys *keyring.Keyring, rnd io.Reader, stored []raftSecret) (resealPlan, error) {
	p := resealPlan{stuck: map[string][]string{}}
	var batch []sealedSecret
	size := 0
	for _, s := range stored {
		var value []byte
		if keyring.IsSealed(s.Data) {
			id, _ := keyring.KeyID(s.Data)
			if id == keys.Primary() {
				continue
			}
			v, err := keys.Open(s.Name, s.Data)
			if err != nil {
				if !errors.Is(err, keyring.ErrUnknownKey) {
					id = ""
				}
				p.stuck[id] = append(p.stuck[id], s.Name)
				continue
			}
			value = v
		} else {
			value = s.Data
			p.plain++
		}
		sealed, err := keys.Seal(rnd, s.Name, value)
		if err != nil {
			return resealPlan{}, err
		}
		if len(batch) == resealBatch || len(batch) > 0 && size+len(sealed) > resealBatchBytes {
			p.batches = append(p.batches, batch)
			batch, size = nil, 0
		}
		batch = append(batch, sealedSecret{Name: s.Name, Sealed: sealed, Index: s.ModifyIndex})
		size += len(sealed)
	}
	if len(batch) > 0 {
		p.batches = append(p.batches, batch)
	}
	return p, nil
}

// raftSecret is a stored secret with the index that last changed it.
type raftSecret struct {
	Name string
	raft.Value
}

// Reseal is the leader's secrets service: when this master starts leading, and again when its
// keyring changes (SetKeyring), it seals every secret stored under another key than the
// primary, or in plain text, with the primary key, through raft. An error ends it; the
// leadership loop starts it again after a pause.
func (s *Store) Reseal(ctx context.Context) error {
	for {
		if err := s.resealOnce(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.rekeyed:
		}
	}
}

func (s *Store) resealOnce(ctx context.Context) error {
	keys := s.Keyring()
	v, err := s.store.View(ctx, raft.Stale)
	if err != nil {
		return fmt.Errorf("master: re-encrypt secrets: %w", err)
	}
	var stored []raftSecret
	v.List(Namespace, "", func(name string, _ []byte) bool {
		if val, ok := v.GetValue(Namespace, name); ok {
			stored = append(stored, raftSecret{Name: name, Value: val})
		}
		return true
	})
	plan, err := planReseal(keys, rand.Reader, stored)
	if err != nil {
		return fmt.Errorf("master: re-encrypt secrets: %w", err)
	}
	for _, id := range slices.Sorted(maps.Keys(plan.stuck)) {
		names := plan.stuck[id]
		const show = 10
		more := max(len(names)-show, 0)
		names = names[:min(len(names), show)]
		if id == "" {
			s.logger.Error("secrets that do not decrypt with this master's keys (another key under the same id, or damaged); left as they are",
				"count", len(names)+more, "names", names, "more", more)
			continue
		}
		s.logger.Warn("secrets stored with a key this master does not have; left as they are (give every master the same --secrets-keyring)",
			"key", id, "count", len(names)+more, "names", names, "more", more, "keys", keys.IDs())
	}
	total := 0
	for _, batch := range plan.batches {
		total += len(batch)
	}
	wanted, done := 0, 0
	for _, batch := range plan.batches {
		data, _ := json.Marshal(struct {
			Secrets []sealedSecret `json:"secrets"`
		}{batch})
		res, err := s.store.Apply(ctx, raft.Command{Namespace: Namespace, Type: "secret.reseal", Data: data})
		if err != nil {
			return fmt.Errorf("master: re-encrypt secrets (%d of %d done): %w", done, total, err)
		}
		wanted += len(batch)
		n, _ := res.Value.(int)
		done += n
	}
	if wanted > 0 {
		s.logger.Info("secrets re-encrypted with the primary key", "key", keys.Primary(), "count", done,
			"from_plain_text", plan.plain, "changed_meanwhile", wanted-done, "batches", len(plan.batches))
	}
	return nil
}
