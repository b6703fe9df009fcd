package scheduler

import (
	"context"
	"fmt"
	"sync"

	"github.com/agora-sched/agora/pkg/api"
)

// A subscription's event queue: the scheduler pushes events under its lock without blocking,
// the framework reads them with Next or Events. Its calls (Session.Call and friends) are in
// calls.go.

// maxQueuedEvents bounds a session's queue: a framework that reads nothing while this many
// events pile up is disconnected (it may subscribe again and lose nothing but offers). A burst
// of 50,000 launches queues 100,000 updates within a second, so the bound is well above that.
const maxQueuedEvents = 500000

// Session is one subscription of a framework: the events for it, and its calls. An embedded
// framework gets one from Master.Subscribe; the HTTP scheduler API holds one per stream. It is
// safe for concurrent use.
type Session struct {
	s        *Scheduler
	fwID     string
	streamID string

	mu     sync.Mutex // guards queue and err
	queue  []api.Event
	err    error         // why the session ended; nil while open
	wake   chan struct{} // a new event, or the end
	closed chan struct{}
}

var _ api.Session = (*Session)(nil)

func newSession(s *Scheduler, fwID, streamID string) *Session {
	return &Session{s: s, fwID: fwID, streamID: streamID, wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// FrameworkID is the framework's id.
func (ss *Session) FrameworkID() string { return ss.fwID }

// StreamID names this subscription; HTTP calls carry it.
func (ss *Session) StreamID() string { return ss.streamID }

// push queues an event; it never blocks.
func (ss *Session) push(ev api.Event) {
	ss.mu.Lock()
	if ss.err != nil {
		ss.mu.Unlock()
		return
	}
	if len(ss.queue) >= maxQueuedEvents {
		ss.mu.Unlock()
		ss.end(fmt.Errorf("%w: more than %d events unread", ErrSubscriptionEnded, maxQueuedEvents))
		return
	}
	ss.queue = append(ss.queue, ev)
	ss.mu.Unlock()
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// end closes the session; Next then returns an ERROR event saying why, and after it err.
func (ss *Session) end(err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.err != nil {
		return
	}
	ss.err = err
	ss.queue = append(ss.queue, api.Event{Type: api.EventError, Error: &api.ErrorInfo{Message: err.Error()}})
	close(ss.closed)
}

// Next waits for the next event. After the session ended it returns the ERROR event that says
// why, then the error.
func (ss *Session) Next(ctx context.Context) (api.Event, error) {
	for {
		ss.mu.Lock()
		if len(ss.queue) > 0 {
			ev := ss.queue[0]
			ss.queue[0] = api.Event{}
			ss.queue = ss.queue[1:]
			ss.mu.Unlock()
			return ev, nil
		}
		err := ss.err
		ss.mu.Unlock()
		if err != nil {
			return api.Event{}, err
		}
		select {
		case <-ctx.Done():
			return api.Event{}, ctx.Err()
		case <-ss.wake:
		case <-ss.closed:
		}
	}
}

// Events delivers the session's events on a channel (of the given buffer, so a reader can take
// what has queued up at once) until ctx ends; when the session ends, its error comes on the
// second channel. It suits a framework's select loop.
func (ss *Session) Events(ctx context.Context, buffer int) (<-chan api.Event, <-chan error) {
	events := make(chan api.Event, buffer)
	ended := make(chan error, 1)
	go func() {
		for {
			ev, err := ss.Next(ctx)
			if err != nil {
				ended <- err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return events, ended
}
