package raft

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/agora-sched/agora/pkg/faultnet"
)

// Errors of the store. Callers branch on these with errors.Is / errors.As.
var (
	// ErrNotLeader: writes and linearizable reads need the leader; *NotLeaderError says who is.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrUnknownOutcome: the write was proposed but leadership was lost, the store shut down or
	// the caller gave up before it was known whether it committed. Retry with the same
	// Command.ID to apply it at most once.
	ErrUnknownOutcome = errors.New("raft: outcome of the write is unknown")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("raft: store closed")
	// ErrAlreadyBootstrapped: Bootstrap was called on a store that has state.
	ErrAlreadyBootstrapped = errors.New("raft: already has state; not bootstrapping")
	// ErrDataDirInUse: another process holds the data dir's log open.
	ErrDataDirInUse = errors.New("raft: data dir is in use by another process")
)

// NotLeaderError says which server leads, as far as this one knows (empty when none is known).
type NotLeaderError struct {
	LeaderID, LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "raft: not the leader, and no leader is known"
	}
	return fmt.Sprintf("raft: not the leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// Unwrap makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Timing holds raft's timeouts. LANTiming is what ships.
type Timing struct {
	// HeartbeatTimeout: a follower without contact from the leader for this long (randomized up
	// to twice) starts an election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate without a result for this long (randomized) tries again.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader that has not heard from a quorum for this long steps down.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: the longest a follower waits to learn of a commit when no writes flow.
	CommitTimeout time.Duration
}

// LANTiming suits masters on one LAN (round trips well under 10 ms). A dead leader is noticed
// after 400 to 800 ms without heartbeats, a new one is usually elected in one round, and it
// commits its first write about 0.7 s after the old one died (BenchmarkLeaderFailover: median
// 0.7 s, worst under 1 s, on 2 cores). The lease equals the heartbeat timeout, so a leader busy
// compacting its log is not deposed by its own impatience. hashicorp/raft's defaults (1 s, 1 s,
// 500 ms) take about twice as long to fail over.
func LANTiming() Timing {
	return Timing{
		HeartbeatTimeout:   400 * time.Millisecond,
		ElectionTimeout:    400 * time.Millisecond,
		LeaderLeaseTimeout: 400 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
	}
}

// Config configures a Store.
type Config struct {
	// ID is this server's raft id; it must stay the same across restarts of one data dir.
	ID string
	// Dir holds raft.db (log and stable store in bbolt) and snapshots/.
	Dir string
	// BindAddr is the raft TCP address, host:port.
	BindAddr string
	// AdvertiseAddr is the address other masters dial; default BindAddr, which then must not be
	// unspecified (0.0.0.0).
	AdvertiseAddr string
	// Appliers apply the commands of each namespace. Every master must register the same ones.
	Appliers map[string]Applier
	Logger   *slog.Logger
	// Timing defaults to LANTiming.
	Timing Timing
	// Now is the proposer's clock for Command.Time (default time.Now).
	Now func() time.Time
	// DedupeWindow defaults to DefaultDedupeWindow.
	DedupeWindow time.Duration
	// SnapshotThreshold is how many new entries trigger a snapshot (default 8192), checked every
	// SnapshotInterval (default 30 s). TrailingLogs entries stay in the log after one (default
	// 10240) so a briefly absent follower catches up from the log, not a snapshot.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// MaxBatch caps the commands packed into one raft entry (default 512).
	MaxBatch int
	// StreamLayer, when set, carries raft's traffic instead of a TCP listener on BindAddr; tests
	// use it to cut a server off from the others. AdvertiseAddr must then be its address.
	StreamLayer hraft.StreamLayer
	// TLSServer and TLSClient, when set, carry raft's traffic over TLS on BindAddr: servers
	// accept with TLSServer (which should ask for and verify the peer's certificate) and dial
	// with TLSClient.
	TLSServer, TLSClient *tls.Config
	// Faults, when set, can cut this server off the others (the chaos harness).
	Faults *faultnet.Switch
	// ObserveCommit, when set, is told how long each write took on the leader, from Apply until
	// its command was committed and applied (real time, not Now's), for metrics. Writes that
	// fail to commit are not observed. It is called on the goroutine that hands out results:
	// it must be quick and must not block.
	ObserveCommit func(time.Duration)
}

// maxBatchBytes caps the data packed into one raft entry.
const maxBatchBytes = 1 << 20

// maxInflight caps the entries proposed and not yet committed. A lone writer never waits for
// a slot; many writers find it taken, and their proposals share the next entry. One is best on
// 2 cores: 64 writers commit ~32 commands per entry and ~18,000 writes/s, where 4 slots give
// 9 per entry and ~15,000/s, and no limit gives 1 per entry and ~8,000/s.
const maxInflight = 1

// Result is what a committed command came back with.
type Result struct {
	Index     uint64 // raft index of the entry that carried it
	Value     any    // what the Applier returned
	Duplicate bool   // the command's ID had been applied before; nothing changed now
}

// Server is one member of the raft configuration.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Stats are raft's numbers for this server.
type Stats struct {
	State        string        `json:"state"` // leader, follower, candidate or shutdown
	Term         uint64        `json:"term"`
	LastIndex    uint64        `json:"last_index"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	LastContact  time.Duration `json:"last_contact_ns"` // since the leader was last heard from; 0 on the leader
}

// Store is the replicated state: hashicorp/raft with its log in bbolt and an FSM of namespaced
// keys. Writes go through Apply on the leader; reads through View on any server.
type Store struct {
	cfg       Config
	logger    *slog.Logger
	raft      *hraft.Raft
	fsm       *fsm
	bolt      *raftboltdb.BoltStore
	transport *hraft.NetworkTransport
	hasState  bool

	proposeCh chan *proposal
	inflight  chan inflightBatch
	slots     chan struct{} // one token per entry proposed and not yet committed
	notifyCh  chan bool
	leaderCh  chan bool
	ready     atomic.Bool // leader and caught up (its barrier went through)

	readMu   sync.Mutex // guards nextRead
	nextRead *readRound // the round the next linearizable reads join
	readKick chan struct{}

	closeOnce sync.Once
	closing   chan struct{}
	wg        sync.WaitGroup
}

type proposal struct {
	cmd   Command
	done  chan proposalResult // buffered 1
	start time.Time           // when Apply was called, for ObserveCommit
}

type proposalResult struct {
	res Result
	err error
}

type inflightBatch struct {
	future hraft.ApplyFuture
	batch  []*proposal
}

// Open opens (or creates) the data in cfg.Dir and starts raft. A new store has no
// configuration: Bootstrap it, or have the leader of a cluster add it.
func Open(cfg Config) (*Store, error) {
	if cfg.ID == "" {
		return nil, errors.New("raft: config: ID is empty")
	}
	if cfg.Dir == "" {
		return nil, errors.New("raft: config: Dir is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = LANTiming()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DedupeWindow == 0 {
		cfg.DedupeWindow = DefaultDedupeWindow
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = 30 * time.Second
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = 10240
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 512
	}
	advertise := cfg.AdvertiseAddr
	if advertise == "" {
		advertise = cfg.BindAddr
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raft: advertise address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft: advertise address %q is not one other masters can dial; set an advertise address", advertise)
	}
	var advAddr net.Addr = adv
	if adv.Port == 0 {
		advAddr = nil // port 0: advertise the port the listener gets
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: data dir: %w", err)
	}

	logger := cfg.Logger
	hlog := newHCLogger("raft", logger)

	bolt, err := openBolt(filepath.Join(cfg.Dir, "raft.db"))
	if err != nil {
		return nil, err
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raft: snapshot store in %s: %w", cfg.Dir, err)
	}
	hasState, err := hraft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raft: read state in %s: %w", cfg.Dir, err)
	}
	var transport *hraft.NetworkTransport
	if cfg.StreamLayer == nil && (cfg.TLSServer != nil || cfg.Faults != nil) {
		var layer hraft.StreamLayer
		if layer, err = newNetLayer(cfg.BindAddr, advAddr, cfg.TLSServer, cfg.TLSClient, cfg.Faults); err != nil {
			bolt.Close()
			return nil, fmt.Errorf("raft: listen on %s: %w", cfg.BindAddr, err)
		}
		transport = hraft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog)
	} else if cfg.StreamLayer != nil {
		transport = hraft.NewNetworkTransportWithLogger(cfg.StreamLayer, 3, 10*time.Second, hlog)
	} else {
		transport, err = hraft.NewTCPTransportWithLogger(cfg.BindAddr, advAddr, 3, 10*time.Second, hlog)
	}
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raft: listen on %s: %w", cfg.BindAddr, err)
	}

	s := &Store{
		cfg:       cfg,
		logger:    logger,
		fsm:       newFSM(cfg.Appliers, cfg.DedupeWindow, logger),
		bolt:      bolt,
		transport: transport,
		hasState:  hasState,
		proposeCh: make(chan *proposal, 4096),
		inflight:  make(chan inflightBatch, maxInflight),
		slots:     make(chan struct{}, maxInflight),
		notifyCh:  make(chan bool, 16),
		leaderCh:  make(chan bool, 16),
		readKick:  make(chan struct{}, 1),
		closing:   make(chan struct{}),
	}

	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.Timing.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Timing.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 512
	// No buffered apply channel: a future left in that buffer when raft shuts down is never
	// answered, and its waiter would hang. The batcher packs commands itself, and raft's leader
	// loop still group-commits the entries that queue up.
	rc.BatchApplyCh = false
	rc.NotifyCh = s.notifyCh
	// The cache keeps recent entries in memory so replicating them to followers does not read
	// them back from bbolt.
	logs, err := hraft.NewLogCache(4096, bolt)
	if err != nil {
		transport.Close()
		bolt.Close()
		return nil, fmt.Errorf("raft: log cache: %w", err)
	}
	r, err := newRaft(rc, s.fsm, logs, bolt, snaps, transport)
	if err != nil {
		transport.Close()
		bolt.Close()
		return nil, fmt.Errorf("raft: start from %s: %w (if its files are damaged, restore the data dir from a backup, or remove it and add this master to the cluster again)", cfg.Dir, err)
	}
	s.raft = r

	s.wg.Add(4)
	go s.runReads()
	go s.runBatcher()
	go s.runWaiter()
	go s.runLeadership()
	return s, nil
}

// newRaft starts hashicorp/raft; a panic while it replays damaged state becomes an error.
func newRaft(rc *hraft.Config, f *fsm, logs hraft.LogStore, stable hraft.StableStore, snaps hraft.SnapshotStore, tr hraft.Transport) (r *hraft.Raft, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("damaged log or snapshot: %v", p)
		}
	}()
	return hraft.NewRaft(rc, f, logs, stable, snaps, tr)
}

// openBolt opens the log store, failing fast when another process holds it and saying plainly
// when the file is damaged.
func openBolt(path string) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("raft: log store %s is damaged (%v); restore the data dir from a backup, or remove it and add this master to the cluster again", path, p)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{
		Path: path,
		// No freelist sync: bbolt rebuilds the freelist on open instead of writing it on every
		// commit, which cuts the bytes each fsync of the log carries.
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is locked", ErrDataDirInUse, path)
	case err != nil:
		return nil, fmt.Errorf("raft: log store %s is damaged or unreadable (%v); restore the data dir from a backup, or remove it and add this master to the cluster again", path, err)
	}
	return store, nil
}

// HasState reports whether the data dir held raft state when the store was opened.
func (s *Store) HasState() bool { return s.hasState }

// Bootstrap makes the initial configuration: servers must be the same on every server that
// calls it (a single server bootstraps itself alone).
func (s *Store) Bootstrap(servers []Server) error {
	cfg := hraft.Configuration{}
	for _, sv := range servers {
		suffrage := hraft.Voter
		if !sv.Voter {
			suffrage = hraft.Nonvoter
		}
		cfg.Servers = append(cfg.Servers, hraft.Server{Suffrage: suffrage, ID: hraft.ServerID(sv.ID), Address: hraft.ServerAddress(sv.Address)})
	}
	err := s.raft.BootstrapCluster(cfg).Error()
	if errors.Is(err, hraft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	if err != nil {
		return fmt.Errorf("raft: bootstrap: %w", err)
	}
	return nil
}

// Apply proposes cmd and waits until it is committed and applied, ctx ends, or leadership is
// lost. It only works on the leader. Commands from concurrent callers are packed into shared
// raft entries, and raft writes entries that queue up with one fsync.
func (s *Store) Apply(ctx context.Context, cmd Command) (Result, error) {
	if s.raft.State() != hraft.Leader {
		return Result{}, s.notLeader()
	}
	if cmd.Time == 0 {
		cmd.Time = s.cfg.Now().UnixNano()
	}
	p := &proposal{cmd: cmd, done: make(chan proposalResult, 1), start: time.Now()}
	select {
	case s.proposeCh <- p:
	case <-ctx.Done():
		return Result{}, ctx.Err() // not proposed: nothing happened
	case <-s.closing:
		return Result{}, ErrClosed
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%w: %w", ErrUnknownOutcome, ctx.Err())
	}
}

func (s *Store) notLeader() error {
	addr, id := s.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// runBatcher packs waiting proposals into raft entries. It does not wait for an entry to commit
// before proposing the next: raft pipelines them, and runWaiter hands out the results in order.
func (s *Store) runBatcher() {
	defer s.wg.Done()
	defer close(s.inflight)
	for {
		var first *proposal
		select {
		case first = <-s.proposeCh:
		case <-s.closing:
			s.failQueued()
			return
		}
		// Wait for a free pipeline slot before packing: while the slots are full, proposals
		// pile up in proposeCh and the next entry carries all of them.
		select {
		case s.slots <- struct{}{}:
		case <-s.closing:
			deliver([]*proposal{first}, proposalResult{err: ErrClosed})
			s.failQueued()
			return
		}
		batch := []*proposal{first}
		size := len(first.cmd.Data)
	fill:
		for len(batch) < s.cfg.MaxBatch && size < maxBatchBytes {
			select {
			case p := <-s.proposeCh:
				batch = append(batch, p)
				size += len(p.cmd.Data)
			default:
				break fill
			}
		}
		cmds := make([]Command, len(batch))
		for i, p := range batch {
			cmds[i] = p.cmd
		}
		f := s.raft.Apply(encodeBatch(cmds), 10*time.Second)
		select {
		case s.inflight <- inflightBatch{future: f, batch: batch}:
		case <-s.closing:
			deliver(batch, proposalResult{err: ErrUnknownOutcome})
			s.failQueued()
			return
		}
	}
}

func (s *Store) failQueued() {
	for {
		select {
		case p := <-s.proposeCh:
			p.done <- proposalResult{err: ErrClosed}
		default:
			return
		}
	}
}

func deliver(batch []*proposal, r proposalResult) {
	for _, p := range batch {
		p.done <- r
	}
}

// runWaiter waits for each proposed entry in order and gives every proposer its own result.
func (s *Store) runWaiter() {
	defer s.wg.Done()
	for b := range s.inflight {
		err := b.future.Error()
		<-s.slots
		if err != nil {
			deliver(b.batch, proposalResult{err: s.applyError(err)})
			continue
		}
		results, ok := b.future.Response().([]cmdResult)
		if !ok || len(results) != len(b.batch) {
			err, _ := b.future.Response().(error)
			deliver(b.batch, proposalResult{err: fmt.Errorf("raft: entry %d was not applied: %v", b.future.Index(), err)})
			continue
		}
		now := time.Now()
		for i, p := range b.batch {
			if s.cfg.ObserveCommit != nil {
				s.cfg.ObserveCommit(now.Sub(p.start))
			}
			r := results[i]
			p.done <- proposalResult{res: Result{Index: b.future.Index(), Value: r.value, Duplicate: r.duplicate}, err: r.err}
		}
	}
}

// applyError maps raft's errors to the store's: "not the leader" when the entry was never
// appended, "unknown outcome" when it was and may still commit.
func (s *Store) applyError(err error) error {
	switch {
	case errors.Is(err, hraft.ErrNotLeader):
		return s.notLeader()
	case errors.Is(err, hraft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrClosed)
	default: // ErrLeadershipLost, ErrEnqueueTimeout and the like
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
}

// Consistency says how fresh a read must be.
type Consistency int

const (
	// Stale reads serve this server's applied state, whatever its lag (see Staleness).
	Stale Consistency = iota
	// Linearizable reads reflect every write committed before the read began. They need the
	// leader, which commits a barrier (shared by concurrent reads) before answering.
	Linearizable
)

// View returns the state to read, as fresh as c asks.
func (s *Store) View(ctx context.Context, c Consistency) (*View, error) {
	if c == Stale {
		v, _ := s.fsm.view()
		return v, nil
	}
	if s.raft.State() != hraft.Leader || !s.ready.Load() {
		return nil, s.notLeader()
	}
	if err := s.readBarrier(ctx); err != nil {
		return nil, err
	}
	v, _ := s.fsm.view()
	return v, nil
}

// readRound is one barrier shared by the linearizable reads that joined it.
type readRound struct {
	done chan struct{}
	err  error
}

// readBarrier returns once a barrier proposed after the call began has committed and every
// entry before it has been applied. A committed barrier proves this server still led when the
// read began (a quorum accepted an entry of its term) and that its state holds every write
// acknowledged before. Raft does not hand no-op and barrier entries to the FSM, so the FSM's
// own index cannot tell when a read index is reached; the barrier can. Reads that arrive while
// one barrier is in flight share the next, so many readers cost one entry per round trip.
func (s *Store) readBarrier(ctx context.Context) error {
	s.readMu.Lock()
	r := s.nextRead
	if r == nil {
		r = &readRound{done: make(chan struct{})}
		s.nextRead = r
		select {
		case s.readKick <- struct{}{}:
		default:
		}
	}
	s.readMu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
}

// runReads proposes one barrier per round of waiting linearizable reads.
func (s *Store) runReads() {
	defer s.wg.Done()
	for {
		select {
		case <-s.readKick:
		case <-s.closing:
			return
		}
		s.readMu.Lock()
		r := s.nextRead
		s.nextRead = nil
		s.readMu.Unlock()
		if r == nil {
			continue
		}
		if err := s.raft.Barrier(10 * time.Second).Error(); err != nil {
			r.err = s.notLeader()
			if !errors.Is(err, hraft.ErrNotLeader) && !errors.Is(err, hraft.ErrLeadershipLost) {
				r.err = fmt.Errorf("raft: linearizable read: %w", err)
			}
		}
		close(r.done)
	}
}

// waitApplied returns a view once index has been applied.
func (s *Store) waitApplied(ctx context.Context, index uint64) (*View, error) {
	for {
		v, changed := s.fsm.view()
		if v.index >= index {
			return v, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closing:
			return nil, ErrClosed
		}
	}
}

// runLeadership turns raft's leadership notices into LeaderEvents: true once this server leads
// and has applied everything its predecessors committed (a barrier), false when it stops.
func (s *Store) runLeadership() {
	defer s.wg.Done()
	defer close(s.leaderCh)
	for {
		var leader bool
		select {
		case leader = <-s.notifyCh:
		case <-s.closing:
			return
		}
		if !leader {
			if s.ready.Swap(false) {
				s.emitLeader(false)
			}
			continue
		}
		// A new leader's commit index may trail what its predecessor committed until an entry of
		// its own term commits; the barrier makes sure it has, and that the FSM has applied it.
		if err := s.raft.Barrier(30 * time.Second).Error(); err != nil {
			s.logger.Warn("won an election but could not catch up", "err", err)
			continue
		}
		if s.raft.State() == hraft.Leader && !s.ready.Swap(true) {
			s.emitLeader(true)
		}
	}
}

func (s *Store) emitLeader(v bool) {
	select {
	case s.leaderCh <- v:
	case <-s.closing:
	}
}

// LeaderEvents delivers true when this server becomes a leader ready to serve (caught up), and
// false when it stops being one. It has one consumer, which must keep up; it is closed when the
// store closes.
func (s *Store) LeaderEvents() <-chan bool { return s.leaderCh }

// IsLeader reports whether this server leads and has caught up.
func (s *Store) IsLeader() bool { return s.ready.Load() && s.raft.State() == hraft.Leader }

// Leader returns the id and raft address of the leader as this server knows it (empty if none).
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// ID is this server's raft id.
func (s *Store) ID() string { return s.cfg.ID }

// Addr is the raft address other servers dial.
func (s *Store) Addr() string { return string(s.transport.LocalAddr()) }

// Stats returns raft's numbers for this server.
func (s *Store) Stats() Stats {
	st := Stats{
		State:        stateName(s.raft.State()),
		Term:         s.raft.CurrentTerm(),
		LastIndex:    s.raft.LastIndex(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.raft.AppliedIndex(),
	}
	if st.State != "leader" {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		} else {
			st.LastContact = -1
		}
	}
	return st
}

// AppliedIndex is the index of the last command the FSM applied (raft's own applied index,
// in Stats, also counts the no-op and barrier entries the FSM never sees).
func (s *Store) AppliedIndex() uint64 {
	v, _ := s.fsm.view()
	return v.index
}

func stateName(st hraft.RaftState) string {
	switch st {
	case hraft.Leader:
		return "leader"
	case hraft.Follower:
		return "follower"
	case hraft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}

// Servers returns the current raft configuration.
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft: configuration: %w", err)
	}
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{ID: string(sv.ID), Address: string(sv.Address), Voter: sv.Suffrage == hraft.Voter})
	}
	return out, nil
}

// AddVoter adds a server to the cluster (or updates its address). Leader only.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	if err := s.raft.AddVoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, timeoutOf(ctx)).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("raft: add %s at %s: %w", id, addr, err)
	}
	return nil
}

// RemoveServer removes a server from the cluster. Leader only.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	if err := s.raft.RemoveServer(hraft.ServerID(id), 0, timeoutOf(ctx)).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("raft: remove %s: %w", id, err)
	}
	return nil
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// Snapshot takes a snapshot now and compacts the log behind it.
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raft: snapshot: %w", err)
	}
	return nil
}

// LeadershipTransfer hands leadership to another voter (for a graceful leave).
func (s *Store) LeadershipTransfer() error {
	return s.raft.LeadershipTransfer().Error()
}

// LeadershipTransferTo hands leadership to the voter of that id and address (one of Servers):
// it waits until the voter has caught up, tells it to campaign at once, and returns when it
// leads, or with an error when it did not within an election timeout. Leader only.
func (s *Store) LeadershipTransferTo(id, addr string) error {
	if err := s.raft.LeadershipTransferToServer(hraft.ServerID(id), hraft.ServerAddress(addr)).Error(); err != nil {
		if errors.Is(err, hraft.ErrNotLeader) {
			return s.notLeader()
		}
		return fmt.Errorf("raft: hand leadership to %s: %w", id, err)
	}
	return nil
}

// Close stops raft and closes the log. Proposals waiting get ErrClosed or ErrUnknownOutcome.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.raft.Shutdown().Error()
		close(s.closing)
		s.wg.Wait()
		if cerr := s.transport.Close(); cerr != nil && err == nil {
			err = cerr
		}
		if cerr := s.bolt.Close(); cerr != nil && err == nil {
			err = cerr
		}
	})
	return err
}

// hcLogWriter carries hashicorp/raft's hclog lines into slog, keeping their level.
type hcLogWriter struct{ logger *slog.Logger }

func (w hcLogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for tag, l := range map[string]slog.Level{"[ERROR]": slog.LevelError, "[WARN]": slog.LevelWarn, "[DEBUG]": slog.LevelDebug, "[TRACE]": slog.LevelDebug} {
		if i := bytes.Index(p, []byte(tag)); i >= 0 {
			level = l
			line = string(bytes.TrimSpace(p[i+len(tag):]))
			break
		}
	}
	w.logger.Log(context.Background(), level, line)
	return len(p), nil
}

func newHCLogger(name string, logger *slog.Logger) hclog.Logger {
	level := hclog.Info
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        name,
		Level:       level,
		Output:      hcLogWriter{logger: logger.With("component", name)},
		DisableTime: true,
	})
}
