package raft

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"reflect"
	"strconv"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// kvApplier is the test namespace: "put" stores Data under the key before '=', "del" deletes,
// "incr" counts how often a key was applied (to catch double application), "fail" errors after
// writing (the write must not survive), "panic" panics.
func kvApplier() Applier {
	return ApplierFunc(func(tx *Txn, cmd Command) (any, error) {
		key, val, _ := bytes.Cut(cmd.Data, []byte("="))
		switch cmd.Type {
		case "put":
			tx.Put(string(key), val)
			return tx.Index(), nil
		case "del":
			return tx.Delete(string(key)), nil
		case "incr":
			n := 0
			if b, ok := tx.Get(string(key)); ok {
				n, _ = strconv.Atoi(string(b))
			}
			tx.Put(string(key), []byte(strconv.Itoa(n+1)))
			return n + 1, nil
		case "fail":
			tx.Put(string(key), val)
			return nil, errors.New("kv: refused")
		case "panic":
			panic("kv: boom")
		}
		return nil, fmt.Errorf("kv: unknown command type %q", cmd.Type)
	})
}

func testFSM() *fsm {
	return newFSM(map[string]Applier{"kv": kvApplier()}, time.Minute, slog.New(slog.DiscardHandler))
}

func entry(index uint64, cmds ...Command) *hraft.Log {
	return &hraft.Log{Index: index, Type: hraft.LogCommand, Data: encodeBatch(cmds)}
}

func kv(typ, data string) Command {
	return Command{Namespace: "kv", Type: typ, Data: []byte(data), Time: time.Unix(100, 0).UnixNano()}
}

func TestEncodeDecodeBatch(t *testing.T) {
	tests := [][]Command{
		{},
		{{}},
		{{ID: "a", Namespace: "kv", Type: "put", Time: -5, Data: []byte("k=v")}},
		{{Namespace: "kv", Type: "put", Time: 1 << 62, Data: bytes.Repeat([]byte("x"), 70000)}, {ID: "b", Namespace: "marathon", Type: "app.put"}},
	}
	for i, cmds := range tests {
		got, err := decodeBatch(encodeBatch(cmds))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if len(got) != len(cmds) || (len(cmds) > 0 && !reflect.DeepEqual(got, cmds)) {
			t.Errorf("%d: round trip = %+v, want %+v", i, got, cmds)
		}
	}
}

func TestDecodeBatchRejectsGarbage(t *testing.T) {
	good := encodeBatch([]Command{{ID: "a", Namespace: "kv", Type: "put", Data: []byte("k=v")}})
	for name, b := range map[string][]byte{
		"empty":         nil,
		"bad version":   append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"huge count":    {entryVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"length past":   {entryVersion, 1, 100},
		"bad varint":    {entryVersion, 0xff},
		"bad time":      {entryVersion, 1, 0, 0, 0},
		"data past end": {entryVersion, 1, 0, 0, 0, 2, 5, 'x'},
	} {
		if _, err := decodeBatch(b); !errors.Is(err, errCorruptEntry) {
			t.Errorf("%s: err = %v, want errCorruptEntry", name, err)
		}
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([]Command{{ID: "a", Namespace: "kv", Type: "put", Time: 7, Data: []byte("k=v")}}))
	f.Add([]byte{entryVersion, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := decodeBatch(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		if again := encodeBatch(cmds); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
		}
	})
}

func TestFSMAppliesCommandsAtomically(t *testing.T) {
	f := testFSM()
	out := f.ApplyBatch([]*hraft.Log{
		entry(1, kv("put", "a=1"), kv("fail", "b=2"), kv("panic", ""), Command{Namespace: "nope", Type: "x"}, Command{Namespace: sysNamespace}, kv("put", "c=3")),
		{Index: 2, Type: hraft.LogConfiguration},
		{Index: 3, Type: hraft.LogCommand, Data: []byte{42}},
	})
	results := out[0].([]cmdResult)
	if results[0].err != nil || results[0].value != uint64(1) {
		t.Errorf("put: %+v", results[0])
	}
	if results[1].err == nil || results[1].err.Error() != "kv: refused" {
		t.Errorf("fail: %+v", results[1])
	}
	if !errors.Is(results[2].err, ErrApplierPanic) {
		t.Errorf("panic: %+v", results[2])
	}
	if !errors.Is(results[3].err, ErrUnknownNamespace) || !errors.Is(results[4].err, ErrUnknownNamespace) {
		t.Errorf("unknown namespaces: %+v %+v", results[3], results[4])
	}
	if err, ok := out[2].(error); !ok || !errors.Is(err, errCorruptEntry) {
		t.Errorf("corrupt entry: %v", out[2])
	}

	v, _ := f.view()
	if v.Index() != 3 {
		t.Errorf("applied index = %d, want 3", v.Index())
	}
	for key, want := range map[string]string{"a": "1", "c": "3"} {
		if got, ok := v.Get("kv", key); !ok || string(got) != want {
			t.Errorf("%s = %q %v, want %q", key, got, ok, want)
		}
	}
	if _, ok := v.Get("kv", "b"); ok {
		t.Error("a failed command's write survived")
	}
}

func TestFSMAppliesAnIDAtMostOnce(t *testing.T) {
	f := testFSM()
	at := func(sec int64, id string) Command {
		c := kv("incr", "n")
		c.ID, c.Time = id, time.Unix(sec, 0).UnixNano()
		return c
	}
	f.ApplyBatch([]*hraft.Log{entry(1, at(100, "w1"), at(100, "w1"), at(101, "w2"))})
	out := f.ApplyBatch([]*hraft.Log{entry(2, at(102, "w1"))})
	if r := out[0].([]cmdResult)[0]; !r.duplicate {
		t.Errorf("a retry of w1 was not flagged duplicate: %+v", r)
	}
	v, _ := f.view()
	if got, _ := v.Get("kv", "n"); string(got) != "2" {
		t.Fatalf("n = %s, want 2 (w1 and w2 once each)", got)
	}
	// Past the window (1 minute here), w1 is forgotten, and so applies again.
	f.ApplyBatch([]*hraft.Log{entry(3, at(200, "w3")), entry(4, at(201, "w1"))})
	v, _ = f.view()
	if got, _ := v.Get("kv", "n"); string(got) != "4" {
		t.Fatalf("n = %s, want 4", got)
	}
	if n := v.Count(sysNamespace, "req/"); n != 2 {
		t.Errorf("remembered ids = %d, want 2 (w3 and w1; w2 expired)", n)
	}
}

// TestFSMIsDeterministic applies the same random entries to two FSMs and compares their
// snapshots byte for byte.
func TestFSMIsDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var logs []*hraft.Log
		for i := 1; i <= 300; i++ {
			var cmds []Command
			for j := rng.Intn(5); j >= 0; j-- {
				typ := []string{"put", "put", "del", "incr", "fail"}[rng.Intn(5)]
				c := kv(typ, fmt.Sprintf("k%d=v%d", rng.Intn(50), rng.Intn(1000)))
				if rng.Intn(3) == 0 {
					c.ID = fmt.Sprintf("id%d", rng.Intn(100))
				}
				c.Time = int64(i) * int64(time.Second)
				cmds = append(cmds, c)
			}
			logs = append(logs, entry(uint64(i), cmds...))
		}
		a, b := testFSM(), testFSM()
		a.ApplyBatch(logs)
		for _, l := range logs { // one at a time this time
			b.Apply(l)
		}
		if sa, sb := snapshotBytes(t, a), snapshotBytes(t, b); !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: the two FSMs differ", seed)
		}
	}
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, f.tree, f.index); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTxnListsInKeyOrderWithinItsNamespace(t *testing.T) {
	f := newFSM(map[string]Applier{
		"a": kvApplier(),
		"b": kvApplier(),
	}, time.Minute, slog.New(slog.DiscardHandler))
	put := func(ns, data string) Command { return Command{Namespace: ns, Type: "put", Data: []byte(data)} }
	f.ApplyBatch([]*hraft.Log{entry(1, put("a", "x/2=2"), put("a", "x/1=1"), put("a", "y=3"), put("b", "x/0=0"))})
	v, _ := f.view()
	var keys []string
	v.List("a", "x/", func(k string, _ []byte) bool { keys = append(keys, k); return true })
	if !reflect.DeepEqual(keys, []string{"x/1", "x/2"}) {
		t.Fatalf("keys = %v", keys)
	}
	val, _ := v.GetValue("a", "x/1")
	if val.CreateIndex != 1 || val.ModifyIndex != 1 {
		t.Errorf("indexes = %+v", val)
	}
}

// TestTxnSeesItsOwnWrites runs one command that reads its own puts, deletes and prefix deletes
// back, and checks what it saw and what stayed.
func TestTxnSeesItsOwnWrites(t *testing.T) {
	var seen []string
	list := func(tx *Txn, prefix string) string {
		var keys []string
		tx.List(prefix, func(k string, d []byte) bool { keys = append(keys, k+"="+string(d)); return true })
		return fmt.Sprint(keys)
	}
	steps := ApplierFunc(func(tx *Txn, cmd Command) (any, error) {
		switch cmd.Type {
		case "seed":
			tx.Put("a/1", []byte("1"))
			tx.Put("a/2", []byte("2"))
			tx.Put("b/1", []byte("b"))
		case "mix":
			tx.Put("a/3", []byte("3"))
			tx.Delete("a/1")
			seen = append(seen, list(tx, "a/"))
			tx.DeletePrefix("a/")
			_, ok := tx.Get("a/2")
			seen = append(seen, fmt.Sprintf("%s %v", list(tx, ""), ok))
			tx.Put("a/9", []byte("9"))
			seen = append(seen, list(tx, "a/"))
		case "mix-then-fail":
			tx.DeletePrefix("")
			tx.Put("z", []byte("z"))
			return nil, errors.New("no")
		}
		return nil, nil
	})
	f := newFSM(map[string]Applier{"t": steps}, time.Minute, slog.New(slog.DiscardHandler))
	f.ApplyBatch([]*hraft.Log{entry(1, Command{Namespace: "t", Type: "seed"}, Command{Namespace: "t", Type: "mix"}, Command{Namespace: "t", Type: "mix-then-fail"})})
	want := []string{"[a/2=2 a/3=3]", "[b/1=b] false", "[a/9=9]"}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("the command saw %q, want %q", seen, want)
	}
	v, _ := f.view()
	var keys []string
	v.List("t", "", func(k string, d []byte) bool { keys = append(keys, k); return true })
	if !reflect.DeepEqual(keys, []string{"a/9", "b/1"}) {
		t.Fatalf("state after the entry = %v, want [a/9 b/1] (the failed command changed nothing)", keys)
	}
}
