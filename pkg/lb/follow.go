package lb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// ServicesPath is the masters' services endpoint; asked for text/event-stream it is a stream of
// "services" events, each with the whole document.
const ServicesPath = "/v1/services"

// Master is one master agora lb may follow: *client.Client is one.
type Master interface {
	Events(ctx context.Context, path string) (io.ReadCloser, error)
	Addr() string
}

// maxDocument bounds one event's data: a document of 1,000 apps × 10 instances is ~2 MB.
const maxDocument = 64 << 20

// follower reads the services stream of one master at a time: when a stream cannot be opened
// or ends (the master stopped, a partition kept it silent past idle), it waits a backoff and
// goes on with the next master, which sends the whole document first.
type follower struct {
	masters    []Master
	idle       time.Duration // a stream silent this long (keepalives come every 15 s) is dead
	minBackoff time.Duration
	maxBackoff time.Duration
	log        *slog.Logger
	connected  func(bool)
	doc        func(api.Services)
}

// run follows the masters until ctx is done.
func (f *follower) run(ctx context.Context) {
	backoff := f.minBackoff
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(f.masters) {
		m := f.masters[i]
		got, err := f.stream(ctx, m)
		f.connected(false)
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff = f.minBackoff // it served: the next master may well serve at once
		}
		f.log.Warn("services stream ended; trying the next master", "master", m.Addr(), "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if !got {
			backoff = min(2*backoff, f.maxBackoff)
		}
	}
}

// errIdle ends a stream that sent nothing, not even a keepalive, for too long.
var errIdle = errors.New("lb: the stream went silent")

// stream follows one master's stream until it ends; got says whether it brought a document.
func (f *follower) stream(ctx context.Context, m Master) (got bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(f.idle, func() { cancel(errIdle) })
	defer idle.Stop()
	body, err := m.Events(ctx, ServicesPath)
	if err != nil {
		return false, err
	}
	defer body.Close()
	f.log.Info("following the masters' services", "master", m.Addr())
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxDocument)
	var event string
	var data bytes.Buffer
	for sc.Scan() {
		idle.Reset(f.idle)
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			// A blank line ends an event.
			if (event == "services" || event == "") && data.Len() > 0 {
				var doc api.Services
				if err := json.Unmarshal(data.Bytes(), &doc); err != nil {
					return got, fmt.Errorf("lb: a services event that is not the document: %w", err)
				}
				got = true
				f.connected(true)
				f.doc(doc)
			}
			event = ""
			data.Reset()
		case line[0] == ':':
			// a comment: the keepalive
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.Write(bytes.TrimPrefix(line[len("data:"):], []byte(" ")))
		}
	}
	err = sc.Err()
	if cause := context.Cause(ctx); cause != nil {
		err = cause
	}
	if err == nil {
		err = errors.New("lb: the master closed the stream")
	}
	return got, err
}
