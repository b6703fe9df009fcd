package netem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test network: two namespaces joined by a veth pair, addresses from 198.18.0.0/15 (set
// aside for benchmarking networks, RFC 2544) that exist only inside them.
var (
	addrA  = netip.MustParseAddr("198.18.0.1")
	addrB  = netip.MustParseAddr("198.18.0.2")
	addrB2 = netip.MustParseAddr("198.18.0.3") // a second address of B, for a second Link
)

var netSeq atomic.Int32

type testNet struct{ a, b string }

// needNet fails the test in CI, or skips it elsewhere, when this process cannot make network
// namespaces and iptables rules; it says what is missing.
func needNet(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, iptables)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "ip6tables", "ip6tables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (scripts/netdeps.sh installs it)")
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("netem: this test needs %s, which CI has", strings.Join(missing, ", "))
	}
	t.Skipf("needs %s; skipped since this is not CI", strings.Join(missing, ", "))
}

// newTestNet makes the two namespaces, removed when the test ends however it ends.
func newTestNet(t testing.TB) *testNet {
	t.Helper()
	needNet(t)
	id := fmt.Sprintf("netemtest-%d-%d", os.Getpid(), netSeq.Add(1))
	n := &testNet{a: id + "-a", b: id + "-b"}
	t.Cleanup(func() {
		for _, ns := range []string{n.a, n.b} {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	for _, args := range [][]string{
		{"netns", "add", n.a},
		{"netns", "add", n.b},
		{"-n", n.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", n.b},
		{"-n", n.a, "addr", "add", addrA.String() + "/24", "dev", "va"},
		{"-n", n.b, "addr", "add", addrB.String() + "/24", "dev", "vb"},
		{"-n", n.b, "addr", "add", addrB2.String() + "/24", "dev", "vb"},
		{"-n", n.a, "link", "set", "va", "up"},
		{"-n", n.b, "link", "set", "vb", "up"},
		{"-n", n.a, "link", "set", "lo", "up"},
		{"-n", n.b, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return n
}

// in runs f with its sockets made in namespace ns.
func in(t testing.TB, ns string, f func() error) {
	t.Helper()
	if err := inNetns(NetnsDir+"/"+ns, f); err != nil {
		t.Fatal(err)
	}
}

func apply(t testing.TB, ns string, dst netip.Addr, s Shape) *Link {
	t.Helper()
	start := time.Now()
	l, err := Apply(ns, []netip.Prefix{netip.PrefixFrom(dst, 32)}, s)
	if err != nil {
		t.Fatalf("Apply(%s → %s, %+v): %v", ns, dst, s, err)
	}
	t.Logf("%v (Apply took %v)", l, time.Since(start))
	return l
}

// echoServer answers every byte it reads on TCP port 7 of addr in namespace ns.
func echoServer(t testing.TB, ns string, addr netip.Addr) {
	t.Helper()
	var ln net.Listener
	in(t, ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 7).String())
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

// dialEcho connects from namespace ns to the echo server at addr, retrying for up to 10 s while
// the veth pair comes up.
func dialEcho(t testing.TB, ns string, addr netip.Addr) net.Conn {
	t.Helper()
	var c net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		in(t, ns, func() error {
			c, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, 7).String(), time.Second)
			return nil
		})
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s from %s: %v", addr, ns, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roundTrips times n one-byte round trips on c.
func roundTrips(t testing.TB, c net.Conn, n int) []time.Duration {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	out := make([]time.Duration, n)
	b := []byte{0}
	for i := range out {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		out[i] = time.Since(start)
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// noRulesLeft fails the test if any rule of this package is left in namespace ns.
func noRulesLeft(t testing.TB, ns string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v: %s", ns, err, out)
	}
	if strings.Contains(string(out), "AGORA-NETEM") || strings.Contains(string(out), "NFQUEUE") {
		t.Errorf("rules left in %s after Close:\n%s", ns, out)
	}
}

// slack is how late a delayed packet may be on a loaded 2-core machine: the reader and the
// releaser are two goroutines that must each get a CPU (with builds and other tests running, a
// runnable thread can wait a few scheduler slices of 3 ms per competitor), the Go timer fires
// up to a millisecond late, and -race slows every step. Checked on the median of the samples, so
// a single stall (GC, preemption) does not decide; a delay applied twice, or not at all, is still
// far outside it.
const slack = 40 * time.Millisecond

// TestDelayTCP times TCP round trips from A to B: at least the delay each time, the delay plus
// slack at the median, both directions adding up with two Links, a second Link on another
// address of B with its own queue and delay, and back to the baseline after Close with no rule
// left behind.
func TestDelayTCP(t *testing.T) {
	n := newTestNet(t)
	echoServer(t, n.b, addrB)
	echoServer(t, n.b, addrB2)
	c := dialEcho(t, n.a, addrB)
	c2 := dialEcho(t, n.a, addrB2)
	const rounds = 15
	base := median(roundTrips(t, c, rounds))
	t.Logf("baseline round trip %v", base)
	if base > 10*time.Millisecond {
		t.Logf("the baseline is slow: a loaded machine")
	}

	check := func(name string, c net.Conn, atLeast time.Duration) {
		t.Helper()
		rtts := roundTrips(t, c, rounds)
		m := median(rtts)
		t.Logf("%s: median round trip %v (min %v, max %v)", name, m, slices.Min(rtts), slices.Max(rtts))
		if lo := slices.Min(rtts); lo < atLeast {
			t.Errorf("%s: a round trip took %v, less than the %v delay", name, lo, atLeast)
		}
		if m > atLeast+base+slack {
			t.Errorf("%s: median round trip %v, more than %v + baseline %v + slack %v", name, m, atLeast, base, slack)
		}
	}

	ab := apply(t, n.a, addrB, Shape{Delay: 50 * time.Millisecond})
	check("A→B 50ms", c, 50*time.Millisecond)

	ba := apply(t, n.b, addrA, Shape{Delay: 30 * time.Millisecond})
	check("A→B 50ms, B→A 30ms", c, 80*time.Millisecond)

	ab2 := apply(t, n.a, addrB2, Shape{Delay: 10 * time.Millisecond})
	if ab2.q.num == ab.q.num {
		t.Errorf("two Links in namespace %s share queue %d", n.a, ab.q.num)
	}
	check("A→B2 10ms, B→A 30ms", c2, 40*time.Millisecond)

	for _, l := range []*Link{ab, ba, ab2} {
		if err := l.Close(); err != nil {
			t.Errorf("Close %v: %v", l, err)
		}
		st := l.Stats()
		t.Logf("%v: %+v", l, st)
		if st.Delayed == 0 || st.Overflow != 0 || st.Errors != 0 {
			t.Errorf("%v: %+v, want packets delayed, none overflowed, no errors", l, st)
		}
	}
	after := roundTrips(t, c, rounds)
	t.Logf("after Close: median round trip %v", median(after))
	if m := median(after); m > base+slack/2 {
		t.Errorf("after Close the median round trip is %v, baseline %v", m, base)
	}
	noRulesLeft(t, n.a)
	noRulesLeft(t, n.b)
}

// TestCrashedLinkLetsTrafficThrough: when the process holding the queue dies (here: its socket
// closes without Close), the rules it leaves no longer delay anything (--queue-bypass), and the
// next Link that gets the same queue number replaces them.
func TestCrashedLinkLetsTrafficThrough(t *testing.T) {
	n := newTestNet(t)
	echoServer(t, n.b, addrB)
	c := dialEcho(t, n.a, addrB)
	l := apply(t, n.a, addrB, Shape{Delay: 200 * time.Millisecond})
	if m := median(roundTrips(t, c, 3)); m < 200*time.Millisecond {
		t.Fatalf("median round trip %v with a 200ms delay", m)
	}
	// The "crash": the reader and releaser stop, the socket closes, the rules stay.
	close(l.stop)
	l.q.file.SetReadDeadline(time.Unix(1, 0))
	l.wg.Wait()
	l.closeFiles()
	if left, err := rulesLeft(n.a, l.fams[0], l.q.num); err != nil || !left {
		t.Fatalf("the crashed Link's rules are not there (%v, %v)", left, err)
	}
	// A packet held at the crash is dropped with the queue; TCP sends it again.
	rtts := roundTrips(t, c, 5)
	t.Logf("round trips with the crashed Link's rules: %v", rtts)
	if m := median(rtts); m >= 200*time.Millisecond {
		t.Errorf("median round trip %v: the rules of a dead Link still delay", m)
	}

	// The same queue number again: its stale chain is replaced, and Close removes it.
	q, err := openQueue(NetnsDir+"/"+n.a, l.q.num, 1, QueueLen)
	if err != nil {
		t.Fatalf("queue %d after its owner closed: %v", l.q.num, err)
	}
	if err := addRules(n.a, l.fams[0], q.num); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", n.a, "iptables", "-t", "mangle", "-S", "POSTROUTING").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S: %v: %s", err, out)
	}
	if jumps := strings.Count(string(out), "-j "+chainName(q.num)+"\n"); jumps != 1 {
		t.Errorf("%d jumps to %s after the stale chain was replaced:\n%s", jumps, chainName(q.num), out)
	}
	if err := removeRules(n.a, l.fams[0], q.num); err != nil {
		t.Fatal(err)
	}
	q.file.Close()
	noRulesLeft(t, n.a)
}

// datagramLen is the size of a test datagram: its sequence number and when it was sent.
const datagramLen = 12

// arrival is a datagram received: its sequence number and its one-way delay, from the sender's
// clock reading just before it wrote the datagram to the kernel's timestamp of its arrival at the
// receiving socket (SO_TIMESTAMPNS, the same clock), so however late the receiving goroutine runs
// does not count.
type arrival struct {
	seq   uint32
	delay time.Duration
}

// udpPath sends datagrams from A to B on one socket and records them, in the order they arrive.
type udpPath struct {
	send net.Conn
	recv *net.UDPConn
	sent uint32 // datagrams sent so far: the next one's number

	mu  sync.Mutex
	got []arrival
}

func newUDPPath(t testing.TB, n *testNet) *udpPath {
	t.Helper()
	p := &udpPath{}
	in(t, n.b, func() error {
		c, err := net.ListenPacket("udp", netip.AddrPortFrom(addrB, 9000).String())
		if err == nil {
			p.recv = c.(*net.UDPConn)
		}
		return err
	})
	t.Cleanup(func() { p.recv.Close() })
	// Room for every datagram of a test, so the receiver's buffer loses none however late its
	// goroutine runs (forced: net.core.rmem_max may be smaller), and arrival timestamps.
	rc, err := p.recv.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1))
	}); err != nil || serr != nil {
		t.Fatalf("receiver socket options: %v %v", err, serr)
	}
	in(t, n.a, func() (err error) {
		p.send, err = net.Dial("udp", netip.AddrPortFrom(addrB, 9000).String())
		return err
	})
	t.Cleanup(func() { p.send.Close() })
	go func() {
		b, oob := make([]byte, 64), make([]byte, 128)
		for {
			k, oobn, _, _, err := p.recv.ReadMsgUDP(b, oob)
			if err != nil {
				return
			}
			at, ok := arrivalTime(oob[:oobn])
			if k != datagramLen || !ok {
				continue
			}
			sent := int64(binary.BigEndian.Uint64(b[4:]))
			p.mu.Lock()
			p.got = append(p.got, arrival{seq: binary.BigEndian.Uint32(b), delay: time.Duration(at - sent)})
			p.mu.Unlock()
		}
	}()
	return p
}

// arrivalTime finds the SO_TIMESTAMPNS timestamp among a datagram's control messages.
func arrivalTime(oob []byte) (int64, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return sec*1e9 + nsec, true
		}
	}
	return 0, false
}

// sendAll sends count datagrams as fast as they go, numbered on from the last one sent.
func (p *udpPath) sendAll(t testing.TB, count int) {
	t.Helper()
	b := make([]byte, datagramLen)
	for range count {
		i := p.sent
		p.sent++
		binary.BigEndian.PutUint32(b, i)
		binary.BigEndian.PutUint64(b[4:], uint64(time.Now().UnixNano()))
		if _, err := p.send.Write(b); err != nil {
			t.Fatalf("send datagram %d: %v", i, err)
		}
	}
}

// waitFor polls until the receiver holds n datagrams, for up to 20 s, and returns them.
func (p *udpPath) waitFor(t testing.TB, n int, why string) []arrival {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		k := len(p.got)
		if k >= n {
			got := slices.Clone(p.got)
			p.mu.Unlock()
			return got
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("received %d datagrams in 20s, want %d (%s)", k, n, why)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitCount polls until the receiver holds n datagrams, for up to 20 s.
func (p *udpPath) waitCount(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		k := len(p.got)
		p.mu.Unlock()
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d datagrams in 20s, want %d", k, n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// outOfOrder counts the datagrams that arrived after one sent later.
func outOfOrder(got []arrival) int {
	n, highest := 0, -1
	for _, a := range got {
		if int(a.seq) < highest {
			n++
		}
		highest = max(highest, int(a.seq))
	}
	return n
}

// waitStats polls the Link's counters until ok says yes, for up to 20 s.
func waitStats(t testing.TB, l *Link, ok func(Stats) bool, what string) Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := l.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: %+v after 20s, want %s", l, st, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// binomialBounds returns the smallest lo and largest hi with P(X < lo) and P(X > hi) each at
// most alpha/2, for X ~ Binomial(n, p): outside [lo, hi] a correct Link fails a test with
// probability at most alpha.
func binomialBounds(n int, p, alpha float64) (lo, hi int) {
	pmf := func(k int) float64 {
		lg := func(x int) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
		return math.Exp(lg(n) - lg(k) - lg(n-k) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	var tail float64
	for lo = 0; lo <= n; lo++ {
		if tail+pmf(lo) > alpha/2 {
			break
		}
		tail += pmf(lo)
	}
	tail = 0
	for hi = n; hi >= 0; hi-- {
		if tail+pmf(hi) > alpha/2 {
			break
		}
		tail += pmf(hi)
	}
	return lo, hi
}

// falseFailure is the chance that a statistical check fails although the Link is right.
const falseFailure = 1e-6

// TestLossUDP sends 400 datagrams through Loss 0.3: the Link's drops are within the binomial
// bounds, and every datagram it did not drop arrives.
func TestLossUDP(t *testing.T) {
	n := newTestNet(t)
	p := newUDPPath(t, n)
	const count = 400
	l := apply(t, n.a, addrB, Shape{Loss: 0.3})
	p.sendAll(t, count)
	st := waitStats(t, l, func(s Stats) bool { return s.Packets+s.Overflow >= count }, fmt.Sprintf("%d packets seen", count))
	if st.Overflow != 0 || st.Packets != count {
		t.Fatalf("%+v: want exactly the %d datagrams sent, none overflowed", st, count)
	}
	lo, hi := binomialBounds(count, 0.3, falseFailure)
	t.Logf("dropped %d of %d (Loss 0.3: %d expected, bounds [%d, %d] for a false failure of %g)", st.Dropped, count, count*3/10, lo, hi, falseFailure)
	if int(st.Dropped) < lo || int(st.Dropped) > hi {
		t.Errorf("dropped %d of %d datagrams with Loss 0.3, outside [%d, %d]", st.Dropped, count, lo, hi)
	}
	got := p.waitFor(t, int(st.Delayed), "all the datagrams not dropped")
	if len(got)+int(st.Dropped) != count {
		t.Errorf("received %d + dropped %d ≠ sent %d", len(got), st.Dropped, count)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	noRulesLeft(t, n.a)
}

// TestJitterUDP sends 200 datagrams through 20ms ± 15ms, in 20 bursts of 10 sent 10 ms apart
// (so that a stall of this process on a loaded machine delays a few bursts, not all): all
// arrive, none sooner than 5 ms, their delays spread over more than 10 ms, the median within
// slack of 20 ms, and some overtake others.
func TestJitterUDP(t *testing.T) {
	n := newTestNet(t)
	p := newUDPPath(t, n)
	const count = 200
	l := apply(t, n.a, addrB, Shape{Delay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond})
	for range count / 10 {
		p.sendAll(t, 10)
		time.Sleep(10 * time.Millisecond)
	}
	got := p.waitFor(t, count, "none dropped")
	delays := make([]time.Duration, len(got))
	for i, a := range got {
		delays[i] = a.delay
	}
	lo, hi, m := slices.Min(delays), slices.Max(delays), median(delays)
	ooo := outOfOrder(got)
	t.Logf("one-way delays %v..%v, median %v; %d of %d out of order", lo, hi, m, ooo, count)
	if lo < 5*time.Millisecond {
		t.Errorf("a datagram arrived after %v, sooner than 20ms - 15ms", lo)
	}
	// 200 draws from a 30 ms wide uniform all within 10 ms: probability below 3·(1/3)^199.
	if hi-lo < 10*time.Millisecond {
		t.Errorf("delays spread over %v only", hi-lo)
	}
	// A burst of 10 sent at once stays in order with probability 1/10! if the delays are drawn
	// independently: some overtaking in 20 bursts is certain.
	if m > 20*time.Millisecond+slack {
		t.Errorf("median delay %v, more than 20ms + slack %v", m, slack)
	}
	if ooo == 0 {
		t.Errorf("no datagram out of order with a jitter of 15ms")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	noRulesLeft(t, n.a)
}

// TestReorderUDP sends 200 datagrams through 50ms with Reorder 0.25: the Link reorders within
// the binomial bounds, those arrive before the delayed ones sent earlier, and only those can
// arrive sooner than the delay.
func TestReorderUDP(t *testing.T) {
	n := newTestNet(t)
	p := newUDPPath(t, n)
	const count = 200
	l := apply(t, n.a, addrB, Shape{Delay: 50 * time.Millisecond, Reorder: 0.25})
	p.sendAll(t, count)
	got := p.waitFor(t, count, "none dropped")
	st := l.Stats()
	early := 0
	for _, a := range got {
		if a.delay < 50*time.Millisecond {
			early++
		}
	}
	lo, hi := binomialBounds(count, 0.25, falseFailure)
	ooo := outOfOrder(got)
	t.Logf("reordered %d of %d (bounds [%d, %d]), %d sooner than the delay, %d out of order", st.Reordered, count, lo, hi, early, ooo)
	if int(st.Reordered) < lo || int(st.Reordered) > hi {
		t.Errorf("reordered %d of %d with Reorder 0.25, outside [%d, %d]", st.Reordered, count, lo, hi)
	}
	if early > int(st.Reordered) {
		t.Errorf("%d datagrams arrived sooner than the delay, but only %d were reordered", early, st.Reordered)
	}
	if ooo == 0 {
		t.Errorf("no datagram out of order with Reorder 0.25")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	noRulesLeft(t, n.a)
}

// TestCloseReleasesHeldPackets closes a Link holding datagrams for 10 s: Close lets them go at
// once, and they arrive.
func TestCloseReleasesHeldPackets(t *testing.T) {
	n := newTestNet(t)
	p := newUDPPath(t, n)
	const count = 50
	l := apply(t, n.a, addrB, Shape{Delay: 10 * time.Second})
	p.sendAll(t, count)
	waitStats(t, l, func(s Stats) bool { return s.Held == count }, fmt.Sprintf("%d held", count))
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := p.waitFor(t, count, "released by Close")
	t.Logf("Close and the %d datagrams' arrival took %v; %+v", len(got), time.Since(start), l.Stats())
	if st := l.Stats(); st.Held != count {
		t.Errorf("Stats after Close: %+v, want Held %d", st, count)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the held datagrams arrived %v after Close", d)
	}
	noRulesLeft(t, n.a)
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// BenchmarkUDP measures the CPU a Link costs per packet: datagrams from A to B in windows of
// 64, with no Link, then through a Link with the zero Shape (every packet read and accepted at
// once) and one with a 1ms delay (every packet held and released by the timer). cpu-µs/pkt is
// this process's user+system CPU per datagram: the sender, the receiver and, with a Link, the
// kernel's queueing and reinjection done in our syscalls.
func BenchmarkUDP(b *testing.B) {
	for _, bc := range []struct {
		name  string
		shape *Shape
	}{{"none", nil}, {"zero", &Shape{}}, {"delay1ms", &Shape{Delay: time.Millisecond}}} {
		b.Run(bc.name, func(b *testing.B) {
			n := newTestNet(b)
			p := newUDPPath(b, n)
			if bc.shape != nil {
				l := apply(b, n.a, addrB, *bc.shape)
				defer l.Close()
			}
			p.sendAll(b, 1)
			p.waitFor(b, 1, "warm up")
			const window = 64
			b.ResetTimer()
			cpu0 := cpuTime(b)
			total := 1
			for i := 0; i < b.N; i += window {
				k := min(window, b.N-i)
				p.sendAll(b, k)
				total += k
				p.waitCount(b, total)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/pkt")
		})
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestManyLinksAtOnce applies eight Links at once, four in each namespace toward addresses of
// their own, and closes them at once: each gets a queue of its own in its namespace, and no rule
// is left.
func TestManyLinksAtOnce(t *testing.T) {
	n := newTestNet(t)
	type job struct {
		ns  string
		dst netip.Prefix
	}
	var jobs []job
	for i := range 4 {
		jobs = append(jobs, job{n.a, netip.MustParsePrefix(fmt.Sprintf("198.18.1.%d/32", i+1))},
			job{n.b, netip.MustParsePrefix(fmt.Sprintf("198.18.2.%d/32", i+1))})
	}
	links := make([]*Link, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() { links[i], errs[i] = Apply(j.ns, []netip.Prefix{j.dst}, Shape{Delay: time.Millisecond}) })
	}
	wg.Wait()
	queues := map[string]map[uint16]bool{n.a: {}, n.b: {}}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Apply %v: %v", jobs[i], err)
		}
		if queues[jobs[i].ns][links[i].q.num] {
			t.Errorf("queue %d taken twice in %s", links[i].q.num, jobs[i].ns)
		}
		queues[jobs[i].ns][links[i].q.num] = true
	}
	for i := range links {
		wg.Go(func() { errs[i] = links[i].Close() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Close %v: %v", links[i], err)
		}
	}
	noRulesLeft(t, n.a)
	noRulesLeft(t, n.b)
}

// TestDelayIPv6 times TCP round trips over IPv6 (2001:2::/48, set aside for benchmarking, RFC
// 5180): ip6tables diverts them as iptables does over IPv4.
func TestDelayIPv6(t *testing.T) {
	n := newTestNet(t)
	a6, b6 := netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
	for _, args := range [][]string{
		{"-n", n.a, "addr", "add", a6.String() + "/64", "dev", "va", "nodad"},
		{"-n", n.b, "addr", "add", b6.String() + "/64", "dev", "vb", "nodad"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	echoServer(t, n.b, b6)
	c := dialEcho(t, n.a, b6)
	l, err := Apply(n.a, []netip.Prefix{netip.PrefixFrom(b6, 128)}, Shape{Delay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rtts := roundTrips(t, c, 10)
	t.Logf("%v: round trips %v", l, rtts)
	if lo := slices.Min(rtts); lo < 50*time.Millisecond {
		t.Errorf("a round trip took %v with a 50ms delay", lo)
	}
	if m := median(rtts); m > 50*time.Millisecond+slack {
		t.Errorf("median round trip %v, more than 50ms + slack %v", m, slack)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", n.a, "ip6tables-save").CombinedOutput()
	if err != nil || strings.Contains(string(out), "AGORA-NETEM") {
		t.Errorf("ip6tables after Close (%v):\n%s", err, out)
	}
}

// TestFullQueueDrops holds more datagrams than the queue takes (a 10 s delay): QueueLen are
// held, the rest dropped by the kernel and counted as overflow (not let through undelayed), and
// Close lets the held ones go.
func TestFullQueueDrops(t *testing.T) {
	n := newTestNet(t)
	p := newUDPPath(t, n)
	// Every held datagram stays charged to the sender's socket: room for all of them.
	rc, err := p.send.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 32<<20)
	}); err != nil || serr != nil {
		t.Fatalf("SO_SNDBUFFORCE: %v %v", err, serr)
	}
	const extra = 100
	l := apply(t, n.a, addrB, Shape{Delay: 10 * time.Second})
	p.sendAll(t, QueueLen+extra)
	st := waitStats(t, l, func(s Stats) bool { return s.Held+s.Overflow >= QueueLen+extra }, "every datagram held or overflowed")
	t.Logf("%+v", st)
	if st.Held != QueueLen || st.Overflow != extra {
		t.Errorf("%+v: want %d held, %d overflowed", st, QueueLen, extra)
	}
	p.mu.Lock()
	early := len(p.got)
	p.mu.Unlock()
	if early != 0 {
		t.Errorf("%d datagrams arrived before their delay: a full queue let them through", early)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := p.waitFor(t, QueueLen, "the held ones, released by Close")
	t.Logf("received %d after Close", len(got))
	noRulesLeft(t, n.a)
}
