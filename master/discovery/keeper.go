package discovery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/pkg/clock"
)

// ErrNotLeader is what Config.Build answers on a master that does not lead, or whose term has
// not started yet: the Keeper then fetches the leader's view.
var ErrNotLeader = errors.New("discovery: not the leader")

// DefaultRefresh is how often a Keeper reads the view again by default: half the DNS TTL's
// default (5 s), so that an ended task leaves the answers within one TTL.
const DefaultRefresh = 2500 * time.Millisecond

// Config configures a Keeper.
type Config struct {
	// Refresh is how often the view is read again (DefaultRefresh).
	Refresh time.Duration
	// FetchTimeout bounds one fetch of the leader's view (default: Refresh, at most 1 s).
	FetchTimeout time.Duration
	// Build reads the view from this master's memory while it leads, given the view before
	// (Input.Prev); ErrNotLeader elsewhere.
	Build func(prev *View) (*View, error)
	// Fetch asks the leader for its view (GET /v1/discovery/view).
	Fetch func(ctx context.Context) (*View, error)
	// Masters lists the masters this master knows alive and the leader's id, from its own raft
	// and gossip state.
	Masters func() (masters []Master, leaderID string)
	// OnChange is called with every view the Keeper takes, the masters filled in, and the time
	// it was read (on a follower: when the fetch was sent).
	OnChange func(v *View, readAt time.Time)
	// Active says whether anyone reads the view now (nil: always): Run refreshes only then, so
	// a master whose view nobody asks for (no DNS, no services reader) spends nothing on it.
	// Fresh refreshes on demand.
	Active func() bool
	Clock  clock.Clock
	Logger *slog.Logger
}

// Keeper keeps a master's view fresh: every Refresh it builds the view from its memory if it
// leads, or fetches the leader's otherwise. A fetch that fails (no leader, the leader gone)
// keeps the last view, and its age grows: Age says how old it is. With the leader answering,
// a view is never older than Bound.
type Keeper struct {
	cfg Config

	refreshMu sync.Mutex    // one refresh at a time
	poke      chan struct{} // Poke: refresh soon

	mu     sync.Mutex // guards the fields below
	view   *View
	readAt time.Time
	source string // "built" or "fetched"

	age     prometheus.GaugeFunc
	index   prometheus.GaugeFunc
	refresh *prometheus.CounterVec
}

// NewKeeper makes a Keeper; Run runs it.
func NewKeeper(cfg Config) *Keeper {
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = min(cfg.Refresh, time.Second)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{cfg: cfg, poke: make(chan struct{}, 1)}
	k.age = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agora_discovery_view_age_seconds",
		Help: "How old this master's service-discovery view is: since the leader read it from its memory (-1: no view yet)."}, func() float64 {
		_, age, _ := k.Current()
		return age.Seconds()
	})
	k.index = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agora_discovery_view_index",
		Help: "The raft index the leader had applied when it read this master's service-discovery view."}, func() float64 {
		v, _, _ := k.Current()
		if v == nil {
			return 0
		}
		return float64(v.Index)
	})
	k.refresh = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_discovery_view_refreshes_total",
		Help: "Refreshes of this master's service-discovery view: built (leading), fetched (from the leader) or failed (the last view kept)."}, []string{"result"})
	return k
}

// Bound is how old the view may get while a leader answers: one refresh period and one fetch.
func (k *Keeper) Bound() time.Duration { return k.cfg.Refresh + k.cfg.FetchTimeout }

// Collectors are the Keeper's metrics.
func (k *Keeper) Collectors() []prometheus.Collector {
	return []prometheus.Collector{k.age, k.index, k.refresh}
}

// Current is the view the Keeper holds (nil before the first), how old it is (-1 s without one)
// and where it came from ("built" or "fetched").
func (k *Keeper) Current() (v *View, age time.Duration, source string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.view == nil {
		return nil, -time.Second, ""
	}
	return k.view, k.cfg.Clock.Now().Sub(k.readAt), k.source
}

// View is the view to hand a follower that asks for it: built now when this master leads
// (ErrNotLeader otherwise).
func (k *Keeper) View() (*View, error) {
	prev, _, _ := k.Current()
	return k.cfg.Build(prev)
}

// PokeGap is how soon after a refresh a Poke refreshes again: changes that come together (a
// deployment's instances turning healthy one after another) make one refresh, not one each.
const PokeGap = 200 * time.Millisecond

// Poke asks for a refresh soon, not at the next period: the leader's task table changed in a
// way the view shows (a task started or ended running, its health changed). It never blocks;
// pokes that come while one waits are one.
func (k *Keeper) Poke() {
	select {
	case k.poke <- struct{}{}:
	default:
	}
}

// Run refreshes the view every Refresh while it is read (Config.Active), and PokeGap after a
// Poke at the soonest, until ctx ends. Refreshes start on a fixed schedule, not a pause after
// each: a view is replaced within Refresh plus one fetch of being read.
func (k *Keeper) Run(ctx context.Context) {
	for {
		start := k.cfg.Clock.Now()
		select {
		case <-k.poke: // this refresh covers the pokes so far
		default:
		}
		if k.cfg.Active == nil || k.cfg.Active() {
			k.Refresh(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-k.cfg.Clock.After(k.cfg.Refresh - k.cfg.Clock.Now().Sub(start)):
		case <-k.poke:
			select {
			case <-ctx.Done():
				return
			case <-k.cfg.Clock.After(PokeGap - k.cfg.Clock.Now().Sub(start)):
			}
		}
	}
}

// Fresh refreshes the view now unless it is within Bound: for a reader that comes while Run
// was idle (nobody read it).
func (k *Keeper) Fresh(ctx context.Context) {
	if v, age, _ := k.Current(); v != nil && age <= k.Bound() {
		return
	}
	k.Refresh(ctx)
}

// Refresh reads the view once: built from this master's memory if it leads, else fetched from
// the leader; on failure the last view stays, with the masters as they are now.
func (k *Keeper) Refresh(ctx context.Context) {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	prev, _, _ := k.Current()
	at := k.cfg.Clock.Now()
	v, err := k.cfg.Build(prev)
	source := "built"
	if errors.Is(err, ErrNotLeader) {
		fctx, cancel := context.WithTimeout(ctx, k.cfg.FetchTimeout)
		v, err = k.cfg.Fetch(fctx)
		cancel()
		source = "fetched"
	}
	if err != nil {
		if ctx.Err() == nil {
			k.refresh.WithLabelValues("failed").Inc()
			k.cfg.Logger.Debug("service discovery: view not refreshed; the last one stays", "err", err)
		}
		if prev == nil {
			return
		}
		k.mu.Lock()
		v, at, source = prev, k.readAt, k.source
		k.mu.Unlock()
		cp := *v
		v = &cp
	} else {
		k.refresh.WithLabelValues(source).Inc()
	}
	if k.cfg.Masters != nil {
		v.Masters, v.LeaderID = k.cfg.Masters()
	}
	k.mu.Lock()
	k.view, k.readAt, k.source = v, at, source
	k.mu.Unlock()
	if k.cfg.OnChange != nil {
		k.cfg.OnChange(v, at)
	}
}
