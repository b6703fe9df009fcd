// Package clock is time, injected: Real in production, Fake in tests, so that nothing that
// waits on a timer has to sleep in a test. Shifted is a clock set wrong on purpose: the chaos
// harness's clock skew (agora master --chaos-clock-offset).
package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock tells the time and wakes its caller later.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// Real is the system clock.
type Real struct{}

// Now is time.Now.
func (Real) Now() time.Time { return time.Now() }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Fake is a clock that moves only when Advance is called.
type Fake struct {
	mu      sync.Mutex // guards now and waiters
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewFake starts a fake clock at t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now is the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After fires once the fake time has advanced by d.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: f.now.Add(d), ch: ch})
	return ch
}

// Advance moves the time on by d and fires every timer that is due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(f.now) {
			w.ch <- f.now
		} else {
			kept = append(kept, w)
		}
	}
	f.waiters = kept
}

// Waiters is how many timers wait; tests use it to know a goroutine has gone to sleep.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Shifted is another clock moved by an offset that can change while it runs: the wall clock of
// a host whose time is wrong. Timers (After) are the base clock's: a wrong wall clock does not
// make durations longer or shorter.
type Shifted struct {
	base   Clock
	offset atomic.Int64 // nanoseconds
}

// NewShifted is base moved by offset.
func NewShifted(base Clock, offset time.Duration) *Shifted {
	s := &Shifted{base: base}
	s.offset.Store(int64(offset))
	return s
}

// Now is the base clock's time plus the offset. The result carries no monotonic reading (Go
// cannot move a time's wall clock without moving its monotonic one), so durations between two
// readings across a step include the step: harsher than a real step, whose in-memory durations
// Go measures on the monotonic clock, but what every time written down and read back sees.
// Durations that must not see steps are measured on the base clock.
func (s *Shifted) Now() time.Time {
	return s.base.Now().Round(0).Add(time.Duration(s.offset.Load()))
}

// After is the base clock's.
func (s *Shifted) After(d time.Duration) <-chan time.Time { return s.base.After(d) }

// SetOffset moves the clock to base + offset from now on (a step, as a bad NTP server makes).
func (s *Shifted) SetOffset(offset time.Duration) { s.offset.Store(int64(offset)) }

// Offset is the current offset.
func (s *Shifted) Offset() time.Duration { return time.Duration(s.offset.Load()) }
