// Package logs keeps a task's stdout and stderr in files of its log dir, rotated at a size
// limit, and reads them back for the agent's API, following them as they grow.
//
// No process of Agora's runs per task. containerd's shim writes each stream of the container
// into a regular file of the log dir, its spool (a plain path to a regular file, which the
// runc shim opens for appending and copies the container's pipe into itself); the agent's Pump
// copies what lands in the spools into the rotated files. While the agent is down the shim goes
// on writing the spools, and the restarted agent's pump goes on from where the files end: the
// spool's offsets are the stream's own, so nothing is lost or copied twice.
//
// Use:
//
//  1. The executor makes a task's spools (MakeSpools) before it creates the task's process,
//     gives their paths (SpoolPath) to the shim as the process's stdout and stderr, and has the
//     agent's one Pump copy them (Pump.Add) while the process runs, or once re-attached to it.
//  2. The pump, every DefaultPumpEvery, copies each spool's new bytes into Dir/stdout and
//     Dir/stderr through File, which rotates them, and frees the copied blocks of the spool by
//     punching a hole (fallocate; where the filesystem cannot, a spool keeps all it got until
//     its task ends).
//  3. Once the task's process is deleted (the shim writes no more), Pump.Drain copies the rest
//     and removes the spools; only then is the task's end reported, so that whoever reads the
//     logs after seeing the end gets all of them. When the agent stops, Pump.Forget.
//  4. The agent serves Handler at /v1/tasks/{id}/logs, which answers with Read or Follow.
//
// Offsets are positions in a stream's whole history, so rotation never moves them: the current
// file is always Dir/<stream> (where Mesos users look for it), and a rotated file is renamed
// Dir/<stream>.<B>, B being the offset of its first byte. The current file thus starts where
// the newest rotated file ends. Deleting old files leaves a gap at the start; a read from before
// the earliest byte kept starts at the earliest byte kept, and says so in its offset. A spool,
// Dir/.<stream>.spool, is neither.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Defaults of OpenFile's and Pump's limits.
const (
	DefaultMaxBytes = 10 << 20
	DefaultKeep     = 5
)

// Streams are the two streams a task has.
var Streams = []string{"stdout", "stderr"}

// segment is one file of a stream: the bytes from offset Base on.
type segment struct {
	Base int64
	Path string
	Size int64
}

// segments lists a stream's files in offset order, the current file last (absent when nothing
// was ever written).
func segments(dir, stream string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	var segs []segment
	var cur *segment
	for _, e := range entries {
		name := e.Name()
		if name == stream {
			info, err := e.Info()
			if err != nil {
				continue // rotated away meanwhile; the caller retries
			}
			cur = &segment{Path: filepath.Join(dir, name), Size: info.Size()}
			continue
		}
		rest, ok := strings.CutPrefix(name, stream+".")
		if !ok {
			continue
		}
		base, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || base < 0 {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		segs = append(segs, segment{Base: base, Path: filepath.Join(dir, name), Size: info.Size()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Base < segs[j].Base })
	if cur != nil {
		if n := len(segs); n > 0 {
			cur.Base = segs[n-1].Base + segs[n-1].Size
		}
		segs = append(segs, *cur)
	}
	return segs, nil
}

// File is one stream's log, rotated at a size limit. It is safe for one writer at a time.
type File struct {
	dir, stream string
	maxBytes    int64
	keep        int

	mu   sync.Mutex // guards the fields below
	f    *os.File
	base int64 // offset of the current file's first byte
	size int64 // bytes in the current file
}

// OpenFile opens (or continues) a stream's log in dir, rotating it at maxBytes and keeping keep
// rotated files (0: DefaultMaxBytes, DefaultKeep).
func OpenFile(dir, stream string, maxBytes int64, keep int) (*File, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	lf := &File{dir: dir, stream: stream, maxBytes: maxBytes, keep: keep}
	segs, err := segments(dir, stream)
	if err != nil {
		return nil, err
	}
	for _, s := range segs {
		if s.Path != lf.path() {
			lf.base = s.Base + s.Size
		}
	}
	if err := lf.open(); err != nil {
		return nil, err
	}
	return lf, nil
}

func (lf *File) path() string { return filepath.Join(lf.dir, lf.stream) }

func (lf *File) open() error {
	f, err := os.OpenFile(lf.path(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logs: %w", err)
	}
	lf.f, lf.size = f, info.Size()
	return nil
}

// Write appends p, rotating whenever the current file would grow past the limit. Lines are
// kept whole where they fit in a file: what does not fit goes up to its last newline into this
// file and the rest into the next; only a line longer than the limit is cut.
func (lf *File) Write(p []byte) (int, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return 0, errors.New("logs: file closed")
	}
	written := 0
	for len(p) > 0 {
		room := lf.maxBytes - lf.size
		chunk := p
		if int64(len(chunk)) > room {
			cut := -1
			if room > 0 {
				cut = bytes.LastIndexByte(p[:room], '\n')
			}
			switch {
			case cut >= 0:
				chunk = p[:cut+1]
			case lf.size > 0:
				if err := lf.rotateLocked(); err != nil {
					return written, err
				}
				continue
			default:
				chunk = p[:lf.maxBytes] // a line longer than a whole file
			}
		}
		n, err := lf.f.Write(chunk)
		lf.size += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (lf *File) rotateLocked() error {
	if err := lf.f.Close(); err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	lf.f = nil
	rotated := fmt.Sprintf("%s.%d", lf.path(), lf.base)
	if err := os.Rename(lf.path(), rotated); err != nil {
		return fmt.Errorf("logs: rotate: %w", err)
	}
	lf.base += lf.size
	if err := lf.open(); err != nil {
		return err
	}
	segs, err := segments(lf.dir, lf.stream)
	if err != nil {
		return err
	}
	old := segs[:len(segs)-1] // rotated ones, oldest first
	for len(old) > lf.keep {
		if err := os.Remove(old[0].Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("logs: prune: %w", err)
		}
		old = old[1:]
	}
	return nil
}

// End is the offset of the stream's next byte: where its files end.
func (lf *File) End() int64 {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.base + lf.size
}

// Close closes the current file.
func (lf *File) Close() error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		return nil
	}
	err := lf.f.Close()
	lf.f = nil
	return err
}
