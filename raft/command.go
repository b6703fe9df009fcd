package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Command is one typed change to one namespace of the replicated state. Everything the FSM
// needs is in it: the proposer picks the ID and the Time before proposing, so applying a command
// is the same on every master and on every replay.
type Command struct {
	// ID names this write. A retry of the same write carries the same ID, and the FSM applies an
	// ID at most once within DedupeWindow. Store.Apply fills it when empty.
	ID string
	// Namespace is the owner: "agents", "frameworks", "marathon", "chronos"... Its Applier
	// decides what Type and Data mean.
	Namespace string
	// Type is the owner's tag for the command, like "app.put".
	Type string
	// Time is the proposer's clock in Unix nanoseconds; the FSM's only notion of now. Store.Apply
	// fills it when zero.
	Time int64
	// Data is the owner's encoding of the command's arguments.
	Data []byte
}

// Applier applies the commands of one namespace. Apply makes the command's change in tx and
// returns a result for the proposer, or an error that discards the command's changes (other
// commands of the same raft entry are unaffected). Apply must be deterministic: no clock but
// tx.Time, no randomness, no I/O, no iteration over Go maps whose order matters.
type Applier interface {
	Apply(tx *Txn, cmd Command) (any, error)
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(tx *Txn, cmd Command) (any, error)

// Apply calls f.
func (f ApplierFunc) Apply(tx *Txn, cmd Command) (any, error) { return f(tx, cmd) }

// entryVersion is the first byte of every raft entry this package writes.
const entryVersion = 1

var errCorruptEntry = errors.New("raft: corrupt log entry")

// encodeBatch packs commands into one raft entry:
//
//	version byte, uvarint count, then per command:
//	  string ID, string Namespace, string Type, varint Time, bytes Data
//
// where string and bytes are a uvarint length and the bytes.
func encodeBatch(cmds []Command) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += 4*binary.MaxVarintLen64 + len(c.ID) + len(c.Namespace) + len(c.Type) + binary.MaxVarintLen64 + len(c.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = appendString(b, c.ID)
		b = appendString(b, c.Namespace)
		b = appendString(b, c.Type)
		b = binary.AppendVarint(b, c.Time)
		b = binary.AppendUvarint(b, uint64(len(c.Data)))
		b = append(b, c.Data...)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeBatch is the inverse of encodeBatch.
func decodeBatch(b []byte) ([]Command, error) {
	if len(b) == 0 || b[0] != entryVersion {
		return nil, fmt.Errorf("%w: unknown version", errCorruptEntry)
	}
	d := decoder{b: b[1:]}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) { // every command takes at least one byte
		d.err = fmt.Errorf("%w: %d commands in %d bytes", errCorruptEntry, n, len(d.b))
	}
	var cmds []Command
	if d.err == nil {
		cmds = make([]Command, 0, n)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var c Command
		c.ID = string(d.bytes())
		c.Namespace = string(d.bytes())
		c.Type = string(d.bytes())
		c.Time = d.varint()
		if data := d.bytes(); len(data) > 0 {
			c.Data = append([]byte(nil), data...)
		}
		cmds = append(cmds, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorruptEntry, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return cmds, nil
}

// decoder reads the varint encoding; the first error sticks and later reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != uvarintLen(v) {
		// Overlong forms (0x80 0x00 for 0) are refused too: the encoder never writes them, so
		// an entry that holds one is damaged, and each entry has one reading.
		d.err = fmt.Errorf("%w: bad uvarint", errCorruptEntry)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uvarintLen is how many bytes binary.AppendUvarint writes for v.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != uvarintLen(zigzag(v)) {
		d.err = fmt.Errorf("%w: bad varint", errCorruptEntry)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: length %d past the end", errCorruptEntry, n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// zigzag is how binary.PutVarint maps a signed value before writing it as a uvarint.
func zigzag(v int64) uint64 {
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	return ux
}
