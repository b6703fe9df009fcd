package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
)

// Chunk is a run of a stream's bytes from Offset on.
type Chunk struct {
	Offset int64
	Data   []byte
}

// Read returns up to max bytes of a stream from offset off, and where the stream ends now. A
// negative off reads the last -off bytes (a tail). An off before the earliest byte kept reads
// from the earliest byte kept; past the end it reads nothing. A stream never written is empty.
func Read(dir, stream string, off int64, max int) (Chunk, int64, error) {
	// A rotation between listing the files and reading them shows as a changed listing: read
	// again.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		c, end, stable, err := readOnce(dir, stream, off, max)
		if err == nil && stable {
			return c, end, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errors.New("logs: the files kept rotating")
	}
	return Chunk{}, 0, lastErr
}

func readOnce(dir, stream string, off int64, max int) (Chunk, int64, bool, error) {
	segs, err := segments(dir, stream)
	if err != nil {
		return Chunk{}, 0, false, err
	}
	if len(segs) == 0 {
		return Chunk{Offset: 0}, 0, true, nil
	}
	last := segs[len(segs)-1]
	end := last.Base + last.Size
	if off < 0 {
		off = max64(0, end+off)
	}
	if off < segs[0].Base {
		off = segs[0].Base
	}
	c := Chunk{Offset: min(off, end)}
	for _, s := range segs {
		if len(c.Data) >= max {
			break
		}
		pos := c.Offset + int64(len(c.Data))
		if pos >= s.Base+s.Size {
			continue
		}
		b, err := readAt(s.Path, pos-s.Base, min(int64(max-len(c.Data)), s.Size-(pos-s.Base)))
		if errors.Is(err, os.ErrNotExist) {
			return Chunk{}, 0, false, nil // rotated or pruned meanwhile
		}
		if err != nil {
			return Chunk{}, 0, false, fmt.Errorf("logs: %w", err)
		}
		c.Data = append(c.Data, b...)
	}
	again, err := segments(dir, stream)
	if err != nil {
		return Chunk{}, 0, false, err
	}
	// Stable when no file was renamed meanwhile: the current file still starts where it did.
	stable := len(again) > 0 && again[len(again)-1].Base == last.Base && again[0].Base <= segs[0].Base
	return c, end, stable, nil
}

func readAt(path string, at, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	got, err := f.ReadAt(b, at)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return b[:got], err
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// PollEvery is how often Follow looks for new bytes.
const PollEvery = 200 * time.Millisecond

// Follow writes a stream to w from offset off on, then keeps writing what is appended, across
// rotations, until ctx ends or done says no more will come and everything has been written.
func Follow(ctx context.Context, dir, stream string, off int64, w io.Writer, done func() bool) error {
	flusher, _ := w.(http.Flusher)
	for {
		finished := done() // asked before reading, so that the last bytes are never missed
		c, _, err := Read(dir, stream, off, 256<<10)
		if err != nil {
			return err
		}
		if len(c.Data) > 0 {
			if _, err := w.Write(c.Data); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			off = c.Offset + int64(len(c.Data))
			continue
		}
		off = c.Offset
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(PollEvery):
		}
	}
}

// Response headers of Handler.
const (
	HeaderOffset = "X-Agora-Log-Offset" // offset of the first byte of the answer
	HeaderEnd    = "X-Agora-Log-End"    // where the stream ended when the answer started
)

// Read lengths of Handler.
const (
	DefaultLength = 1 << 20
	MaxLength     = 16 << 20
)

// Handler serves a task's logs: GET ?stream=stdout|stderr&offset=N&length=L&follow=true.
// dir maps a request to the task's sandbox (false: no such task); done says the task has ended
// and its output is all written, which ends a follow.
func Handler(dir func(r *http.Request) (string, bool), done func(r *http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		stream := q.Get("stream")
		if stream == "" {
			stream = "stdout"
		}
		if stream != "stdout" && stream != "stderr" {
			httpjson.FieldError(w, http.StatusBadRequest, "stream", fmt.Sprintf("%q: want stdout or stderr", stream))
			return
		}
		var off int64
		if s := q.Get("offset"); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				httpjson.FieldError(w, http.StatusBadRequest, "offset", fmt.Sprintf("%q: want a whole number of bytes (negative: from the end)", s))
				return
			}
			off = v
		}
		length := DefaultLength
		if s := q.Get("length"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				httpjson.FieldError(w, http.StatusBadRequest, "length", fmt.Sprintf("%q: want a number of bytes", s))
				return
			}
			length = min(v, MaxLength)
		}
		follow := false
		if s := q.Get("follow"); s != "" {
			v, err := strconv.ParseBool(s)
			if err != nil {
				httpjson.FieldError(w, http.StatusBadRequest, "follow", fmt.Sprintf("%q: want true or false", s))
				return
			}
			follow = v
		}
		sandbox, ok := dir(r)
		if !ok {
			httpjson.Error(w, http.StatusNotFound, "no such task")
			return
		}
		c, end, err := Read(sandbox, stream, off, length)
		if err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set(HeaderOffset, strconv.FormatInt(c.Offset, 10))
		h.Set(HeaderEnd, strconv.FormatInt(end, 10))
		if !follow {
			w.WriteHeader(http.StatusOK)
			w.Write(c.Data)
			return
		}
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		Follow(r.Context(), sandbox, stream, c.Offset, w, func() bool { return done(r) })
	})
}
