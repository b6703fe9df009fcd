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

// Open opens (or creates) the data in cfg.Dir and starts raft. A new store has no
// configuration: Bootstrap it, or have the leader of a cluster add it.
func Open(cfg Config) (*Store, error) {
	cfg, advAddr, err := cfg.withDefaults()
	if err != nil {
		return nil, err
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
	transport, err := newTransport(cfg, advAddr, hlog)
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

	// The cache keeps recent entries in memory so replicating them to followers does not read
	// them back from bbolt.
	logs, err := hraft.NewLogCache(4096, bolt)
	if err != nil {
		transport.Close()
		bolt.Close()
		return nil, fmt.Errorf("raft: log cache: %w", err)
	}
	r, err := newRaft(raftConfig(cfg, hlog, s.notifyCh), s.fsm, logs, bolt, snaps, transport)
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

// withDefaults checks the config and fills in its defaults; it answers the address to
// advertise to the other servers (nil: the one the listener gets, for port 0).
func (cfg Config) withDefaults() (Config, net.Addr, error) {
	if cfg.ID == "" {
		return cfg, nil, errors.New("raft: config: ID is empty")
	}
	if cfg.Dir == "" {
		return cfg, nil, errors.New("raft: config: Dir is empty")
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
		return cfg, nil, fmt.Errorf("raft: advertise address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return cfg, nil, fmt.Errorf("raft: advertise address %q is not one other masters can dial; set an advertise address", advertise)
	}
	if adv.Port == 0 {
		return cfg, nil, nil // port 0: advertise the port the listener gets
	}
	return cfg, adv, nil
}

// newTransport listens for the other servers: plain TCP, or a stream layer of the config's
// (tests), or one with TLS or injected faults.
func newTransport(cfg Config, advAddr net.Addr, hlog hclog.Logger) (*hraft.NetworkTransport, error) {
	switch {
	case cfg.StreamLayer != nil:
		return hraft.NewNetworkTransportWithLogger(cfg.StreamLayer, 3, 10*time.Second, hlog), nil
	case cfg.TLSServer != nil || cfg.Faults != nil:
		layer, err := newNetLayer(cfg.BindAddr, advAddr, cfg.TLSServer, cfg.TLSClient, cfg.Faults)
		if err != nil {
			return nil, err
		}
		return hraft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog), nil
	default:
		return hraft.NewTCPTransportWithLogger(cfg.BindAddr, advAddr, 3, 10*time.Second, hlog)
	}
}

// raftConfig is hashicorp/raft's config for this server.
func raftConfig(cfg Config, hlog hclog.Logger, notify chan bool) *hraft.Config {
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
	rc.NotifyCh = notify
	return rc
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
