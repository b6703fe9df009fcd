package master

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LeaderService is work only the leading master does: the allocator, the embedded frameworks,
// the membership reconciler. Run works until ctx ends and then returns promptly; it is started
// each time this master becomes a ready leader and stopped when it stops being one.
type LeaderService interface {
	Name() string
	Run(ctx context.Context) error
}

// LeaderServiceFunc adapts a function to LeaderService.
type LeaderServiceFunc struct {
	ServiceName string
	Func        func(ctx context.Context) error
}

// Name returns ServiceName.
func (f LeaderServiceFunc) Name() string { return f.ServiceName }

// Run calls Func.
func (f LeaderServiceFunc) Run(ctx context.Context) error { return f.Func(ctx) }

// leadership runs the registered services while the store says this master leads.
//
//	        gain (after barrier)
//	idle ------------------------> running: every service's Run in its own goroutine
//	  ^                                 |
//	  |  all Runs returned              | lose leadership / shut down: cancel ctx
//	  '------------------------ stopping <'
//
// One loop makes every transition, so one term's services have all returned before the next
// term's start: a master never runs two sets at once. Across masters, a deposed leader stops
// its services when raft tells it (at the latest after the leader lease); its writes fail from
// the moment it lost leadership, since they go through raft.
type leadership struct {
	logger      *slog.Logger
	stopTimeout time.Duration

	mu       sync.Mutex // guards services and running
	services []LeaderService
	running  bool
}

// register adds a service; it starts with the next leadership term.
func (l *leadership) register(s LeaderService) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.services = append(l.services, s)
}

// isRunning reports whether the services of a term are running now.
func (l *leadership) isRunning() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running
}

// run follows events (true: became a ready leader; false: stopped leading) until the channel
// closes or ctx ends, then stops any running services.
func (l *leadership) run(ctx context.Context, events <-chan bool) {
	type term struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var cur *term
	stop := func() {
		if cur == nil {
			return
		}
		cur.cancel()
		select {
		case <-cur.done:
		case <-time.After(l.stopTimeout):
			l.logger.Error("leader services did not stop in time; waiting on", "timeout", l.stopTimeout)
			<-cur.done
		}
		cur = nil
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		l.logger.Info("leader services stopped")
	}
	defer stop()
	for {
		var leader, ok bool
		select {
		case leader, ok = <-events:
			if !ok {
				return
			}
		case <-ctx.Done():
			return
		}
		if !leader {
			stop()
			continue
		}
		if cur != nil {
			continue // already running for this term
		}
		l.mu.Lock()
		services := append([]LeaderService(nil), l.services...)
		l.running = true
		l.mu.Unlock()
		termCtx, cancel := context.WithCancel(ctx)
		cur = &term{cancel: cancel, done: make(chan struct{})}
		go l.runTerm(termCtx, services, cur.done)
	}
}

func (l *leadership) runTerm(ctx context.Context, services []LeaderService, done chan<- struct{}) {
	defer close(done)
	l.logger.Info("leader services starting", "count", len(services))
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A service that fails before the term ends is restarted after a pause, so one bad
			// service does not take leadership down with it.
			for ctx.Err() == nil {
				err := s.Run(ctx)
				if ctx.Err() != nil {
					return
				}
				l.logger.Error("leader service stopped early; restarting it", "service", s.Name(), "err", err)
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
		}()
	}
	wg.Wait()
}

// loggedLeaderEvents passes the store's leadership events on, with one log line for each
// change: the line operators grep for when they ask who led when.
func (m *Master) loggedLeaderEvents(ctx context.Context) <-chan bool {
	out := make(chan bool)
	go func() {
		defer close(out)
		leading := false
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-m.store.LeaderEvents():
				if !ok {
					return
				}
				if ev != leading {
					leading = ev
					if ev {
						m.logger.Info("leadership won", "term", m.store.Stats().Term)
					} else {
						m.logger.Warn("leadership lost", "term", m.store.Stats().Term)
					}
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
