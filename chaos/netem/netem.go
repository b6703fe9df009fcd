package netem

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// QueueLen is how many packets a Link may hold at once (NFQA_CFG_QUEUE_MAXLEN); more are
	// dropped by the kernel, as netem drops beyond its limit (1000 by default), and counted in
	// Stats.Overflow. It bounds the memory a Link pins: the kernel's packets (each still charged
	// to its sender's socket, so a sender slows down as with any full queue) and our record of
	// each (24 bytes).
	QueueLen = 4096

	// firstQueue is where queue numbers are tried from, out of the way of the low numbers people
	// pick by hand; a Link tries queueTries numbers from a process-wide counter on.
	firstQueue = 16384
	queueTries = 64

	// maxBatch caps the verdicts written to the kernel in one datagram.
	maxBatch = 256
)

// queueCounter spreads the Links of this process over distinct queue numbers; the kernel decides
// in the end (one owner per number and namespace), so other processes cannot collide either.
var queueCounter atomic.Uint32

// Link shapes the packets that leave one network namespace toward some destinations. Make it with
// Apply; Close undoes it.
type Link struct {
	netns string
	dsts  []netip.Prefix
	shape Shape
	fams  []family
	q     *queue
	proc  *os.File // the namespace's /proc/net/netfilter/nfnetlink_queue, or nil
	start time.Time

	mu   sync.Mutex
	held heldHeap // packets waiting for their time; guarded by mu

	wake chan struct{} // a packet due earlier than all others is held
	stop chan struct{} // closed by Close
	wg   sync.WaitGroup

	lastID                                       atomic.Uint32 // the last packet id read
	packets, delayed, dropped, reordered, errors atomic.Uint64
	loopErr                                      atomic.Pointer[error] // why the reader stopped early

	closeOnce sync.Once
	closeErr  error
	final     Stats // after Close
}

// Stats counts what a Link did to the packets diverted to it.
type Stats struct {
	Packets   uint64 // diverted to the Link and read from its queue
	Delayed   uint64 // let through after their delay (or at once, the delay 0)
	Dropped   uint64 // dropped by Loss
	Reordered uint64 // let through at once by Reorder
	Held      uint64 // held at this moment; after Close, let through at once by Close
	// Overflow is what the kernel dropped before we saw it: the queue held QueueLen packets, or
	// our socket's buffer was full.
	Overflow uint64
	// Errors counts verdicts the kernel refused (a packet it had dropped already, say as its
	// device went down).
	Errors uint64
}

// Apply starts shaping the packets that leave the network namespace netnsName (a name of
// `ip netns`) toward any of dsts: iptables rules inside the namespace divert them to an nfqueue,
// and this process gives each its fate by s. It needs root. Several Links may shape the same or
// different namespaces; in one namespace a packet is shaped by the first Link whose dsts match.
func Apply(netnsName string, dsts []netip.Prefix, s Shape) (*Link, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(dsts) == 0 {
		return nil, errors.New("netem: no destination prefixes (dsts) given")
	}
	masked := make([]netip.Prefix, len(dsts))
	for i, p := range dsts {
		if !p.IsValid() {
			return nil, fmt.Errorf("netem: dsts[%d] %q is not a valid prefix", i, p)
		}
		masked[i] = p.Masked()
	}
	nsPath, err := netnsPath(netnsName)
	if err != nil {
		return nil, err
	}
	fams := families(masked)
	if err := lookTools(fams); err != nil {
		return nil, err
	}

	first := firstQueue + uint16((queueCounter.Add(1)-1)%(1<<14))
	q, err := openQueue(nsPath, first, queueTries, QueueLen)
	if err != nil {
		return nil, fmt.Errorf("%w (in network namespace %q)", err, netnsName)
	}
	l := &Link{
		netns: netnsName, dsts: masked, shape: s, fams: fams, q: q, start: time.Now(),
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	// The kernel's counters of the namespace's queues, read later from any thread: a /proc/net
	// file shows the namespace of the thread that opened it.
	inNetns(nsPath, func() error {
		l.proc, _ = os.Open("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return nil
	})
	for i, f := range fams {
		if err := addRules(netnsName, f, q.num); err != nil {
			for _, g := range fams[:i+1] {
				removeRules(netnsName, g, q.num)
			}
			l.closeFiles()
			return nil, err
		}
	}
	l.wg.Add(2)
	go l.read()
	go l.release()
	return l, nil
}

// String names the Link for logs.
func (l *Link) String() string {
	return fmt.Sprintf("netem %s→%v queue %d %+v", l.netns, l.dsts, l.q.num, l.shape)
}

// Close stops the shaping: it removes the Link's iptables rules, lets every packet it still holds
// go on at once, and releases the queue. Only the first call does anything; later ones return
// what it returned.
func (l *Link) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Link) close() error {
	var errs []error
	// First nothing more is diverted; delayed packets meanwhile still get their time. A
	// namespace deleted before its Link took its rules along.
	if _, err := os.Stat(l.nsFile()); err == nil {
		for _, f := range l.fams {
			if err := removeRules(l.netns, f, l.q.num); err != nil {
				errs = append(errs, err)
			}
		}
	}
	close(l.stop)
	l.q.file.SetReadDeadline(time.Unix(1, 0))
	l.wg.Wait()
	if p := l.loopErr.Load(); p != nil {
		errs = append(errs, *p)
	}

	// Everything the queue still holds goes on now, including packets queued but not read yet.
	l.mu.Lock()
	held := uint64(l.held.Len())
	l.held = l.held[:0]
	l.mu.Unlock()
	var batchErr error
	ctlErr := l.q.rc.Control(func(fd uintptr) {
		batchErr = request(int(fd), batchAcceptMsg(l.q.num, 1<<30, releaseAllID(l.lastID.Load())))
	})
	if batchErr != nil && !errors.Is(batchErr, unix.ENOENT) { // ENOENT: nothing was held
		errs = append(errs, fmt.Errorf("netem: release the held packets: %w", batchErr))
	}
	if ctlErr != nil {
		errs = append(errs, ctlErr)
	}
	l.final = l.stats()
	l.final.Held = held
	l.closeFiles()
	return errors.Join(errs...)
}

// releaseAllID is the id up to which a batch verdict takes every packet a queue holds, last being
// the last id read. The kernel takes the ids not after it, comparing as nfq_id_after does (the
// difference as a signed 32-bit number), so this covers ids from 2^30 before last to 2^30 after:
// every held one and every one queued but not read yet.
func releaseAllID(last uint32) uint32 { return last + 1<<30 }

func (l *Link) nsFile() string { return NetnsDir + "/" + l.netns }

// closeFiles closes the socket, which destroys the queue (a packet still in it is dropped).
func (l *Link) closeFiles() {
	l.q.file.Close()
	if l.proc != nil {
		l.proc.Close()
	}
}

// Stats returns what the Link did so far (after Close: in all).
func (l *Link) Stats() Stats {
	select {
	case <-l.stop:
		l.closeOnce.Do(func() {}) // waits for Close to finish setting final
		return l.final
	default:
		return l.stats()
	}
}

func (l *Link) stats() Stats {
	s := Stats{
		Packets: l.packets.Load(), Delayed: l.delayed.Load(), Dropped: l.dropped.Load(),
		Reordered: l.reordered.Load(), Errors: l.errors.Load(),
	}
	l.mu.Lock()
	s.Held = uint64(l.held.Len())
	l.mu.Unlock()
	s.Overflow = l.overflow()
	return s
}

// overflow reads the kernel's count of packets queue num dropped unread (queue_dropped and
// queue_user_dropped of /proc/net/netfilter/nfnetlink_queue).
func (l *Link) overflow() uint64 {
	if l.proc == nil {
		return 0
	}
	if _, err := l.proc.Seek(0, io.SeekStart); err != nil {
		return 0
	}
	sc := bufio.NewScanner(l.proc)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 || f[0] != strconv.Itoa(int(l.q.num)) {
			continue
		}
		full, _ := strconv.ParseUint(f[5], 10, 64)
		user, _ := strconv.ParseUint(f[6], 10, 64)
		return full + user
	}
	return 0
}

// read takes each packet the kernel queues, draws its fate and acts on it: a verdict at once
// (dropped, reordered, no delay) or a place among the held packets.
func (l *Link) read() {
	defer l.wg.Done()
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	buf := make([]byte, 16<<10)
	var msgs []message
	var out []byte
	for {
		var n int
		var rerr error
		err := l.q.rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return rerr != unix.EAGAIN
		})
		select {
		case <-l.stop:
			return
		default:
		}
		if err == nil {
			err = rerr
		}
		if err == unix.EINTR || err == unix.ENOBUFS {
			continue // ENOBUFS: the kernel counted the lost messages' packets as dropped
		}
		if err != nil {
			l.fail(fmt.Errorf("netem: read nfqueue %d: %w", l.q.num, err))
			return
		}
		msgs, err = parseMessages(buf[:n], msgs[:0])
		if err != nil {
			l.fail(err)
			return
		}
		out = out[:0]
		for _, m := range msgs {
			if !m.packet {
				if m.errno != 0 {
					l.errors.Add(1)
				}
				continue
			}
			l.packets.Add(1)
			l.lastID.Store(m.id)
			switch f := l.shape.decide(r); {
			case f.drop:
				out = appendVerdict(out, l.q.num, m.id, nfDrop)
				l.dropped.Add(1)
			case f.reorder:
				out = appendVerdict(out, l.q.num, m.id, nfAccept)
				l.reordered.Add(1)
			case f.delay <= 0:
				out = appendVerdict(out, l.q.num, m.id, nfAccept)
				l.delayed.Add(1)
			default:
				l.hold(m.id, f.delay)
			}
		}
		if len(out) > 0 {
			if err := l.send(out); err != nil {
				l.fail(err)
				return
			}
		}
	}
}

// fail records why the Link stopped shaping. With the reader gone the queue fills and then
// drops, so Close reports it.
func (l *Link) fail(err error) { l.loopErr.CompareAndSwap(nil, &err) }

func (l *Link) now() int64 { return int64(time.Since(l.start)) }

// hold keeps packet id until its delay is over and wakes the releaser if it is due first.
func (l *Link) hold(id uint32, d time.Duration) {
	l.mu.Lock()
	l.held.push(heldPacket{due: l.now() + int64(d), id: id})
	first := l.held[0].id == id
	l.mu.Unlock()
	if first {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// release lets the held packets go when they are due, in the order they are due, the ones due
// together in one write.
func (l *Link) release() {
	defer l.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var out []byte
	for {
		out = out[:0]
		now := l.now()
		wait := time.Duration(-1)
		l.mu.Lock()
		for l.held.Len() > 0 && len(out) < maxBatch*verdictLen {
			if d := l.held[0].due - now; d > 0 {
				wait = time.Duration(d)
				break
			}
			out = appendVerdict(out, l.q.num, l.held.pop().id, nfAccept)
		}
		l.mu.Unlock()
		if len(out) > 0 {
			if err := l.send(out); err != nil {
				l.fail(err)
				return
			}
			l.delayed.Add(uint64(len(out) / verdictLen))
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-l.stop:
			return
		case <-l.wake:
		case <-timer.C:
		}
	}
}

// send writes verdict messages to the kernel. A verdict the kernel refuses comes back as an
// error message, which the reader counts.
func (l *Link) send(b []byte) error {
	var werr error
	err := l.q.rc.Write(func(fd uintptr) bool {
		_, werr = unix.Write(int(fd), b)
		return werr != unix.EAGAIN
	})
	if err == nil {
		err = werr
	}
	if err != nil && !errors.Is(err, syscall.EINTR) {
		return fmt.Errorf("netem: write verdicts to nfqueue %d: %w", l.q.num, err)
	}
	return nil
}

// heldPacket is a packet waiting for its time: due in nanoseconds since the Link started.
type heldPacket struct {
	due int64
	id  uint32
}

// heldHeap is a min-heap of held packets by due time, then id (the order they came in, but for
// ids wrapping around, which costs at most one reordering of packets due at the same nanosecond).
type heldHeap []heldPacket

func (h heldHeap) Len() int { return len(h) }

func (h heldHeap) less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].id < h[j].id
}

func (h *heldHeap) push(p heldPacket) {
	*h = append(*h, p)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *heldHeap) pop() heldPacket {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s.less(l, small) {
			small = l
		}
		if r < len(s) && s.less(r, small) {
			small = r
		}
		if small == i {
			break
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
	*h = s
	return top
}
