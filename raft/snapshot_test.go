package raft

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	hraft "github.com/hashicorp/raft"
)

func bigFSM(t testing.TB, keys int) *fsm {
	t.Helper()
	f := testFSM()
	var logs []*hraft.Log
	for i := 0; i < keys; i += 100 {
		var cmds []Command
		for j := i; j < i+100 && j < keys; j++ {
			cmds = append(cmds, kv("put", fmt.Sprintf("key/%06d=%s", j, bytes.Repeat([]byte{byte('a' + j%26)}, 200))))
		}
		logs = append(logs, entry(uint64(len(logs)+1), cmds...))
	}
	f.ApplyBatch(logs)
	return f
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := bigFSM(t, 20000)
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, snap.(*fsmSnapshot).tree, snap.(*fsmSnapshot).index); err != nil {
		t.Fatal(err)
	}
	g := testFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("restored state differs")
	}
	v, _ := g.view()
	if v.Index() != f.index || v.Count("kv", "key/") != 20000 {
		t.Fatalf("restored index %d count %d", v.Index(), v.Count("kv", "key/"))
	}
}

func TestRestoreRejectsDamage(t *testing.T) {
	f := bigFSM(t, 50)
	good := snapshotBytes(t, f)
	flip := append([]byte(nil), good...)
	flip[len(flip)/2] ^= 0x40
	cases := map[string][]byte{
		"empty":      nil,
		"not ours":   []byte("hello world, this is not a snapshot"),
		"truncated":  good[:len(good)-10],
		"no crc":     good[:len(good)-4],
		"bit flip":   flip,
		"trailing":   append(append([]byte(nil), good...), 1),
		"bad length": append([]byte(snapshotMagic), 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f),
	}
	for name, b := range cases {
		g := testFSM()
		g.ApplyBatch([]*hraft.Log{entry(1, kv("put", "keep=me"))})
		err := g.Restore(io.NopCloser(bytes.NewReader(b)))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: err = %v, want ErrCorruptSnapshot", name, err)
		}
		// Nothing of a damaged snapshot is applied.
		if v, _ := g.view(); v.Count("kv", "") != 1 {
			t.Errorf("%s: state changed by a rejected snapshot", name)
		}
	}
}

func FuzzReadSnapshot(f *testing.F) {
	f.Add(snapshotBytes(&testing.T{}, bigFSM(&testing.T{}, 3)))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, index, err := readSnapshot(bytes.NewReader(b))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := writeSnapshot(&buf, tr, index); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), b) {
			t.Fatal("a snapshot that reads does not write back the same")
		}
	})
}

func BenchmarkSnapshotPersist(b *testing.B) {
	f := bigFSM(b, 20000)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := writeSnapshot(io.Discard, f.tree, f.index); err != nil {
			b.Fatal(err)
		}
	}
}
