package netem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The nfnetlink_queue protocol, as <linux/netfilter/nfnetlink.h> and
// <linux/netfilter/nfnetlink_queue.h> lay it out. Every message is a netlink header (host byte
// order), a struct nfgenmsg (family, version, queue number in network order), then attributes
// (length and type in host order, payload padded to 4 bytes). The numbers inside the queue's
// structs are big-endian.
const (
	nfnlSubsysQueue = 3 // NFNL_SUBSYS_QUEUE

	nfqnlMsgPacket       = nfnlSubsysQueue << 8   // NFQNL_MSG_PACKET (0), kernel to us
	nfqnlMsgVerdict      = nfnlSubsysQueue<<8 | 1 // NFQNL_MSG_VERDICT
	nfqnlMsgConfig       = nfnlSubsysQueue<<8 | 2 // NFQNL_MSG_CONFIG
	nfqnlMsgVerdictBatch = nfnlSubsysQueue<<8 | 3 // NFQNL_MSG_VERDICT_BATCH: every id up to one

	nfqaPacketHdr  = 1 // NFQA_PACKET_HDR: struct nfqnl_msg_packet_hdr, the id first
	nfqaVerdictHdr = 2 // NFQA_VERDICT_HDR: struct nfqnl_msg_verdict_hdr

	nfqaCfgCmd         = 1 // NFQA_CFG_CMD: struct nfqnl_msg_config_cmd
	nfqaCfgParams      = 2 // NFQA_CFG_PARAMS: struct nfqnl_msg_config_params (packed, 5 bytes)
	nfqaCfgQueueMaxlen = 3 // NFQA_CFG_QUEUE_MAXLEN: be32
	nfqaCfgMask        = 4 // NFQA_CFG_MASK: be32, which flags NFQA_CFG_FLAGS sets
	nfqaCfgFlags       = 5 // NFQA_CFG_FLAGS: be32

	nfqnlCfgCmdBind = 1 // NFQNL_CFG_CMD_BIND
	nfqnlCopyMeta   = 1 // NFQNL_COPY_META: the packet's metadata, none of its bytes
	nfqaCfgFGSO     = 1 << 2

	nfDrop   = 0 // NF_DROP
	nfAccept = 1 // NF_ACCEPT

	nlmsgHdrLen  = unix.SizeofNlMsghdr // 16
	nfgenHdrLen  = 4                   // struct nfgenmsg
	nlattrHdrLen = unix.SizeofNlAttr   // 4
	nlaTypeMask  = 0x3fff              // NLA_TYPE_MASK: without the nested and byte-order flags

	// verdictLen is the size of one verdict message: header, nfgenmsg, NFQA_VERDICT_HDR.
	verdictLen = nlmsgHdrLen + nfgenHdrLen + nlattrHdrLen + 8
)

// queue is one bound nfnetlink_queue: a NETLINK_NETFILTER socket made inside a network namespace
// and the number of the queue it owns there. The kernel destroys the queue (dropping what it still
// holds) when the socket closes, so a process that dies takes its queue along.
type queue struct {
	num  uint16
	file *os.File // the socket, non-blocking, on Go's poller
	rc   syscall.RawConn
}

// openQueue makes a NETLINK_NETFILTER socket in the network namespace at nsPath and binds the
// first free queue number from first on, trying up to tries numbers. The socket belongs to the
// namespace where it was made; only its making needs to happen in there.
func openQueue(nsPath string, first uint16, tries int, maxLen uint32) (*queue, error) {
	var fd int
	err := inNetns(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netem: netlink socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netem: bind netlink socket: %w", err)
	}
	// Room for a full queue of metadata messages (under a kilobyte of socket memory each): a
	// message the kernel cannot deliver costs its packet (dropped, counted as user-dropped).
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	// An overrun is counted by the kernel per queue; it need not fail our reads.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	// Error answers need not echo the whole request.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)

	var num uint16
	var bindErr error
	for i := 0; i < tries; i++ {
		num = first + uint16(i)
		bindErr = request(fd, configMsg(num, uint32(i+1), maxLen))
		if errors.Is(bindErr, unix.EPERM) || errors.Is(bindErr, unix.EBUSY) || errors.Is(bindErr, unix.EEXIST) {
			continue // another socket owns this number in this namespace
		}
		break
	}
	if bindErr != nil {
		return nil, fmt.Errorf("netem: bind nfqueue (numbers %d to %d): %w", first, num, bindErr)
	}
	file := os.NewFile(uintptr(fd), fmt.Sprintf("nfqueue-%d", num))
	rc, err := file.SyscallConn()
	if err == nil {
		err = file.SetReadDeadline(time.Time{}) // fails unless the socket is on the poller
	}
	if err != nil {
		file.Close()
		ok = true // closed with the file
		return nil, fmt.Errorf("netem: nfqueue socket: %w", err)
	}
	ok = true
	return &queue{num: num, file: file, rc: rc}, nil
}

// configMsg binds queue num to the socket, asks for metadata only (the packet id is all we need),
// caps the packets it may hold at maxLen and lets it hand over GSO packets whole: we never read
// or change payloads, so the kernel need not segment them for us. No fail-open flag: a full
// queue drops, as netem's limit does, rather than letting packets through undelayed.
func configMsg(num uint16, seq uint32, maxLen uint32) []byte {
	b := nlHeader(nil, nfqnlMsgConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, num)
	b = appendAttr(b, nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0})
	b = appendAttr(b, nfqaCfgParams, []byte{0, 0, 0, 0, nfqnlCopyMeta})
	b = appendAttr(b, nfqaCfgQueueMaxlen, be32(maxLen))
	b = appendAttr(b, nfqaCfgMask, be32(nfqaCfgFGSO))
	b = appendAttr(b, nfqaCfgFlags, be32(nfqaCfgFGSO))
	return finish(b)
}

// appendVerdict appends one verdict message for packet id of queue num.
func appendVerdict(b []byte, num uint16, id uint32, verdict uint32) []byte {
	start := len(b)
	b = nlHeader(b, nfqnlMsgVerdict, unix.NLM_F_REQUEST, 0, num)
	b = appendAttr(b, nfqaVerdictHdr, append(be32(verdict), be32(id)...))
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// batchAcceptMsg accepts every packet queue num holds whose id is not after maxID (ids compare
// as the kernel's nfq_id_after does: modulo 2^32).
func batchAcceptMsg(num uint16, seq, maxID uint32) []byte {
	b := nlHeader(nil, nfqnlMsgVerdictBatch, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, num)
	b = appendAttr(b, nfqaVerdictHdr, append(be32(nfAccept), be32(maxID)...))
	return finish(b)
}

func nlHeader(b []byte, typ, flags uint16, seq uint32, num uint16) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set when finished
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills ours in
	b = append(b, unix.AF_UNSPEC, 0)           // nfgenmsg: family, NFNETLINK_V0
	return binary.BigEndian.AppendUint16(b, num)
}

func appendAttr(b []byte, typ uint16, payload []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlattrHdrLen+len(payload)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func finish(b []byte) []byte {
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// message is what the kernel sent that we act on: a queued packet's id, or the answer to one of
// our requests (errno 0 for an acknowledgement).
type message struct {
	packet bool
	id     uint32 // packet id
	seq    uint32 // of the request answered
	errno  syscall.Errno
}

// parseMessages reads the netlink messages in b (one datagram). Messages of other kinds are
// skipped; a malformed one ends the datagram with an error.
func parseMessages(b []byte, out []message) ([]message, error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, fmt.Errorf("netem: netlink message cut short (%d bytes)", len(b))
		}
		n := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		seq := binary.NativeEndian.Uint32(b[8:])
		if n < nlmsgHdrLen || n > len(b) {
			return out, fmt.Errorf("netem: netlink message of length %d in %d bytes", n, len(b))
		}
		body := b[nlmsgHdrLen:n]
		switch typ {
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return out, errors.New("netem: netlink error message cut short")
			}
			code := int32(binary.NativeEndian.Uint32(body))
			out = append(out, message{seq: seq, errno: syscall.Errno(-code)})
		case nfqnlMsgPacket:
			id, ok := packetID(body)
			if !ok {
				return out, errors.New("netem: queued packet without its header")
			}
			out = append(out, message{packet: true, id: id})
		}
		adv := (n + 3) &^ 3
		if adv > len(b) {
			adv = len(b)
		}
		b = b[adv:]
	}
	return out, nil
}

// packetID finds NFQA_PACKET_HDR among a packet message's attributes and returns its id.
func packetID(body []byte) (uint32, bool) {
	if len(body) < nfgenHdrLen {
		return 0, false
	}
	attrs := body[nfgenHdrLen:]
	for len(attrs) >= nlattrHdrLen {
		l := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & nlaTypeMask
		if l < nlattrHdrLen || l > len(attrs) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= nlattrHdrLen+4 {
			return binary.BigEndian.Uint32(attrs[nlattrHdrLen:]), true
		}
		adv := (l + 3) &^ 3
		if adv > len(attrs) {
			break
		}
		attrs = attrs[adv:]
	}
	return 0, false
}

// request sends msg on the raw socket fd (not yet on the poller) and waits up to 5 s for the
// kernel's answer to it. Packets that a queue already diverts to us meanwhile (a rule left by a
// test that crashed, naming the number just bound) are accepted at once.
func request(fd int, msg []byte) error {
	seq := binary.NativeEndian.Uint32(msg[8:])
	if _, err := unix.Write(fd, msg); err != nil {
		return err
	}
	num := binary.BigEndian.Uint16(msg[nlmsgHdrLen+2:])
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 16<<10)
	var msgs []message
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return errors.New("no answer from the kernel in 5s")
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return err
		}
		n, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR || err == unix.ENOBUFS {
			continue
		}
		if err != nil {
			return err
		}
		msgs, err = parseMessages(buf[:n], msgs[:0])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch {
			case m.packet:
				unix.Write(fd, appendVerdict(nil, num, m.id, nfAccept))
			case m.seq == seq && m.errno == 0:
				return nil
			case m.seq == seq:
				return m.errno
			}
		}
	}
}
