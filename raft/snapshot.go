package raft

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	hraft "github.com/hashicorp/raft"
)

// ErrCorruptSnapshot: a snapshot could not be read back whole; nothing of it was applied.
var ErrCorruptSnapshot = errors.New("raft: corrupt snapshot")

// The snapshot format, written by Persist and read by Restore:
//
//	magic "AGORA-SNAPSHOT\n"
//	uvarint version (1), uvarint last applied index, uvarint record count
//	count × { bytes key, uvarint create index, uvarint modify index, bytes data }
//	4 bytes: CRC-32C (Castagnoli) of everything before it, big endian
//
// bytes are a uvarint length and the bytes. hashicorp/raft's file store checks its own CRC of
// the file as well; ours also covers snapshots sent to a follower over the network.
const (
	snapshotMagic   = "AGORA-SNAPSHOT\n"
	snapshotVersion = 1
	// maxSnapshotField bounds one key or value, so a corrupt length cannot ask for gigabytes.
	maxSnapshotField = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type fsmSnapshot struct {
	tree  *tree
	index uint64
}

// Persist writes the snapshot to sink; the tree is immutable, so applies may go on meanwhile.
func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.tree, s.index); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds no resources beyond the tree pointer.
func (s *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, t *tree, index uint64) error {
	h := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 256<<10)
	var scratch [binary.MaxVarintLen64]byte
	uv := func(v uint64) {
		n := binary.PutUvarint(scratch[:], v)
		bw.Write(scratch[:n])
	}
	bw.WriteString(snapshotMagic)
	uv(snapshotVersion)
	uv(index)
	uv(uint64(t.Len()))
	it := t.Root().Iterator()
	for k, v, ok := it.Next(); ok; k, v, ok = it.Next() {
		uv(uint64(len(k)))
		bw.Write(k)
		uv(v.CreateIndex)
		uv(v.ModifyIndex)
		uv(uint64(len(v.Data)))
		bw.Write(v.Data)
	}
	// bufio.Writer keeps the first error; Flush reports it.
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("raft: write snapshot: %w", err)
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], h.Sum32())
	if _, err := w.Write(sum[:]); err != nil {
		return fmt.Errorf("raft: write snapshot: %w", err)
	}
	return nil
}

// crcReader reads through a bufio.Reader and hashes every byte it hands out.
type crcReader struct {
	r *bufio.Reader
	h hash.Hash32
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.h.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	return n, err
}

func readSnapshot(r io.Reader) (*tree, uint64, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 256<<10), h: crc32.New(castagnoli)}
	corrupt := func(what string, err error) (*tree, uint64, error) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrCorruptSnapshot, what, err)
	}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(cr, magic); err != nil {
		return corrupt("header", err)
	}
	if string(magic) != snapshotMagic {
		return nil, 0, fmt.Errorf("%w: not an Agora snapshot", ErrCorruptSnapshot)
	}
	version, err := binary.ReadUvarint(cr)
	if err != nil {
		return corrupt("version", err)
	}
	if version != snapshotVersion {
		return nil, 0, fmt.Errorf("%w: version %d, this build reads %d", ErrCorruptSnapshot, version, snapshotVersion)
	}
	index, err := binary.ReadUvarint(cr)
	if err != nil {
		return corrupt("index", err)
	}
	count, err := binary.ReadUvarint(cr)
	if err != nil {
		return corrupt("count", err)
	}
	field := func() ([]byte, error) {
		n, err := binary.ReadUvarint(cr)
		if err != nil {
			return nil, err
		}
		if n > maxSnapshotField {
			return nil, fmt.Errorf("field of %d bytes", n)
		}
		b := make([]byte, n)
		_, err = io.ReadFull(cr, b)
		return b, err
	}
	txn := newTree().Txn()
	for i := uint64(0); i < count; i++ {
		k, err := field()
		if err != nil {
			return corrupt(fmt.Sprintf("record %d of %d", i, count), err)
		}
		var v Value
		if v.CreateIndex, err = binary.ReadUvarint(cr); err != nil {
			return corrupt(fmt.Sprintf("record %d of %d", i, count), err)
		}
		if v.ModifyIndex, err = binary.ReadUvarint(cr); err != nil {
			return corrupt(fmt.Sprintf("record %d of %d", i, count), err)
		}
		if v.Data, err = field(); err != nil {
			return corrupt(fmt.Sprintf("record %d of %d", i, count), err)
		}
		if len(v.Data) == 0 {
			v.Data = nil
		}
		txn.Insert(k, &v)
	}
	want := cr.h.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(cr.r, sum[:]); err != nil {
		return corrupt("checksum", err)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return nil, 0, fmt.Errorf("%w: checksum %08x, content hashes to %08x", ErrCorruptSnapshot, got, want)
	}
	if _, err := cr.r.ReadByte(); err != io.EOF {
		return nil, 0, fmt.Errorf("%w: data after the checksum", ErrCorruptSnapshot)
	}
	return txn.CommitOnly(), index, nil
}
