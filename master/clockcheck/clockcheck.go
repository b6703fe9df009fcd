package clockcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/raft"
)

// Clock checks: every master asks the other masters their time, NTP-style, once a second, so
// that the leader knows whether its own wall clock can be trusted for decisions that depend on
// it (when a cron run is due).
//
//	this master            peer
//	send  (wall s, mono)  ---- GET /v1/cluster/self ---->
//	                      <---- {"time_unix_nano": p} ----   recv (mono)
//	rtt    = recv - send                       (monotonic: a wall step cannot fake it)
//	offset = p - (s + rtt/2)                   peer's clock minus ours
//	error  = rtt/2                             the peer read its clock somewhere in between
//
// Each peer keeps its last samples of the last maxSampleAge; the one with the smallest error
// counts (NTP's clock filter: a round trip slowed by load says little). A sample is carried to
// now through the monotonic clock: if this master's wall clock stepped since (a bad NTP server,
// an operator, the chaos harness), the step shows at once as a change of the offset, without
// waiting for the next probe. A peer's clock agrees when |offset| + error <= MaxClockSkew, and
// disagrees for sure when |offset| - error > MaxClockSkew.
//
// A master's clock is trusted when it agrees with a majority of the raft voters, itself
// included (the same quorum raft asks for a write): of 3 masters, with one other. Then at least
// one clock of the majority that is right (if one is) is within the bound of ours. Alone (one
// voter, `agora dev`) a master has nothing to compare with and trusts its clock. With voters but
// no peer answering, it does not trust it: a leader that reaches no other master cannot show its
// clock is right (and it loses its lease soon anyway).
const (
	clockProbeInterval = time.Second
	maxSampleAge       = 5 * time.Second
	samplesKept        = 8
	// abdicateEvery bounds how often a skewed leader tries to hand leadership over.
	abdicateEvery = 3 * time.Second
)

// DefaultMaxSkew is --max-clock-skew's default: half a second. Cron's finest unit is a
// second, so a leader off by more could fire a due second in the wrong one; hosts kept by NTP
// are within milliseconds of each other, so only a broken clock goes past it, and a round trip
// slowed by a loaded host (tens of ms) fits well inside it. Consul and etcd warn at about 1 s.
const DefaultMaxSkew = 500 * time.Millisecond

// clockSample is one probe of a peer's clock.
type clockSample struct {
	offset time.Duration // the peer's clock minus ours, at the probe
	err    time.Duration // half the round trip
	wall   time.Time     // our wall clock when the probe was sent (no monotonic reading)
	mono   time.Time     // our monotonic clock then
}

// peerClock is what this master knows of one peer's clock now.
type peerClock struct {
	id     string
	offset time.Duration // carried to now; 0 when no sample
	err    time.Duration
	answer bool // a fresh sample exists
	verdict
}

type verdict int

const (
	unknown verdict = iota
	agrees
	disagrees
)

// clockJudgement is what the samples say about this master's clock now.
type clockJudgement struct {
	trusted bool
	// skewed: a majority's clocks disagree for sure; this master's is the odd one.
	skewed bool
	reason string
	// offset is the median of the masters' clocks minus ours (ours counted as 0), of those
	// that answered: the figure agora_master_clock_offset_seconds shows.
	offset time.Duration
	// lag is how far behind our clock the decisions' now is set: the earliest clock of the
	// agreeing peers, less its error, when it is behind ours, so that nothing fires before it
	// is due by any of them.
	lag     time.Duration
	peers   []peerClock
	voters  int
	quorum  int
	agreeOK int // masters whose clock agrees with ours, ours included
}

// judgeClock decides about this master's clock from its peers' samples: a decision without
// I/O. wallNow is this master's wall clock (no monotonic reading), monoNow its monotonic one.
func judgeClock(samples map[string][]clockSample, peerIDs []string, voters int, wallNow, monoNow time.Time, maxSkew time.Duration) clockJudgement {
	j := clockJudgement{voters: max(voters, 1), agreeOK: 1}
	j.quorum = j.voters/2 + 1
	offsets := []time.Duration{0}
	notDisagree := 1
	for _, id := range peerIDs {
		pc := peerClock{id: id}
		// Carry each sample to now: a step of our wall clock since it was taken moves its
		// offset by as much.
		carried := func(s clockSample) time.Duration {
			return s.offset - (wallNow.Sub(s.wall) - monoNow.Sub(s.mono))
		}
		var newest, best *clockSample
		for i := range samples[id] {
			if s := &samples[id][i]; monoNow.Sub(s.mono) <= maxSampleAge && (newest == nil || s.mono.After(newest.mono)) {
				newest = s
			}
		}
		for i := range samples[id] {
			s := &samples[id][i]
			// Of the fresh samples that agree with the newest (a peer's clock that stepped
			// makes its older ones wrong), the one with the smallest error counts.
			if newest == nil || monoNow.Sub(s.mono) > maxSampleAge || (carried(*s)-carried(*newest)).Abs() > s.err+newest.err {
				continue
			}
			if best == nil || s.err < best.err {
				best = s
			}
		}
		if best != nil {
			pc.offset, pc.err, pc.answer = carried(*best), best.err, true
			off := pc.offset.Abs()
			switch {
			case off+pc.err <= maxSkew:
				pc.verdict = agrees
				j.agreeOK++
				if lag := -(pc.offset - pc.err); lag > j.lag {
					j.lag = lag
				}
			case off-pc.err > maxSkew:
				pc.verdict = disagrees
			}
			offsets = append(offsets, pc.offset)
		}
		if pc.verdict != disagrees {
			notDisagree++
		}
		j.peers = append(j.peers, pc)
	}
	slices.Sort(offsets)
	j.offset = offsets[len(offsets)/2]
	if len(offsets)%2 == 0 {
		j.offset = (offsets[len(offsets)/2-1] + offsets[len(offsets)/2]) / 2
	}
	j.trusted = j.voters <= 1 || j.agreeOK >= j.quorum
	j.skewed = j.voters > 1 && notDisagree < j.quorum
	answered := len(offsets) - 1
	switch {
	case j.trusted:
	case j.skewed:
		j.reason = fmt.Sprintf("this master's clock is %s off the other masters' (median offset %+.3fs), beyond --max-clock-skew %s: it fires no cron run and hands leadership to a master whose clock agrees",
			(-j.offset).Round(time.Millisecond), j.offset.Seconds(), maxSkew)
	case answered == 0:
		j.reason = fmt.Sprintf("no other master answered this master's clock check in the last %s; of %d masters, %d must agree on the time before cron runs fire", maxSampleAge, j.voters, j.quorum)
	default:
		j.reason = fmt.Sprintf("only %d of %d masters (this one included) have a clock within --max-clock-skew %s of this master's; %d needed before cron runs fire", j.agreeOK, j.voters, maxSkew, j.quorum)
	}
	return j
}

// saneTarget is a peer whose clock agrees with a majority of the masters (from this master's
// samples), to hand leadership to; "" when none does.
func (j clockJudgement) saneTarget(maxSkew time.Duration, rng func(int) int) string {
	var ok []string
	for _, p := range j.peers {
		if !p.answer {
			continue
		}
		n := 1 // itself
		if (p.offset.Abs() + p.err) <= maxSkew {
			n++ // with us
		}
		for _, q := range j.peers {
			if q.id != p.id && q.answer && (p.offset-q.offset).Abs()+p.err+q.err <= maxSkew {
				n++
			}
		}
		if n >= j.quorum {
			ok = append(ok, p.id)
		}
	}
	if len(ok) == 0 {
		return ""
	}
	sort.Strings(ok)
	return ok[rng(len(ok))]
}

// Config configures a Guard.
type Config struct {
	ID    string      // this master's raft server id
	Store *raft.Store // the raft voters, and leadership to hand over
	// Masters lists the masters of the gossip pool, whose metadata carries their API
	// addresses (nil: none known yet).
	Masters func() []gossip.Member
	Scheme  string       // http, or https with TLS
	Client  *http.Client // to the other masters' APIs, with a short timeout
	Clock   clock.Clock  // the decisions' wall clock (master.Config.Clock)
	MaxSkew time.Duration
	Logger  *slog.Logger
}

// Guard runs the probes and keeps their samples.
type Guard struct {
	id      string
	store   *raft.Store
	masters func() []gossip.Member
	scheme  string
	client  *http.Client
	wall    clock.Clock // the decisions' clock (Config.Clock)
	mono    clock.Clock // real time, for durations (clock.Real: its readings are monotonic)
	maxSkew time.Duration
	logger  *slog.Logger

	mu           sync.Mutex // guards what follows
	samples      map[string][]clockSample
	peerIDs      []string
	voters       int
	wasTrusted   bool
	lastAbdicate time.Time // monotonic
}

// New makes the clock guard of a master; Run starts its probes.
func New(cfg Config) *Guard {
	return &Guard{id: cfg.ID, store: cfg.Store, masters: cfg.Masters, scheme: cfg.Scheme, client: cfg.Client,
		wall: cfg.Clock, mono: clock.Real{}, maxSkew: cfg.MaxSkew, logger: cfg.Logger, samples: map[string][]clockSample{}, wasTrusted: true}
}

// judge is judgeClock on the samples now.
func (g *Guard) judge() clockJudgement {
	g.mu.Lock()
	alone := g.voters <= 1
	g.mu.Unlock()
	if alone {
		g.refreshPeers() // a master just joined by others must not judge alone until the next probe
	}
	wallNow, monoNow := g.wall.Now().Round(0), g.mono.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	return judgeClock(g.samples, g.peerIDs, g.voters, wallNow, monoNow, g.maxSkew)
}

// add keeps a sample of a peer.
func (g *Guard) add(id string, s clockSample) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ss := append(g.samples[id], s)
	if len(ss) > samplesKept {
		ss = ss[len(ss)-samplesKept:]
	}
	g.samples[id] = ss
}

// setPeers records the raft voters (self included) and which of them are peers.
func (g *Guard) setPeers(voters int, peers []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.voters, g.peerIDs = voters, peers
	for id := range g.samples {
		if !slices.Contains(peers, id) {
			delete(g.samples, id)
		}
	}
}

// Run probes the peers every clockProbeInterval until ctx ends; a leader whose clock is skewed
// hands leadership over.
func (g *Guard) Run(ctx context.Context) {
	tick := time.NewTicker(clockProbeInterval)
	defer tick.Stop()
	for {
		g.probeAll(ctx)
		g.act()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refreshPeers reads the raft voters; it answers the peers' ids.
func (g *Guard) refreshPeers() []string {
	servers, err := g.store.Servers()
	if err != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.peerIDs
	}
	voters := 0
	var peers []string
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		if s.ID != g.id {
			peers = append(peers, s.ID)
		}
	}
	if voters == 0 {
		voters = 1 // not in a cluster yet: alone
	}
	g.setPeers(voters, peers)
	return peers
}

// probeAll asks every peer voter its time, at once.
func (g *Guard) probeAll(ctx context.Context) {
	peers := g.refreshPeers()
	httpOf := map[string]string{}
	if g.masters != nil {
		for _, mem := range g.masters() {
			httpOf[mem.Meta.ID] = mem.Meta.HTTP
		}
	}
	var wg sync.WaitGroup
	for _, id := range peers {
		addr := httpOf[id]
		if addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s, ok := g.probe(ctx, addr); ok {
				g.add(id, s)
			}
		}()
	}
	wg.Wait()
}

// probe asks one master its time.
func (g *Guard) probe(ctx context.Context, addr string) (clockSample, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.scheme+"://"+addr+"/v1/cluster/self", nil)
	if err != nil {
		return clockSample{}, false
	}
	wall, mono := g.wall.Now().Round(0), g.mono.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		return clockSample{}, false
	}
	defer resp.Body.Close()
	var self api.SelfInfo
	err = json.NewDecoder(resp.Body).Decode(&self)
	rtt := g.mono.Now().Sub(mono)
	if err != nil || resp.StatusCode != http.StatusOK || self.TimeUnixNano == 0 {
		return clockSample{}, false
	}
	mid := wall.Add(rtt / 2)
	return clockSample{offset: time.Unix(0, self.TimeUnixNano).Sub(mid), err: rtt / 2, wall: wall, mono: mono}, true
}

// act logs a change of trust, and has a skewed leader hand leadership to a peer whose clock
// agrees.
func (g *Guard) act() {
	j := g.judge()
	g.mu.Lock()
	changed := j.trusted != g.wasTrusted
	g.wasTrusted = j.trusted
	g.mu.Unlock()
	if changed && !j.trusted {
		g.logger.Warn("clock not trusted: cron runs wait", "reason", j.reason, "offset_seconds", j.offset.Seconds(), "peers", peersText(j.peers))
	} else if changed {
		g.logger.Info("clock agrees with the other masters again", "offset_seconds", j.offset.Seconds(), "peers", peersText(j.peers))
	}
	if !j.skewed || !g.store.IsLeader() {
		return
	}
	g.mu.Lock()
	due := g.lastAbdicate.IsZero() || g.mono.Now().Sub(g.lastAbdicate) >= abdicateEvery
	if due {
		g.lastAbdicate = g.mono.Now()
	}
	g.mu.Unlock()
	if !due {
		return
	}
	target := j.saneTarget(g.maxSkew, rand.IntN)
	if target == "" {
		g.logger.Warn("clock skewed, and no other master's clock agrees with a majority: keeping leadership, firing no cron run", "peers", peersText(j.peers))
		return
	}
	addr := ""
	if servers, err := g.store.Servers(); err == nil {
		for _, s := range servers {
			if s.ID == target {
				addr = s.Address
			}
		}
	}
	g.logger.Warn("clock skewed: handing leadership to a master whose clock agrees", "to", target, "offset_seconds", j.offset.Seconds())
	if err := g.store.LeadershipTransferTo(target, addr); err != nil {
		g.logger.Warn("leadership transfer", "to", target, "err", err)
	}
}

func peersText(ps []peerClock) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(" ")
		}
		if !p.answer {
			fmt.Fprintf(&b, "%s:no-answer", p.id)
			continue
		}
		fmt.Fprintf(&b, "%s:%+.3fs±%.3fs", p.id, p.offset.Seconds(), p.err.Seconds())
	}
	return b.String()
}

// Status is the judgement now as the API shows it (GET /v1/cluster's "clock").
func (g *Guard) Status() *api.ClockStatus {
	j := g.judge()
	st := &api.ClockStatus{Trusted: j.trusted, Skewed: j.skewed, Reason: j.reason, OffsetSeconds: j.offset.Seconds(), MaxSkewSeconds: g.maxSkew.Seconds(),
		Voters: j.voters, Agreeing: j.agreeOK, Peers: []api.PeerClock{}}
	for _, p := range j.peers {
		pc := api.PeerClock{ID: p.id, Verdict: "no answer"}
		if p.answer {
			pc.OffsetSeconds, pc.ErrorSeconds = p.offset.Seconds(), p.err.Seconds()
			pc.Verdict = map[verdict]string{agrees: "agrees", disagrees: "disagrees", unknown: "uncertain"}[p.verdict]
		}
		st.Peers = append(st.Peers, pc)
	}
	return st
}

// Verdict says whether this master's wall clock may be used for decisions that depend on it
// (when cron runs are due): clock.Verdict, which the frameworks read.
type Verdict = clock.Verdict

// Verdict is the clock verdict now.
func (g *Guard) Verdict() Verdict {
	j := g.judge()
	return Verdict{Trusted: j.trusted, Reason: j.reason, Lag: j.lag}
}

// Collectors are the guard's Prometheus metrics: agora_master_clock_offset_seconds and
// agora_master_clock_trusted, read from the samples when scraped.
func (g *Guard) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agora_master_clock_offset_seconds",
			Help: "The median of the masters' wall clocks minus this master's (its own counted as 0), measured over their APIs; beyond --max-clock-skew this master fires no cron run."},
			func() float64 { return g.judge().offset.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "agora_master_clock_trusted",
			Help: "1 while this master's clock agrees with a majority of the masters' within --max-clock-skew (cron runs may fire), 0 otherwise."},
			func() float64 {
				if g.judge().trusted {
					return 1
				}
				return 0
			}),
	}
}

// TransferLeadership hands leadership to another voter: raft's choice (the most caught-up)
// when every peer's clock agrees with ours, else one whose clock agrees with a majority, so
// that a master with a wrong clock is not made leader.
func (g *Guard) TransferLeadership() error {
	j := g.judge()
	all := true
	for _, p := range j.peers {
		all = all && p.verdict == agrees
	}
	if all {
		return g.store.LeadershipTransfer()
	}
	target := j.saneTarget(g.maxSkew, rand.IntN)
	if target == "" {
		return g.store.LeadershipTransfer()
	}
	servers, err := g.store.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == target {
			return g.store.LeadershipTransferTo(s.ID, s.Address)
		}
	}
	return g.store.LeadershipTransfer()
}
