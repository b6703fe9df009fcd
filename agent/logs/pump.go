package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agora-sched/agora/pkg/clock"
	"golang.org/x/sys/unix"
)

// Spools: the shim writes each stream of a task into a regular file of the task's log dir, the
// spool, and the agent's Pump copies what lands there into the stream's rotated files.
//
// A spool's offsets are the stream's whole-history offsets: MakeSpools creates it as long as
// the stream's files already are (a hole, taking no disk), and the shim only ever appends. So
// the pump needs no bookkeeping of its own: it resumes at the end of the stream's files. What
// it has copied it frees with a punched hole, the spool's size staying, so a spool takes about
// the disk of what is not copied yet.

// DefaultPumpEvery is how often a Pump copies new output.
const DefaultPumpEvery = 150 * time.Millisecond

// copyBuf is the size of the pump's reads from a spool.
const copyBuf = 64 << 10

// SpoolPath is the spool of a stream in dir. Its name is neither the stream's current file nor
// a rotated one (segments skips it).
func SpoolPath(dir, stream string) string { return filepath.Join(dir, "."+stream+".spool") }

// MakeSpools creates dir's spools, one per stream, each as long as the stream's files so far,
// so that the shim's first byte lands at the stream's next offset. A spool already there is
// kept as it is.
func MakeSpools(dir string) error {
	for _, stream := range Streams {
		end, err := streamEnd(dir, stream)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(SpoolPath(dir, stream), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("logs: spool: %w", err)
		}
		err = f.Truncate(end)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("logs: spool: %w", err)
		}
	}
	return nil
}

// HasSpools says whether dir has a spool: its task's output goes through a Pump (a task
// started with a logging process of its own has none).
func HasSpools(dir string) bool {
	for _, stream := range Streams {
		if _, err := os.Stat(SpoolPath(dir, stream)); err == nil {
			return true
		}
	}
	return false
}

// streamEnd is where a stream's files end: the offset of its next byte.
func streamEnd(dir, stream string) (int64, error) {
	segs, err := segments(dir, stream)
	if err != nil || len(segs) == 0 {
		return 0, err
	}
	last := segs[len(segs)-1]
	return last.Base + last.Size, nil
}

// PumpConfig configures a Pump.
type PumpConfig struct {
	MaxBytes int64         // rotate a stream's file at this size (default DefaultMaxBytes)
	Keep     int           // rotated files kept per stream (default DefaultKeep)
	Every    time.Duration // how often new output is copied (default DefaultPumpEvery)
	Clock    clock.Clock   // default clock.Real
	Logger   *slog.Logger
}

// Pump copies the spools of every task it is given into the tasks' rotated files, all of them
// from one goroutine, which runs while it has tasks. Use: Add a task's log dir once its process
// runs (or is re-attached), Forget it when the agent stops, Drain it once its process is
// deleted.
//
// Only one pump copies a spool at a time, even across processes: a pump holds a lock (flock)
// on each spool it copies, and takes it, before it reads where the stream's files end, only
// once the last holder let go.
type Pump struct {
	cfg PumpConfig
	// punch frees a spool's copied prefix; tests inject a filesystem that refuses.
	punch   func(f *os.File, off, n int64) error
	refused atomic.Bool // punching was refused once, and said so
	wake    chan struct{}

	mu      sync.Mutex // guards the fields below
	tasks   map[string]*spooled
	running bool // the pumping goroutine runs
}

// spooled is one task's spools.
type spooled struct {
	dir     string
	mu      sync.Mutex // held while copying; guards the fields below
	streams []*spoolStream
	closed  bool
}

// spoolStream is where the pump is in one stream of a task.
type spoolStream struct {
	stream  string
	spool   *os.File // read, and punched; nil until open and locked
	store   *File
	off     int64 // the next byte to copy: where the stream's files end
	punched int64 // the spool's prefix freed so far
	block   int64 // the spool's block size: holes are punched in whole blocks
	noPunch bool  // the filesystem refused to punch
	// held is the offset of a partial last line left in the spool at the last copy, which the
	// next one writes even if it is still partial: output without a newline waits one tick.
	held    int64
	failing bool // the last copy failed, and said so
}

// NewPump makes a pump.
func NewPump(cfg PumpConfig) *Pump {
	if cfg.Every <= 0 {
		cfg.Every = DefaultPumpEvery
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pump{cfg: cfg, punch: punchHole, wake: make(chan struct{}, 1), tasks: map[string]*spooled{}}
}

func punchHole(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// Add has the pump copy dir's spools from now on, and copies what they hold already before it
// returns (what a re-attached task wrote while the agent was down), unless another pump holds
// them; it answers false when dir has none.
func (p *Pump) Add(dir string) bool {
	if !HasSpools(dir) {
		return false
	}
	p.mu.Lock()
	s, ok := p.tasks[dir]
	if !ok {
		s = p.newSpooled(dir)
		p.tasks[dir] = s
	}
	if !p.running {
		p.running = true
		go p.run()
	}
	p.mu.Unlock()
	buf := bufs.Get().(*[]byte)
	defer bufs.Put(buf)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		p.pumpLocked(s, *buf)
	}
	return true
}

// bufs are the copy buffers of Add and Drain.
var bufs = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

func (p *Pump) newSpooled(dir string) *spooled {
	s := &spooled{dir: dir}
	for _, stream := range Streams {
		s.streams = append(s.streams, &spoolStream{stream: stream, held: -1})
	}
	return s
}

// Forget stops copying dir's spools, leaving what they hold for the next pump (the agent stops;
// the restarted one goes on from where the files end). When it returns, the pump writes no more
// of dir.
func (p *Pump) Forget(dir string) {
	if s := p.remove(dir); s != nil {
		s.mu.Lock()
		s.closeLocked()
		s.mu.Unlock()
	}
}

// Drain copies what is left in dir's spools into the stream's files and removes the spools;
// nothing may write them any more (their task's process is deleted). Without spools it does
// nothing. When another pump (an agent that stops) still holds a spool, Drain waits for it
// until ctx ends.
func (p *Pump) Drain(ctx context.Context, dir string) error {
	s := p.remove(dir)
	if s == nil {
		if !HasSpools(dir) {
			return nil
		}
		s = p.newSpooled(dir)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.closeLocked()
	buf := bufs.Get().(*[]byte)
	defer bufs.Put(buf)
	for _, st := range s.streams {
		for {
			ok, err := st.openLocked(s.dir, p.cfg)
			if err != nil {
				return err
			}
			if ok {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("logs: %s of %s: another pump holds its spool: %w", st.stream, s.dir, ctx.Err())
			case <-p.cfg.Clock.After(p.cfg.Every):
			}
		}
		if st.spool == nil {
			continue // this stream has no spool
		}
		if err := st.copyLocked(*buf, true); err != nil {
			return fmt.Errorf("logs: drain %s of %s: %w", st.stream, s.dir, err)
		}
	}
	for _, st := range s.streams {
		if err := os.Remove(SpoolPath(s.dir, st.stream)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("logs: %w", err)
		}
	}
	return nil
}

// remove takes dir out of the pump's tasks and answers it (nil when the pump had it not).
func (p *Pump) remove(dir string) *spooled {
	p.mu.Lock()
	s := p.tasks[dir]
	delete(p.tasks, dir)
	empty := len(p.tasks) == 0
	p.mu.Unlock()
	if empty {
		select { // the goroutine ends now rather than at its next tick
		case p.wake <- struct{}{}:
		default:
		}
	}
	return s
}

// Len is how many tasks' spools the pump copies.
func (p *Pump) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tasks)
}

// run copies every task's new output every cfg.Every, until the pump has no task.
func (p *Pump) run() {
	var list []*spooled
	buf := make([]byte, copyBuf)
	for {
		select {
		case <-p.cfg.Clock.After(p.cfg.Every):
		case <-p.wake:
		}
		p.mu.Lock()
		if len(p.tasks) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		list = list[:0]
		for _, s := range p.tasks {
			list = append(list, s)
		}
		p.mu.Unlock()
		p.pumpAll(list, buf)
		clear(list) // holds no closed task until the next tick
	}
}

// pumpAll copies what is new in the spools of list.
func (p *Pump) pumpAll(list []*spooled, buf []byte) {
	for _, s := range list {
		s.mu.Lock()
		if !s.closed {
			p.pumpLocked(s, buf)
		}
		s.mu.Unlock()
	}
}

// pumpLocked copies what is new in one task's spools and frees what was copied.
func (p *Pump) pumpLocked(s *spooled, buf []byte) {
	for _, st := range s.streams {
		ok, err := st.openLocked(s.dir, p.cfg)
		if err == nil && ok && st.spool != nil {
			err = st.copyLocked(buf, false)
		}
		if err != nil {
			if !st.failing {
				p.cfg.Logger.Warn("copy a task's output into its log files; trying again", "dir", s.dir, "stream", st.stream, "err", err)
			}
			st.failing = true
			continue
		}
		if st.failing {
			p.cfg.Logger.Info("copying a task's output again", "dir", s.dir, "stream", st.stream)
			st.failing = false
		}
		if st.spool != nil {
			p.freeLocked(s.dir, st)
		}
	}
}

// freeLocked punches out the spool's blocks that were all copied. A filesystem that cannot is
// said once; its spools then grow until their tasks end.
func (p *Pump) freeLocked(dir string, st *spoolStream) {
	if st.noPunch {
		return
	}
	to := st.off / st.block * st.block
	if to <= st.punched {
		return
	}
	err := p.punch(st.spool, st.punched, to-st.punched)
	switch {
	case err == nil:
		st.punched = to
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
		st.noPunch = true
		if !p.refused.Swap(true) {
			p.cfg.Logger.Warn("the log dir's filesystem cannot punch holes: a task's spool files keep what was copied until the task ends", "dir", dir, "err", err)
		}
	default:
		p.cfg.Logger.Warn("free the copied part of a task's spool", "dir", dir, "stream", st.stream, "err", err)
	}
}

// openLocked opens and locks the stream's spool, and its files at their end, unless done
// already. It answers false while another pump holds the spool; a stream without a spool is
// open with a nil spool.
func (st *spoolStream) openLocked(dir string, cfg PumpConfig) (bool, error) {
	if st.spool != nil || st.store != nil {
		return true, nil
	}
	f, err := os.OpenFile(SpoolPath(dir, st.stream), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("logs: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("logs: lock %s: %w", f.Name(), err)
	}
	// Locked: the files' end is where the last holder stopped.
	store, err := OpenFile(dir, st.stream, cfg.MaxBytes, cfg.Keep)
	if err != nil {
		f.Close()
		return false, err
	}
	st.block = 4096
	if info, err := f.Stat(); err == nil {
		if sys, ok := info.Sys().(*syscall.Stat_t); ok && sys.Blksize > 0 {
			st.block = int64(sys.Blksize)
		}
	}
	st.spool, st.store, st.off, st.punched, st.held = f, store, store.End(), 0, -1
	return true, nil
}

// copyLocked copies what the spool holds past off into the stream's files, lines kept whole
// across its reads. Unless final, a partial last line waits for its end, one tick at most.
func (st *spoolStream) copyLocked(buf []byte, final bool) error {
	info, err := st.spool.Stat()
	if err != nil {
		return err
	}
	size := info.Size()
	for st.off < size {
		n, err := st.spool.ReadAt(buf[:min(int64(len(buf)), size-st.off)], st.off)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the spool shrank: not ours to guess at
			}
			return err
		}
		chunk := buf[:n]
		last := bytes.LastIndexByte(chunk, '\n')
		tail := st.off + int64(last+1) // where a partial last line starts
		hold := false
		switch {
		case st.off+int64(n) < size:
			// More follows: up to the last newline, unless a line fills the whole read.
			if last >= 0 {
				chunk = chunk[:last+1]
			}
		case final || last == n-1:
		case st.held != tail:
			st.held, hold = tail, true
			chunk = chunk[:last+1]
		}
		w, err := st.store.Write(chunk)
		st.off += int64(w)
		if err != nil || hold {
			return err
		}
	}
	return nil
}

// closeLocked closes what the pump holds of a task, and so lets go of its spools.
func (s *spooled) closeLocked() {
	for _, st := range s.streams {
		if st.spool != nil {
			st.spool.Close()
		}
		if st.store != nil {
			st.store.Close()
		}
		st.spool, st.store = nil, nil
	}
	s.closed = true
}
