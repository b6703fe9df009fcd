// Package statusupdate delivers an agent's status updates to the master and never loses one:
// each is checkpointed before it is sent, sent in order per task (the next only after the
// master acknowledged the one before), and resent with backoff until acknowledged, across
// agent restarts too. Duplicates are harmless: the master acknowledges by uuid and a stale ack
// changes nothing.
//
// Use:
//
//  1. New(Config{Store, Sender, Clock}); Run(ctx) in its own goroutine. On start it resends
//     whatever the checkpoint still holds.
//  2. Update(u) for every state change: checkpointed, then sent.
//  3. Ack(taskID, uuid) when the master acknowledges: the task's next update goes out.
//  4. Stats for metrics: how many updates were resent, how many wait for an acknowledgement.
package statusupdate

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/pkg/clock"
)

// Sender hands one update to the master; success means it was delivered, not acknowledged.
type Sender interface {
	Send(ctx context.Context, u checkpoint.Update) error
}

// Backoff between resends of an unacknowledged update: it doubles from Initial up to Max.
const (
	InitialBackoff = time.Second
	MaxBackoff     = time.Minute
)

// Config configures a Manager.
type Config struct {
	Store  *checkpoint.Store
	Sender Sender
	Clock  clock.Clock // default clock.Real
	Logger *slog.Logger
}

// sent is what the manager knows of a task's head update in flight.
type sent struct {
	uuid    string
	attempt int
	next    time.Time // when to resend
}

// Manager is the status update manager.
type Manager struct {
	cfg  Config
	kick chan struct{}

	mu       sync.Mutex // guards inflight
	inflight map[string]sent

	resent  atomic.Uint64 // see Stats
	pending atomic.Int64  // see Stats
}

// Stats are the manager's numbers, for metrics.
type Stats struct {
	// Resent counts the updates sent again because no acknowledgement came: after their
	// backoff, or at once after a Flush.
	Resent uint64
	// Pending is how many updates wait for their acknowledgement, sent or not yet, as of Run's
	// latest look at the checkpoint (it looks after every Update and Ack).
	Pending int
}

// Stats returns the manager's numbers.
func (m *Manager) Stats() Stats {
	return Stats{Resent: m.resent.Load(), Pending: int(m.pending.Load())}
}

// New makes a manager.
func New(cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, kick: make(chan struct{}, 1), inflight: map[string]sent{}}
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Update checkpoints u and has it sent when its turn comes.
func (m *Manager) Update(u checkpoint.Update) error {
	if err := m.cfg.Store.AddUpdate(u); err != nil {
		return err
	}
	m.poke()
	return nil
}

// UpdateTask checkpoints the task's record and u together (see checkpoint.SaveTaskAndUpdate),
// then has u sent when its turn comes.
func (m *Manager) UpdateTask(u checkpoint.Update, task []byte) error {
	if err := m.cfg.Store.SaveTaskAndUpdate(u, task); err != nil {
		return err
	}
	m.poke()
	return nil
}

// Flush has every unacknowledged head sent again now, backoff or not: the agent calls it when a
// new leader has heard from it, which is when the old leader's silence stops mattering.
func (m *Manager) Flush() {
	m.mu.Lock()
	for id, s := range m.inflight {
		s.next = time.Time{}
		m.inflight[id] = s
	}
	m.mu.Unlock()
	m.poke()
}

// Pending says whether some update of the task still waits for its acknowledgement.
func (m *Manager) Pending(taskID string) (bool, error) {
	_, ok, err := m.cfg.Store.Head(taskID)
	return ok, err
}

// Ack records the master's acknowledgement of a task's update.
func (m *Manager) Ack(taskID, uuid string) error {
	acked, err := m.cfg.Store.Ack(taskID, uuid)
	if err != nil {
		return err
	}
	if acked {
		m.mu.Lock()
		delete(m.inflight, taskID)
		m.mu.Unlock()
		m.poke()
	}
	return nil
}

// backoff is the wait after the given number of attempts.
func backoff(attempt int) time.Duration {
	d := InitialBackoff
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// due decides, without I/O, which heads to send now and when to look again: a head not yet
// sent (or a new head after an ack) goes at once; one sent goes again when its backoff ends.
func due(heads map[string]checkpoint.Update, inflight map[string]sent, now time.Time) (send []checkpoint.Update, wake time.Time) {
	ids := make([]string, 0, len(heads))
	for id := range heads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		h := heads[id]
		s, ok := inflight[id]
		if !ok || s.uuid != h.UUID || !now.Before(s.next) {
			send = append(send, h)
			continue
		}
		if wake.IsZero() || s.next.Before(wake) {
			wake = s.next
		}
	}
	return send, wake
}

// Run sends and resends until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	for {
		pending, err := m.cfg.Store.Pending()
		if err != nil {
			return err
		}
		heads := map[string]checkpoint.Update{}
		n := 0
		for id, us := range pending {
			heads[id] = us[0]
			n += len(us)
		}
		m.pending.Store(int64(n))
		now := m.cfg.Clock.Now()
		m.mu.Lock()
		for id := range m.inflight {
			if _, ok := heads[id]; !ok {
				delete(m.inflight, id)
			}
		}
		send, wake := due(heads, m.inflight, now)
		m.mu.Unlock()

		for _, u := range send {
			m.mu.Lock()
			s := m.inflight[u.TaskID]
			if s.uuid != u.UUID {
				s = sent{uuid: u.UUID}
			}
			s.attempt++
			s.next = now.Add(backoff(s.attempt))
			m.inflight[u.TaskID] = s
			m.mu.Unlock()
			if s.attempt > 1 {
				m.resent.Add(1)
			}
			if err := m.cfg.Sender.Send(ctx, u); err != nil {
				m.cfg.Logger.Warn("status update not delivered; will resend", "task", u.TaskID, "state", u.State, "attempt", s.attempt, "err", err)
			}
			if wake.IsZero() || s.next.Before(wake) {
				wake = s.next
			}
		}

		var timer <-chan time.Time
		if !wake.IsZero() {
			timer = m.cfg.Clock.After(wake.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
		case <-timer:
		}
	}
}
