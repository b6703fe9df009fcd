package netem

import (
	"encoding/binary"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// packetMsg builds a packet message as the kernel sends it in metadata mode: the packet header
// (id, hw protocol, hook), then attributes such as the out interface.
func packetMsg(num uint16, id uint32) []byte {
	b := nlHeader(nil, nfqnlMsgPacket, 0, 0, num)
	b[nlmsgHdrLen] = unix.AF_INET
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = append(hdr, 0x08, 0x00, 4) // ETH_P_IP, NF_INET_POST_ROUTING
	b = appendAttr(b, nfqaPacketHdr, hdr)
	b = appendAttr(b, 7, be32(3)) // NFQA_IFINDEX_OUTDEV
	return finish(b)
}

func errorMsg(seq uint32, errno syscall.Errno) []byte {
	b := binary.NativeEndian.AppendUint32(nil, 0)
	b = binary.NativeEndian.AppendUint16(b, unix.NLMSG_ERROR)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, uint32(-int32(errno)))
	b = append(b, make([]byte, nlmsgHdrLen)...) // the request's header (NETLINK_CAP_ACK)
	return finish(b)
}

func TestParseMessages(t *testing.T) {
	var dgram []byte
	dgram = append(dgram, packetMsg(16384, 7)...)
	dgram = append(dgram, errorMsg(5, 0)...)
	dgram = append(dgram, errorMsg(0, unix.ENOENT)...)
	dgram = append(dgram, packetMsg(16384, 0xfffffffe)...)
	got, err := parseMessages(dgram, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []message{{packet: true, id: 7}, {seq: 5}, {errno: unix.ENOENT}, {packet: true, id: 0xfffffffe}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range [][]byte{dgram[:10], dgram[:len(dgram)-3], func() []byte {
		b := packetMsg(1, 1)
		binary.NativeEndian.PutUint16(b[nlmsgHdrLen+nfgenHdrLen+2:], 9) // no packet header
		return b
	}()} {
		if _, err := parseMessages(bad, nil); err == nil {
			t.Errorf("%x parsed", bad)
		}
	}
}

// TestMessagesLayout checks the requests against the kernel's structs: lengths, the queue number
// in network order, the packed config params, the verdict header.
func TestMessagesLayout(t *testing.T) {
	v := appendVerdict(nil, 0x4001, 0x01020304, nfAccept)
	v = appendVerdict(v, 0x4001, 9, nfDrop)
	if len(v) != 2*verdictLen {
		t.Fatalf("two verdicts are %d bytes, want %d", len(v), 2*verdictLen)
	}
	first := v[:verdictLen]
	if n := binary.NativeEndian.Uint32(first); n != verdictLen {
		t.Errorf("verdict length field %d, want %d", n, verdictLen)
	}
	if typ := binary.NativeEndian.Uint16(first[4:]); typ != 0x0301 {
		t.Errorf("verdict type %#x, want 0x0301", typ)
	}
	if q := binary.BigEndian.Uint16(first[18:]); q != 0x4001 {
		t.Errorf("queue number %#x, want 0x4001", q)
	}
	attr := first[nlmsgHdrLen+nfgenHdrLen:]
	if l, typ := binary.NativeEndian.Uint16(attr), binary.NativeEndian.Uint16(attr[2:]); l != 12 || typ != nfqaVerdictHdr {
		t.Errorf("verdict attribute length %d type %d, want 12 and %d", l, typ, nfqaVerdictHdr)
	}
	if verdict, id := binary.BigEndian.Uint32(attr[4:]), binary.BigEndian.Uint32(attr[8:]); verdict != nfAccept || id != 0x01020304 {
		t.Errorf("verdict %d for id %#x, want accept for 0x01020304", verdict, id)
	}
	if verdict := binary.BigEndian.Uint32(v[verdictLen+nlmsgHdrLen+nfgenHdrLen+4:]); verdict != nfDrop {
		t.Errorf("second verdict %d, want drop", verdict)
	}

	c := configMsg(16384, 1, QueueLen)
	if n := binary.NativeEndian.Uint32(c); int(n) != len(c) || len(c)%4 != 0 {
		t.Errorf("config message length field %d, length %d", n, len(c))
	}
	want := []struct {
		typ uint16
		len uint16
	}{{nfqaCfgCmd, 8}, {nfqaCfgParams, 9}, {nfqaCfgQueueMaxlen, 8}, {nfqaCfgMask, 8}, {nfqaCfgFlags, 8}}
	attrs := c[nlmsgHdrLen+nfgenHdrLen:]
	for _, w := range want {
		l, typ := binary.NativeEndian.Uint16(attrs), binary.NativeEndian.Uint16(attrs[2:])
		if l != w.len || typ != w.typ {
			t.Fatalf("config attribute type %d length %d, want type %d length %d", typ, l, w.typ, w.len)
		}
		if typ == nfqaCfgParams && attrs[8] != nfqnlCopyMeta {
			t.Errorf("copy mode %d, want meta", attrs[8])
		}
		if typ == nfqaCfgQueueMaxlen && binary.BigEndian.Uint32(attrs[4:]) != QueueLen {
			t.Errorf("queue length %d, want %d", binary.BigEndian.Uint32(attrs[4:]), QueueLen)
		}
		attrs = attrs[(l+3)&^3:]
	}
	if len(attrs) != 0 {
		t.Errorf("%d bytes after the config attributes", len(attrs))
	}
}

// FuzzParseMessages feeds datagrams to the parser: it must not panic or read past the input,
// and it reports either a packet or an answer, never both.
func FuzzParseMessages(f *testing.F) {
	f.Add(append(packetMsg(1, 42), errorMsg(3, unix.EPERM)...))
	f.Add(errorMsg(1, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _ := parseMessages(b, nil)
		for _, m := range msgs {
			if m.packet && m.errno != 0 {
				t.Fatalf("a packet with an errno: %+v", m)
			}
		}
	})
}

// TestReleaseAllCoversTheHeldIDs checks the id Close's batch verdict names against the kernel's
// comparison: every id near the last one read, before or after it, across the wrap at 2^32.
func TestReleaseAllCoversTheHeldIDs(t *testing.T) {
	idAfter := func(id, max uint32) bool { return int32(id-max) > 0 } // nfq_id_after
	for _, last := range []uint32{0, 1, 50, QueueLen, 1 << 31, 0xffffffff - 10, 0xffffffff} {
		max := releaseAllID(last)
		for d := -3 * QueueLen; d <= 3*QueueLen; d++ {
			if id := last + uint32(d); idAfter(id, max) {
				t.Fatalf("last id read %d: id %d is after %d, the batch verdict leaves it", last, id, max)
			}
		}
	}
}
