package frameworks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/raft"
)

// FrameworkIDKey is the key, in a framework's namespace, of the framework id the master gave
// it: the driver subscribes again as that framework on every new leader.
const FrameworkIDKey = "framework-id"

// Driver is an embedded framework's life on a leader, the same for every framework; what is
// the framework's own comes in as Begin, Step and End. Run goes:
//
//	read the framework id (framework-id in its namespace of the store; none the first time)
//	  │ Subscribe as that framework (waits while the scheduler is not ready)
//	  ▼
//	store the id the master gave, when it is another ─▶ Begin: load the state, take it as the
//	leader's, say which tasks to reconcile ─▶ RECONCILE them ─▶ Step(no events, tick)
//	  │
//	  ▼
//	loop: Step after each batch of events, each wake, each Tick (tick), and at the time the
//	last Step asked for
//	  │ ctx ends (leadership ends): nil │ subscription ends, Broken, or an error: the error
//	  ▼
//	End (the state is forgotten), the subscription closed
//
// A Run that fails is started again by the host after a pause (Host.Embed), and so is one after
// a leader change: either way it subscribes again with the framework id it stored, so the
// master hands it its tasks, and loads its state afresh.
type Driver struct {
	Config Config // its Host (whose Store holds the framework id), Name (the framework's), Tick, Logger

	// Begin builds the framework's leader state for the session from the store and makes it
	// the one the framework works on; it answers the tasks to reconcile (what the state says
	// may run).
	Begin func(ctx context.Context, ss api.Session) (reconcile []api.ReconcileTask, err error)
	// Step handles events (none after a wake or a timer) and looks at the state: at every tick
	// (each Tick) all of it, else what the events or wakes changed. It answers when it wants
	// to step again at the latest (zero: no sooner than the next tick or event); an error ends
	// Run.
	Step func(ctx context.Context, events []api.Event, tick bool) (wakeAt time.Time, err error)
	// End forgets the leader state when Run returns.
	End func()

	// Wake, when it has something, makes a Step (the framework's API changed the state).
	// Broken, when it has an error, ends Run with it: a write failed and the state in memory
	// may be wrong, so Run starts again and loads it.
	Wake   <-chan struct{}
	Broken <-chan error
	// Buffer is how many events are read ahead of Step, and Batch how many one Step gets at
	// most (0: one).
	Buffer, Batch int
}

// Register embeds the framework in its host: Run as the leader's work (Host.Embed).
func (d *Driver) Register() { d.Config.Host.Embed(d.Config.Name, d.Run) }

// Run runs the framework until ctx ends (it stops leading) or its subscription ends.
func (d *Driver) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // ends the event reader however Run returns
	defer cancel()
	ss, err := d.subscribe(ctx)
	if err != nil {
		return err
	}
	defer ss.Close()
	known, err := d.Begin(ctx, ss)
	if err != nil {
		return err
	}
	defer d.End()
	if len(known) > 0 {
		if err := ss.Call(api.Call{Type: api.CallReconcile, Reconcile: &api.Reconcile{Tasks: known}}); err != nil {
			return err
		}
	}
	return d.loop(ctx, ss)
}

// subscribe subscribes as the framework the store names, and stores the id the master gave
// when it is another (the first time, or after the master forgot the framework).
func (d *Driver) subscribe(ctx context.Context) (api.Session, error) {
	store := d.Config.Host.Store()
	v, err := store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	fwID := ""
	if b, ok := v.Get(FrameworkIDKey); ok {
		json.Unmarshal(b, &fwID)
	}
	ss, err := d.Config.Subscribe(ctx, fwID)
	if err != nil {
		return nil, err
	}
	if fwID != ss.FrameworkID() {
		b := &raft.Batch{}
		b.Put(FrameworkIDKey, ss.FrameworkID())
		if err := store.Commit(ctx, b); err != nil {
			ss.Close()
			return nil, err
		}
	}
	return ss, nil
}

// loop steps once, then after every batch of events, wake, tick and wanted time, until ctx
// ends or the subscription does.
func (d *Driver) loop(ctx context.Context, ss api.Session) error {
	wakeAt, err := d.Step(ctx, nil, true)
	if err != nil {
		return err
	}
	events, ended := ss.Events(ctx, d.Buffer)
	tick := time.NewTicker(d.Config.Tick)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour) // set by setTimer
	defer timer.Stop()
	var batch []api.Event
	for {
		d.setTimer(timer, wakeAt)
		batch = batch[:0]
		ticked := false
		select {
		case <-ctx.Done():
			return nil
		case err := <-ended:
			return fmt.Errorf("%s: subscription ended: %w", d.Config.Name, err)
		case err := <-d.Broken:
			return fmt.Errorf("%s: reloading after a failed write: %w", d.Config.Name, err)
		case ev := <-events:
			batch = append(batch, ev)
		drain:
			for len(batch) < d.Batch {
				select {
				case ev := <-events:
					batch = append(batch, ev)
				default:
					break drain
				}
			}
		case <-d.Wake:
		case <-timer.C:
		case <-tick.C:
			ticked = true
		}
		if wakeAt, err = d.Step(ctx, batch, ticked); err != nil {
			return err
		}
	}
}

// setTimer makes timer fire at wakeAt (at once when it has passed), or not at all when it is
// zero.
func (d *Driver) setTimer(timer *time.Timer, wakeAt time.Time) {
	if !timer.Stop() {
		select {
		case <-timer.C:
		default:
		}
	}
	if !wakeAt.IsZero() {
		timer.Reset(max(wakeAt.Sub(d.Config.Clock.Now()), time.Millisecond))
	}
}
