package dnsserver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// serveUDP answers UDP queries until the socket is closed: one reader per two CPUs (readers),
// each answering what it reads itself, with buffers of its own — no goroutine per query and no
// hop between goroutines, as miekg/dns's server makes — and reading and writing as many queries
// and answers as are waiting in one system call each (recvmmsg, sendmmsg). The common answers are written
// without a dns.Msg (quickAnswer), the others from Answer's. A packet that is a response is
// dropped; one that is not DNS gets FORMERR, as miekg/dns's server answers.
//
// On a wildcard address (0.0.0.0, ::) each answer goes out from the address its query came to
// (IP_PKTINFO, as miekg/dns does): a host with several addresses answers from the one asked.
func (s *Server) serveUDP() error {
	conn, ok := s.udp.(*net.UDPConn)
	if !ok {
		return errors.New("not a UDP socket")
	}
	local, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return err
	}
	var pc batchConn = ipv4.NewPacketConn(conn)
	if !local.Addr().Unmap().Is4() {
		pc = ipv6.NewPacketConn(conn)
	}
	wildcard := false
	if local.Addr().IsUnspecified() {
		// Either family may fail (an IPv4 socket has no IPv6 options); both: no source to keep.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		wildcard = err4 == nil || err6 == nil
	}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range readers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.readUDP(pc, wildcard); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// readers is how many goroutines read the UDP socket: one per two CPUs. They take turns at the
// socket (its reads are one at a time) and each turn wakes the next reader, which with few CPUs
// mostly finds nothing: on 2 cores one reader answered 44-70k queries/s at 8-15 µs of CPU each
// where two answered 39-40k at 15-18 µs (BenchmarkServeUDP, 1 socket × 8, three interleaved
// runs). More readers pay where more cores share the sending, the costlier half of the work.
func readers() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// oobSize holds either family's destination and interface.
var oobSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface)), len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface)))

// answerUDP writes into out the answer to the UDP query q: quickAnswer's, or Answer's packed.
// ok false: no answer (q is a response, or not DNS at all).
func (s *Server) answerUDP(q, out []byte, sc *quickScratch) (answer []byte, qtype uint16, rcode int, ok bool) {
	if z := s.zone.Load(); z != nil {
		if answer, qtype, ok := z.quickAnswer(q, out, s.domain, len(s.cfg.Recursors) > 0, sc); ok {
			return answer, qtype, dns.RcodeSuccess, true
		}
	}
	if len(q) < 12 || q[2]&0x80 != 0 {
		return nil, 0, 0, false // a response, or less than a header
	}
	r := new(dns.Msg)
	var m *dns.Msg
	if err := r.Unpack(q); err != nil {
		// The header alone, FORMERR.
		m = new(dns.Msg)
		m.Id, m.Response, m.Opcode, m.Rcode = binary.BigEndian.Uint16(q), true, int(q[2]>>3)&0xf, dns.RcodeFormatError
		r = new(dns.Msg)
	} else {
		m = s.Answer(r, false)
	}
	answer, err := m.PackBuffer(out)
	if err != nil {
		s.cfg.Logger.Debug("dns: answer not packed", "err", err)
		return nil, 0, 0, false
	}
	return answer, questionType(r), m.Rcode, true
}

// replySource makes the control message of a query (its destination address) into the one of
// its answer (that address as the source).
func replySource(oob []byte) []byte {
	cm6 := new(ipv6.ControlMessage)
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		if cm6.Dst.To4() == nil {
			return (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal()
		}
		return (&ipv4.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	cm4 := new(ipv4.ControlMessage)
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	}
	return nil
}

// batchConn reads and writes several packets a system call (recvmmsg, sendmmsg on Linux):
// ipv4.PacketConn's or ipv6.PacketConn's, as the socket's family is.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpBatch is how many queries a reader takes from the socket at most at once.
const udpBatch = 16

// readUDP is one reader of serveUDP, until the socket is closed (nil) or fails: it takes up to
// udpBatch queries a system call, all those waiting, and writes their answers in one.
func (s *Server) readUDP(pc batchConn, wildcard bool) error {
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)}
		out[i].Buffers = [][]byte{nil}
		bufs[i] = make([]byte, 0, 4096)
		if wildcard {
			in[i].OOB = make([]byte, oobSize)
		}
	}
	var sc quickScratch
	type done struct {
		qtype uint16
		rcode int
	}
	var dones [udpBatch]done
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		start := time.Now()
		k := 0
		for i := range n {
			answer, qtype, rcode, ok := s.answerUDP(in[i].Buffers[0][:in[i].N], bufs[i], &sc)
			if !ok {
				continue
			}
			out[k].Buffers[0], out[k].Addr, out[k].OOB = answer, in[i].Addr, nil
			if wildcard {
				out[k].OOB = replySource(in[i].OOB[:in[i].NN])
			}
			dones[k] = done{qtype, rcode}
			k++
		}
		for sent := 0; sent < k; {
			m, err := pc.WriteBatch(out[sent:k], 0)
			if err != nil {
				s.cfg.Logger.Debug("dns: answer not written", "err", err)
				m = max(m, 1) // skip the one that failed
			}
			sent += m
		}
		for _, d := range dones[:k] {
			s.observe(d.qtype, d.rcode, start)
		}
	}
}
