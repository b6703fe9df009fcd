package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/agora-sched/agora/pkg/faultnet"
)

// Role says what a member is.
type Role string

// The roles.
const (
	RoleMaster Role = "master"
	RoleAgent  Role = "agent"
)

// Meta is what each member advertises to the others, in memberlist's node metadata.
type Meta struct {
	Role      Role   `json:"role"`
	ID        string `json:"id"`                         // raft server id of a master, agent id of an agent
	Cluster   string `json:"cluster,omitempty"`          // cluster id, once known
	Raft      string `json:"raft,omitempty"`             // masters: raft address
	HTTP      string `json:"http,omitempty"`             // HTTP API address
	Bootstrap int    `json:"bootstrap_expect,omitempty"` // masters: their --bootstrap-expect
	Version   string `json:"version,omitempty"`
	// Leaving is set by Leave just before the node goes, so the others can tell a graceful
	// leave from a failure (memberlist's leave callback does not say which it was).
	Leaving bool `json:"leaving,omitempty"`
	// Unavailable says why an agent takes no tasks now (its container runtime does not answer);
	// masters make no offers of it until it is empty again.
	Unavailable string `json:"unavailable,omitempty"`
}

// Status is a member's state as failure detection sees it.
type Status string

// The statuses.
const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect"
	StatusDead    Status = "dead" // failed: stopped answering
	StatusLeft    Status = "left" // left gracefully
)

// Member is one member of the gossip pool.
type Member struct {
	Name   string
	Addr   string // gossip host:port
	Meta   Meta
	Status Status
}

// EventType says what happened to a member.
type EventType int

// The event types.
const (
	EventJoin   EventType = iota // a member appeared (or came back)
	EventUpdate                  // a member's metadata changed
	EventLeave                   // a member left gracefully
	EventFail                    // a member was declared dead
)

func (t EventType) String() string {
	return [...]string{"join", "update", "leave", "fail"}[t]
}

// Event is a change of membership.
type Event struct {
	Type   EventType
	Member Member
}

// Timing is memberlist's failure detection profile.
type Timing int

const (
	// TimingLAN is memberlist's LAN profile (probe every second, suspicion of 4 probe
	// rounds), with suspicion capped at twice that, so even a small cluster that cannot confirm
	// a suspicion through others declares a dead member within about 10 s (5 s typically).
	TimingLAN Timing = iota
	// TimingLocal is for tests on loopback: a dead member is declared within about 2 s.
	TimingLocal
)

// Config configures a Gossip.
type Config struct {
	Name          string // unique; default Meta.ID
	BindAddr      string // host:port, TCP and UDP; port 0 picks one
	AdvertiseAddr string // optional host:port others should use
	Meta          Meta
	Timing        Timing
	Logger        *slog.Logger
	// Events, if set, receives membership changes. A slow reader never blocks gossip: events
	// queue without bound in between, in order.
	Events chan<- Event
	// SecretKey, when set (16, 24 or 32 bytes), encrypts and authenticates every gossip message
	// (memberlist's AES-GCM): a node without the same key cannot join or be heard.
	SecretKey []byte
	// Faults, when set, can cut this node off the others (the chaos harness).
	Faults *faultnet.Switch
}

// Gossip is this node's membership in the pool.
type Gossip struct {
	list   *memberlist.Memberlist
	name   string
	addr   string
	logger *slog.Logger

	mu      sync.Mutex // guards meta, members and stopped
	meta    []byte
	members map[string]record    // by name: what the event callbacks told us, the departed included
	leaving map[string]time.Time // members that said they are leaving, by name
	stopped bool                 // Shutdown was called
	seeds   []string             // the addresses Join was given: contacted again when alone

	events        *eventQueue
	reconnectStop chan struct{} // closed by Leave or Shutdown
	reconnectOnce sync.Once
}

// ErrShutdown: the gossip was shut down already.
var ErrShutdown = errors.New("gossip: shut down")

// ErrMetaTooLarge: the metadata does not fit memberlist's limit.
var ErrMetaTooLarge = fmt.Errorf("gossip: metadata is larger than %d bytes", memberlist.MetaMaxSize)

// New binds the gossip ports and starts gossiping (alone, until Join).
func New(cfg Config) (*Gossip, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Meta.ID
	}
	if cfg.Name == "" {
		return nil, errors.New("gossip: no name")
	}
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address %q: %w", cfg.BindAddr, err)
	}
	var mc *memberlist.Config
	reconnectEvery := ReconnectEvery
	switch cfg.Timing {
	case TimingLocal:
		reconnectEvery = 500 * time.Millisecond
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 200 * time.Millisecond
		mc.SuspicionMult = 2
		mc.SuspicionMaxTimeoutMult = 1
		mc.GossipInterval = 50 * time.Millisecond
		mc.GossipToTheDeadTime = 2 * time.Second // as short against failure detection as a LAN's
	default:
		mc = memberlist.DefaultLANConfig()
		mc.SuspicionMaxTimeoutMult = 2
	}
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	mc.SecretKey = cfg.SecretKey
	mc.LogOutput = nil
	mc.Logger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	if cfg.Faults != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger})
		if err != nil {
			return nil, fmt.Errorf("gossip: %w", err)
		}
		if mc.BindPort == 0 {
			mc.BindPort = nt.GetAutoBindPort()
		}
		mc.Transport = cfg.Faults.Transport(nt)
	}

	g := &Gossip{logger: cfg.Logger, name: cfg.Name, reconnectStop: make(chan struct{})}
	if err := g.setMeta(cfg.Meta); err != nil {
		return nil, err
	}
	if cfg.Events != nil {
		g.events = newEventQueue(cfg.Events)
	}
	mc.Delegate = delegate{g}
	mc.Events = eventDelegate{g}
	mc.Conflict = conflictDelegate{g}
	list, err := memberlist.Create(mc)
	if err != nil {
		if g.events != nil {
			g.events.close()
		}
		return nil, fmt.Errorf("gossip: listen on %s: %w", cfg.BindAddr, err)
	}
	g.list = list
	// Read once: memberlist changes its local node under its own lock.
	n := list.LocalNode()
	g.addr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	go g.reconnect(reconnectEvery)
	return g, nil
}

// ReconnectEvery is how often a node contacts again the members it saw fail (and its seeds, when
// it knows no live member): memberlist itself gossips to a dead member only for a while (30 s on
// a LAN), after which two sides of a healed partition would never hear of each other again.
const ReconnectEvery = 5 * time.Second

// reconnect joins, every interval, the members that failed (not those that left) in the last
// hour, and the seeds when no other member is alive, until Leave or Shutdown. A member that
// answers comes back through memberlist's usual join (EventJoin); one that does not costs a
// refused connection.
func (g *Gossip) reconnect(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-g.reconnectStop:
			return
		case <-tick.C:
		}
		targets := g.reconnectTargets()
		if len(targets) == 0 {
			continue
		}
		if n, err := g.list.Join(targets); n > 0 {
			g.logger.Debug("reconnected", "answered", n, "tried", targets)
		} else {
			g.logger.Debug("reconnect", "tried", targets, "err", err)
		}
	}
}

// reconnectTargets are the gossip addresses reconnect tries now.
func (g *Gossip) reconnectTargets() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var targets []string
	alone := true
	for _, r := range g.members {
		switch {
		case r.member.Name == g.name:
		case r.departed.IsZero():
			alone = false
		case r.member.Status == StatusDead && time.Since(r.departed) < forgetDepartedAfter:
			targets = append(targets, r.member.Addr)
		}
	}
	if alone {
		for _, s := range g.seeds {
			if s != g.addr && !slices.Contains(targets, s) {
				targets = append(targets, s)
			}
		}
	}
	slices.Sort(targets)
	return targets
}

func (g *Gossip) stopReconnecting() { g.reconnectOnce.Do(func() { close(g.reconnectStop) }) }

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func (g *Gossip) setMeta(m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("gossip: metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: %d bytes", ErrMetaTooLarge, len(b))
	}
	g.mu.Lock()
	g.meta = b
	g.mu.Unlock()
	return nil
}

// UpdateMeta changes this node's metadata and tells the others. It fails only for metadata
// that does not fit; a broadcast that is slow to go out is logged, since the next push/pull
// spreads the metadata anyway.
func (g *Gossip) UpdateMeta(m Meta) error {
	if err := g.setMeta(m); err != nil {
		return err
	}
	if err := g.list.UpdateNode(2 * time.Second); err != nil {
		g.logger.Debug("metadata update not confirmed sent", "err", err)
	}
	return nil
}

// LocalAddr is the gossip address this node advertises.
func (g *Gossip) LocalAddr() string { return g.addr }

// Join contacts the seeds until one answers or ctx ends, backing off between rounds. It
// returns how many seeds answered.
func (g *Gossip) Join(ctx context.Context, seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, errors.New("gossip: no seeds to join")
	}
	g.mu.Lock()
	for _, s := range seeds {
		if !slices.Contains(g.seeds, s) {
			g.seeds = append(g.seeds, s)
		}
	}
	g.mu.Unlock()
	backoff := 100 * time.Millisecond
	for {
		n, err := g.list.Join(seeds)
		if n > 0 {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("gossip: no seed answered (%s): %v", strings.Join(seeds, ", "), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// record is a member as last reported, and when it departed (zero while live).
type record struct {
	member   Member
	departed time.Time
}

// forgetDepartedAfter is how long a member that left or failed is still listed.
const forgetDepartedAfter = time.Hour

// Members returns the live members (this node included) and those that left or failed in the
// last hour, sorted by name. It is built from memberlist's callbacks, which copy each node
// under memberlist's lock: memberlist's own node list may not be read while it gossips.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.members))
	for name, r := range g.members {
		if !r.departed.IsZero() && time.Since(r.departed) > forgetDepartedAfter {
			delete(g.members, name)
			continue
		}
		out = append(out, r.member)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Masters returns the alive members with the master role.
func (g *Gossip) Masters() []Member { return g.alive(RoleMaster) }

// Agents returns the alive members with the agent role.
func (g *Gossip) Agents() []Member { return g.alive(RoleAgent) }

func (g *Gossip) alive(role Role) []Member {
	var out []Member
	for _, m := range g.Members() {
		if m.Meta.Role == role && m.Status == StatusAlive {
			out = append(out, m)
		}
	}
	return out
}

func (g *Gossip) member(n *memberlist.Node) Member {
	var meta Meta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		g.logger.Warn("member with unreadable metadata", "member", n.Name, "err", err)
	}
	return Member{
		Name:   n.Name,
		Addr:   net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Meta:   meta,
		Status: status(n.State),
	}
}

// status of a member reported joined or updated. memberlist keeps Node.State at alive (its
// own state field shadows it), so suspicion is not visible from outside.
func status(s memberlist.NodeStateType) Status {
	if s == memberlist.StateSuspect {
		return StatusSuspect
	}
	return StatusAlive
}

// Leave tells the others this node is leaving (they see StatusLeft), waiting up to timeout for
// the message to spread. Call Shutdown after it.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.stopReconnecting()
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return ErrShutdown
	}
	var m Meta
	err := json.Unmarshal(g.meta, &m)
	name := g.name
	var peers []Member
	for _, r := range g.members {
		if r.departed.IsZero() && r.member.Name != name {
			peers = append(peers, r.member)
		}
	}
	g.mu.Unlock()
	if err == nil {
		m.Leaving = true
		if err := g.UpdateMeta(m); err != nil {
			g.logger.Warn("could not announce the leave", "err", err)
		}
	}
	// Tell each live member directly, over TCP, before the leave itself: gossip may deliver the
	// metadata update after the leave, and then the leave would look like a failure.
	deadline := time.Now().Add(timeout / 2)
	for _, p := range peers {
		if time.Now().After(deadline) {
			break
		}
		host, port, err := splitHostPort(p.Addr)
		if err != nil {
			continue
		}
		node := &memberlist.Node{Name: p.Name, Addr: net.ParseIP(host), Port: uint16(port)}
		if err := g.list.SendReliable(node, []byte(leavingMsg+name)); err != nil {
			g.logger.Debug("could not tell a member of the leave", "member", p.Name, "err", err)
		}
	}
	return g.list.Leave(timeout)
}

// leavingMsg prefixes the user message a member sends each peer just before it leaves.
const leavingMsg = "agora-leaving:"

// Shutdown stops gossiping at once. Without a Leave first, the others declare this node dead.
func (g *Gossip) Shutdown() error {
	g.stopReconnecting()
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	err := g.list.Shutdown()
	if g.events != nil {
		g.events.close()
	}
	return err
}

type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	return d.g.meta
}
func (d delegate) NotifyMsg(b []byte) {
	if name, ok := strings.CutPrefix(string(b), leavingMsg); ok {
		d.g.mu.Lock()
		if d.g.leaving == nil {
			d.g.leaving = map[string]time.Time{}
		}
		d.g.leaving[name] = time.Now()
		d.g.mu.Unlock()
	}
}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

type eventDelegate struct{ g *Gossip }

func (e eventDelegate) NotifyJoin(n *memberlist.Node)   { e.record(EventJoin, n) }
func (e eventDelegate) NotifyUpdate(n *memberlist.Node) { e.record(EventUpdate, n) }
func (e eventDelegate) NotifyLeave(n *memberlist.Node)  { e.record(EventLeave, n) }

// record copies the node (memberlist holds its lock during the callback) and queues the event.
// A leave is graceful if the member announced it (Meta.Leaving), a failure otherwise.
func (e eventDelegate) record(t EventType, n *memberlist.Node) {
	m := e.g.member(n)
	var departed time.Time
	e.g.mu.Lock()
	if t == EventLeave {
		departed = time.Now()
		m.Status = StatusDead
		t = EventFail
		if said, ok := e.g.leaving[n.Name]; m.Meta.Leaving || ok && time.Since(said) < time.Minute {
			m.Status = StatusLeft
			t = EventLeave
		}
	}
	if t == EventJoin {
		delete(e.g.leaving, n.Name)
	}
	if e.g.members == nil {
		e.g.members = map[string]record{}
	}
	e.g.members[n.Name] = record{member: m, departed: departed}
	e.g.mu.Unlock()
	e.g.logger.Debug("membership", "event", t.String(), "member", m.Name, "addr", m.Addr)
	if e.g.events != nil {
		e.g.events.push(Event{Type: t, Member: m})
	}
}

type conflictDelegate struct{ g *Gossip }

func (c conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	c.g.logger.Error("two members share one name", "name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

// eventQueue hands events to a channel from its own goroutine, so memberlist never blocks on a
// slow reader. Events are kept in order and never dropped.
type eventQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []Event
	closed bool
	done   chan struct{}
}

func newEventQueue(out chan<- Event) *eventQueue {
	q := &eventQueue{done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.run(out)
	return q
}

func (q *eventQueue) push(e Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.queue = append(q.queue, e)
	q.cond.Signal()
}

func (q *eventQueue) run(out chan<- Event) {
	for {
		q.mu.Lock()
		for len(q.queue) == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			q.mu.Unlock()
			return
		}
		e := q.queue[0]
		q.queue = q.queue[1:]
		q.mu.Unlock()
		select {
		case out <- e:
		case <-q.done:
			return
		}
	}
}

func (q *eventQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
		q.cond.Broadcast()
	}
}
