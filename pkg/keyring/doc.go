// Package keyring is the set of AES-256 keys that masters encrypt secrets' values with before
// they enter the replicated store, so that neither raft's log (raft.db) nor its snapshots hold a
// value in plain text.
//
// Use:
//
//  1. Get a Keyring: Load reads a keyring file (--secrets-keyring), one key per line as
//     "ID BASE64-32-BYTE-KEY", '#' starting a comment; it refuses a file that group or others
//     may read. FromClusterSecret derives one key from the cluster secret with HKDF-SHA256.
//     LoadOrCreate reads a file, or makes one with one random key when there is none (a master
//     without either). Every master of a cluster needs the same keys.
//  2. Seal a value before proposing it: the first key of the keyring (Primary) encrypts, with
//     AES-256-GCM, a random nonce, and the secret's name as additional data, so a sealed value
//     opens under its own name only. The caller gives the randomness.
//  3. Open a stored value: any key of the keyring opens what it sealed. A value sealed with a
//     key this keyring lacks fails with ErrUnknownKey; one that does not authenticate (another
//     key under the same id, another name, damage) with ErrNotAuthentic. KeyID says which key
//     sealed a value, without opening it.
//  4. Rotate: put a new key first and keep the old ones after it; values sealed with a key
//     other than Primary are opened and sealed again (masters do it when one starts leading);
//     then drop the old key.
//
// A sealed value is binary:
//
//	0xFF | version 1 | key id length n | key id (n bytes) | nonce (12 bytes) | ciphertext+tag
//
// Its first byte never starts valid UTF-8, and values stored in plain text by earlier builds
// are always valid UTF-8 (they came in as JSON strings), so IsSealed tells the two apart. The
// additional data is the header (everything before the nonce) followed by the name.
package keyring
