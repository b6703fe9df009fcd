package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Errors of opening a sealed value. Callers branch on them with errors.Is.
var (
	// ErrUnknownKey: the value was sealed with a key this keyring does not have.
	ErrUnknownKey = errors.New("keyring: no key of that id")
	// ErrNotAuthentic: the key of the value's id does not open it: another key under the same
	// id, a value moved to another name, or damage.
	ErrNotAuthentic = errors.New("keyring: value does not decrypt")
	// ErrMalformed: the bytes are not a sealed value of a version this package reads.
	ErrMalformed = errors.New("keyring: not a sealed value")
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

const (
	magic     = 0xFF // never the first byte of valid UTF-8
	version   = 1
	nonceSize = 12
	maxIDLen  = 64
)

// Key is one key of a keyring.
type Key struct {
	ID    string
	Bytes []byte // KeySize bytes
}

// Keyring holds keys: the first (Primary) seals, every one opens. It is immutable and safe for
// concurrent use.
type Keyring struct {
	ids   []string
	aeads map[string]cipher.AEAD
}

// New makes a keyring of keys, the first being the primary. It refuses no key, a bad id, a key
// of the wrong size, and an id given twice.
func New(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no key")
	}
	k := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, key := range keys {
		if err := validID(key.ID); err != nil {
			return nil, err
		}
		if len(key.Bytes) != KeySize {
			return nil, fmt.Errorf("keyring: key %s is %d bytes, want %d", key.ID, len(key.Bytes), KeySize)
		}
		if _, dup := k.aeads[key.ID]; dup {
			return nil, fmt.Errorf("keyring: key id %s is given twice", key.ID)
		}
		block, err := aes.NewCipher(key.Bytes)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %s: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %s: %w", key.ID, err)
		}
		k.ids = append(k.ids, key.ID)
		k.aeads[key.ID] = aead
	}
	return k, nil
}

// validID: 1 to 64 letters, digits, '.', '_' and '-'.
func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("keyring: key id %q: want 1 to %d characters", id, maxIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("keyring: key id %q: only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// Primary is the id of the key that seals.
func (k *Keyring) Primary() string { return k.ids[0] }

// IDs are the ids of the keys, the primary first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// Has says whether the keyring holds a key of this id.
func (k *Keyring) Has(id string) bool { _, ok := k.aeads[id]; return ok }

// hkdfInfo names what the cluster secret's key is for; pkg/auth derives gossip's key from the
// same secret in another way, so the two keys differ.
const hkdfInfo = "agora secrets at rest v1"

// FromClusterSecret derives a keyring of one key from the cluster secret (HKDF-SHA256). Its id,
// "cs-" and 8 hex digits of the key's SHA-256, changes with the secret, so a master given
// another secret says which key it lacks instead of failing to decrypt.
func FromClusterSecret(secret string) (*Keyring, error) {
	if secret == "" {
		return nil, errors.New("keyring: the cluster secret is empty")
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, hkdfInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("keyring: derive from the cluster secret: %w", err)
	}
	return New(Key{ID: "cs-" + fingerprint(key), Bytes: key})
}

// fingerprint is 8 hex digits of a key's SHA-256: enough to tell keys apart, nothing to guess
// a 32-byte key by.
func fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// header is what precedes the nonce: magic, version, the key id's length and the key id.
func header(id string) []byte {
	h := make([]byte, 0, 3+len(id))
	h = append(h, magic, version, byte(len(id)))
	return append(h, id...)
}

// Seal encrypts value with the primary key for the secret name, with a nonce read from rnd
// (crypto/rand.Reader outside tests).
func (k *Keyring) Seal(rnd io.Reader, name string, value []byte) ([]byte, error) {
	id := k.ids[0]
	aead := k.aeads[id]
	h := header(id)
	out := make([]byte, len(h)+nonceSize, len(h)+nonceSize+len(value)+aead.Overhead())
	copy(out, h)
	nonce := out[len(h):]
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("keyring: nonce: %w", err)
	}
	return aead.Seal(out, nonce, value, additional(h, name)), nil
}

func additional(h []byte, name string) []byte {
	return append(append([]byte(nil), h...), name...)
}

// IsSealed says whether b is a sealed value (of any version) rather than a plain one.
func IsSealed(b []byte) bool { return len(b) > 0 && b[0] == magic }

// parse splits a sealed value into its header, key id, nonce and ciphertext.
func parse(b []byte) (h []byte, id string, nonce, ct []byte, err error) {
	if !IsSealed(b) || len(b) < 3 {
		return nil, "", nil, nil, ErrMalformed
	}
	if b[1] != version {
		return nil, "", nil, nil, fmt.Errorf("%w: version %d", ErrMalformed, b[1])
	}
	n := int(b[2])
	if n == 0 || len(b) < 3+n+nonceSize {
		return nil, "", nil, nil, fmt.Errorf("%w: too short", ErrMalformed)
	}
	h = b[:3+n]
	return h, string(b[3 : 3+n]), b[3+n : 3+n+nonceSize], b[3+n+nonceSize:], nil
}

// KeyID is the id of the key that sealed b.
func KeyID(b []byte) (string, error) {
	_, id, _, _, err := parse(b)
	return id, err
}

// Open decrypts a value sealed for the secret name. Its errors name the key id, never the value.
func (k *Keyring) Open(name string, sealed []byte) ([]byte, error) {
	h, id, nonce, ct, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	aead, ok := k.aeads[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	value, err := aead.Open(nil, nonce, ct, additional(h, name))
	if err != nil {
		return nil, fmt.Errorf("%w with key %s", ErrNotAuthentic, id)
	}
	return value, nil
}
