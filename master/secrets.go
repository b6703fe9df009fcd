package master

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/raft"
)

// NamespaceSecrets is the replicated store's namespace of secrets: values that frameworks pass
// to tasks (Marathon's secret references) and that the API never shows. Values are sealed
// (pkg/keyring: AES-256-GCM, the name bound to the ciphertext) before they are proposed, so
// neither raft's log nor its snapshots hold them in plain text; the FSM stores what it is
// given.
const NamespaceSecrets = "secrets"

// LocalKeyringFile is the keyring a master makes in its data dir, and uses from then on, when
// it is given none (Config.SecretsKeyring).
const LocalKeyringFile = "secrets-keyring"

// maxSecret bounds a secret's value.
const maxSecret = 64 << 10

// Re-sealing proposes at most this many secrets, or this many bytes of them, in one command.
const (
	resealBatch      = 64
	resealBatchBytes = 256 << 10
)

// ErrNoSecret: the store has no secret of that name.
var ErrNoSecret = errors.New("master: no such secret")

// SecretKeyError says why this master cannot decrypt a stored secret. Err is
// keyring.ErrUnknownKey, keyring.ErrNotAuthentic or keyring.ErrMalformed.
type SecretKeyError struct {
	Name  string
	KeyID string // the key the value was sealed with ("" when unreadable)
	Err   error
}

func (e *SecretKeyError) Error() string {
	switch {
	case errors.Is(e.Err, keyring.ErrUnknownKey):
		return fmt.Sprintf("master: secret %s was stored with key %s, which this master does not have (give every master the same --secrets-keyring)", e.Name, e.KeyID)
	case errors.Is(e.Err, keyring.ErrNotAuthentic):
		return fmt.Sprintf("master: secret %s does not decrypt with this master's key %s: another key under that id, or a damaged value (give every master the same --secrets-keyring)", e.Name, e.KeyID)
	}
	return fmt.Sprintf("master: secret %s: the stored value is damaged: %v", e.Name, e.Err)
}

// Unwrap gives the keyring's error.
func (e *SecretKeyError) Unwrap() error { return e.Err }

// sealedSecret is a secret as the commands carry it: its name and sealed value, and for
// secret.reseal the raft index of the value it replaces.
type sealedSecret struct {
	Name   string `json:"name"`
	Sealed []byte `json:"sealed"`
	Index  uint64 `json:"index,omitempty"`
}

// secretsApplier applies:
//
//   - secret.seal (data: sealedSecret): stores the sealed value as given.
//   - secret.reseal (data: {"secrets": [sealedSecret...]}): stores each sealed value whose
//     secret was last changed at its Index, so a re-encryption never undoes a newer write; the
//     result is how many it stored.
//   - secret.delete (data: the name).
//   - secret.put (data: {"Name", "Value"}): a value in plain text, as builds before sealing
//     proposed it. None is proposed now; it stays so that their log entries replay the same.
func secretsApplier() raft.Applier {
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

// validSecretName: a path of segments of letters, digits, '-', '_' and '.', not "." or "..".
func validSecretName(name string) error {
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

// SecretsKeyring is the keyring this master seals and opens secrets with.
func (m *Master) SecretsKeyring() *keyring.Keyring { return m.secretKeys.Load() }

// SetSecretsKeyring replaces the keys secrets are sealed and opened with (a reload of
// --secrets-keyring). On the leader, secrets sealed with another key than the new primary, and
// any still in plain text, are sealed again with it.
func (m *Master) SetSecretsKeyring(k *keyring.Keyring) {
	m.secretKeys.Store(k)
	select {
	case m.rekeyed <- struct{}{}:
	default:
	}
}

// Secret reads a secret's value from this master's copy of the store (frameworks resolve their
// tasks' secret references with it on the leader). It fails with ErrNoSecret when there is none,
// and with a *SecretKeyError when this master's keys do not open it.
func (m *Master) Secret(ctx context.Context, name string) (string, error) {
	name = strings.Trim(name, "/")
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return "", fmt.Errorf("master: secret %s: %w", name, err)
	}
	b, ok := v.Get(NamespaceSecrets, name)
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNoSecret, name)
	}
	return m.openSecret(name, b)
}

// openSecret decrypts a stored value. A value in plain text was stored by an earlier build and
// is read as it is, until the leader seals it (resealSecrets).
func (m *Master) openSecret(name string, stored []byte) (string, error) {
	if !keyring.IsSealed(stored) {
		return string(stored), nil
	}
	value, err := m.SecretsKeyring().Open(name, stored)
	if err != nil {
		id, _ := keyring.KeyID(stored)
		return "", &SecretKeyError{Name: name, KeyID: id, Err: err}
	}
	return string(value), nil
}

// putSecret is PUT /v1/secrets/{name...} with {"value": "..."}: 204 once committed. The value
// is sealed here, before it is proposed: raft never sees it in plain text.
func (a *apiHandler) putSecret(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("name"), "/")
	if err := validSecretName(name); err != nil {
		httpjson.FieldError(w, http.StatusBadRequest, "name", err.Error())
		return
	}
	var body struct {
		Value *string `json:"value"`
	}
	if err := httpjson.Decode(r, &body); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	switch {
	case body.Value == nil:
		httpjson.FieldError(w, http.StatusUnprocessableEntity, "value", "is required")
		return
	case len(*body.Value) > maxSecret:
		httpjson.FieldError(w, http.StatusUnprocessableEntity, "value", "is larger than 64 KiB")
		return
	}
	sealed, err := a.m.SecretsKeyring().Seal(rand.Reader, name, []byte(*body.Value))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error()) // a nonce that could not be read; never the value
		return
	}
	data, _ := json.Marshal(sealedSecret{Name: name, Sealed: sealed})
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.m.store.Apply(ctx, raft.Command{Namespace: NamespaceSecrets, Type: "secret.seal", Data: data}); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteSecret is DELETE /v1/secrets/{name...}; it needs no key, so a secret this master
// cannot decrypt can still be deleted.
func (a *apiHandler) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("name"), "/")
	v, err := a.m.store.View(r.Context(), raft.Stale)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if _, ok := v.Get(NamespaceSecrets, name); !ok {
		writeError(w, http.StatusNotFound, "no secret "+name)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.m.store.Apply(ctx, raft.Command{Namespace: NamespaceSecrets, Type: "secret.delete", Data: []byte(name)}); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listSecrets is GET /v1/secrets: the names, never the values.
func (a *apiHandler) listSecrets(w http.ResponseWriter, r *http.Request) {
	v, err := a.m.store.View(r.Context(), raft.Stale)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	names := []string{}
	v.List(NamespaceSecrets, "", func(key string, _ []byte) bool {
		names = append(names, key)
		return true
	})
	writeJSON(w, http.StatusOK, map[string]any{"secrets": names})
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

// resealSecrets is the leader's secrets service: when this master starts leading, and again
// when its keyring changes (SetSecretsKeyring), it seals every secret stored under another key
// than the primary, or in plain text, with the primary key, through raft. An error ends it;
// the leadership loop starts it again after a pause.
func (m *Master) resealSecrets(ctx context.Context) error {
	for {
		if err := m.resealOnce(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.rekeyed:
		}
	}
}

func (m *Master) resealOnce(ctx context.Context) error {
	keys := m.SecretsKeyring()
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return fmt.Errorf("master: re-encrypt secrets: %w", err)
	}
	var stored []raftSecret
	v.List(NamespaceSecrets, "", func(name string, _ []byte) bool {
		if val, ok := v.GetValue(NamespaceSecrets, name); ok {
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
			m.logger.Error("secrets that do not decrypt with this master's keys (another key under the same id, or damaged); left as they are",
				"count", len(names)+more, "names", names, "more", more)
			continue
		}
		m.logger.Warn("secrets stored with a key this master does not have; left as they are (give every master the same --secrets-keyring)",
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
		res, err := m.store.Apply(ctx, raft.Command{Namespace: NamespaceSecrets, Type: "secret.reseal", Data: data})
		if err != nil {
			return fmt.Errorf("master: re-encrypt secrets (%d of %d done): %w", done, total, err)
		}
		wanted += len(batch)
		n, _ := res.Value.(int)
		done += n
	}
	if wanted > 0 {
		m.logger.Info("secrets re-encrypted with the primary key", "key", keys.Primary(), "count", done,
			"from_plain_text", plan.plain, "changed_meanwhile", wanted-done, "batches", len(plan.batches))
	}
	return nil
}
