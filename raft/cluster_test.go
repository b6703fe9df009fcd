package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// cutLayer is raft's stream layer over a loopback TCP listener that a test can cut off: while
// cut, it dials nothing, accepts nothing and has closed every connection it had.
type cutLayer struct {
	net.Listener
	cut   atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func newCutLayer(t testing.TB, addr string) *cutLayer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return &cutLayer{Listener: ln}
}

func (l *cutLayer) track(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = append(l.conns, c)
}

func (l *cutLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.cut.Load() {
			c.Close()
			continue
		}
		l.track(c)
		return c, nil
	}
}

func (l *cutLayer) Dial(addr hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.cut.Load() {
		return nil, errors.New("cut off")
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	l.track(c)
	return c, nil
}

func (l *cutLayer) Cut() {
	l.cut.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func (l *cutLayer) Heal() { l.cut.Store(false) }

type testNode struct {
	id, dir, addr string
	layer         *cutLayer
	store         *Store
}

type testCluster struct {
	t     testing.TB
	nodes []*testNode
	tune  func(*Config)
}

func testLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		// Failover benchmarks log connection errors by design; keep benchstat's input clean.
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// newCluster starts n servers on loopback, each with its own data dir, and bootstraps them
// together; it returns once one of them leads.
func newCluster(t testing.TB, n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, tune: tune}
	var servers []Server
	for i := 0; i < n; i++ {
		nd := &testNode{id: fmt.Sprintf("m%d", i+1), dir: t.TempDir()}
		nd.layer = newCutLayer(t, "127.0.0.1:0")
		nd.addr = nd.layer.Addr().String()
		c.nodes = append(c.nodes, nd)
		servers = append(servers, Server{ID: nd.id, Address: nd.addr, Voter: true})
	}
	for _, nd := range c.nodes {
		c.open(nd)
	}
	for _, nd := range c.nodes {
		if err := nd.store.Bootstrap(servers); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd.store != nil {
				nd.store.Close()
			}
		}
	})
	c.leader()
	return c
}

func (c *testCluster) open(nd *testNode) {
	c.t.Helper()
	if nd.layer == nil {
		nd.layer = newCutLayer(c.t, nd.addr)
	}
	cfg := Config{
		ID:          nd.id,
		Dir:         nd.dir,
		BindAddr:    nd.addr,
		StreamLayer: nd.layer,
		Appliers:    map[string]Applier{"kv": kvApplier()},
		Logger:      testLogger(c.t).With("node", nd.id),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	nd.store = s
}

// kill stops a server abruptly, as a crash would (its data dir stays).
func (c *testCluster) kill(nd *testNode) {
	nd.store.Close()
	nd.store = nil
	nd.layer = nil
}

// leader waits up to 10 s for exactly one ready leader among the running servers.
func (c *testCluster) leader() *testNode {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var leaders []*testNode
		for _, nd := range c.nodes {
			if nd.store != nil && nd.store.IsLeader() {
				leaders = append(leaders, nd)
			}
		}
		if len(leaders) == 1 {
			return leaders[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no single leader within 10s")
	return nil
}

// onLeader runs a membership change on the leader, again on the next leader when the leader
// is deposed meanwhile (on a loaded machine a leader that misses its lease steps down, and the
// change's outcome is unknown; adding or removing a server again is harmless), for up to 30 s.
func (c *testCluster) onLeader(change func(*Store) error) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := change(c.leader().store)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal(err)
		}
		c.t.Logf("membership change: %v; again on the leader", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, nd := range c.nodes {
		if nd.store != nil {
			out = append(out, nd)
		}
	}
	return out
}

// converge waits until every running server has applied the leader's commit index, then
// returns the dumps of their states, which must all be equal.
func (c *testCluster) converge() []byte {
	c.t.Helper()
	lead := c.leader()
	// A barrier on the leader makes its commit index cover everything written so far.
	if err := lead.store.raft.Barrier(10 * time.Second).Error(); err != nil {
		c.t.Fatal(err)
	}
	want := lead.store.AppliedIndex()
	var dumps [][]byte
	for _, nd := range c.running() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := nd.store.waitApplied(ctx, want)
		cancel()
		if err != nil {
			c.t.Fatalf("%s did not reach index %d: %v", nd.id, want, err)
		}
		dumps = append(dumps, dump(v))
	}
	for i := 1; i < len(dumps); i++ {
		if !bytes.Equal(dumps[0], dumps[i]) {
			c.t.Fatalf("servers' states differ:\n%s\n---\n%s", trim(dumps[0]), trim(dumps[i]))
		}
	}
	return dumps[0]
}

func trim(b []byte) []byte {
	if len(b) > 400 {
		return append(b[:400:400], "..."...)
	}
	return b
}

// dump renders the owners' state (not the store's own bookkeeping or indexes) as text.
func dump(v *View) []byte {
	var buf bytes.Buffer
	v.List("kv", "", func(k string, d []byte) bool {
		fmt.Fprintf(&buf, "%s=%s\n", k, d)
		return true
	})
	return buf.Bytes()
}

// apply writes cmd through whichever server leads, retrying (with one ID, so at most once)
// across leader changes for up to 10 s.
func (c *testCluster) apply(cmd Command) Result {
	c.t.Helper()
	if cmd.ID == "" {
		cmd.ID = fmt.Sprintf("%s-%d", cmd.Data, time.Now().UnixNano())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := c.leader().store.Apply(ctx, cmd)
		cancel()
		if err == nil {
			return res
		}
		if time.Now().After(deadline) || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnknownOutcome)) {
			c.t.Fatalf("apply %s: %v", cmd.Data, err)
		}
	}
}

func put(key, val string) Command {
	return Command{Namespace: "kv", Type: "put", Data: []byte(key + "=" + val)}
}

func TestSingleServerBootstrapsWritesAndRestarts(t *testing.T) {
	c := newCluster(t, 1, nil)
	nd := c.leader()
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := nd.store.Apply(ctx, put(fmt.Sprintf("k%03d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	v, err := nd.store.View(ctx, Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.Count("kv", "k"); n != 100 {
		t.Fatalf("linearizable read sees %d keys, want 100", n)
	}
	before := c.converge()

	c.kill(nd)
	c.open(nd)
	if !nd.store.HasState() {
		t.Fatal("a reopened data dir reports no state")
	}
	if err := nd.store.Bootstrap([]Server{{ID: nd.id, Address: nd.addr, Voter: true}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("bootstrap of a restarted server: %v, want ErrAlreadyBootstrapped", err)
	}
	if after := c.converge(); !bytes.Equal(before, after) {
		t.Fatal("state after restart differs")
	}
}

func TestObserveCommitSeesEveryCommittedWrite(t *testing.T) {
	var (
		mu       sync.Mutex
		observed []time.Duration
	)
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.ObserveCommit = func(d time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			observed = append(observed, d)
		}
	})
	nd := c.leader()
	ctx := context.Background()
	began := time.Now()
	for i := 0; i < 5; i++ {
		if _, err := nd.store.Apply(ctx, put(fmt.Sprintf("k%d", i), "v")); err != nil {
			t.Fatal(err)
		}
	}
	// A command its Applier refuses is committed all the same, and so observed.
	if _, err := nd.store.Apply(ctx, Command{Namespace: "kv", Type: "fail", Data: []byte("x=y")}); err == nil {
		t.Fatal("the refused command succeeded")
	}
	took := time.Since(began)
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 6 {
		t.Fatalf("observed %d writes, want 6: %v", len(observed), observed)
	}
	for _, d := range observed {
		if d <= 0 || d > took {
			t.Errorf("a write took %v, want more than 0 and at most the %v all six took", d, took)
		}
	}
}

func TestFollowerRefusesWritesAndNamesTheLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	for _, nd := range c.nodes {
		if nd == lead {
			continue
		}
		_, err := nd.store.Apply(context.Background(), put("k", "v"))
		var nle *NotLeaderError
		if !errors.As(err, &nle) || nle.LeaderID != lead.id || nle.LeaderAddr != lead.addr {
			t.Fatalf("apply on follower %s: %v, want NotLeaderError naming %s", nd.id, err, lead.id)
		}
		if _, err := nd.store.View(context.Background(), Linearizable); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("linearizable read on a follower: %v", err)
		}
		if _, err := nd.store.View(context.Background(), Stale); err != nil {
			t.Fatalf("stale read on a follower: %v", err)
		}
	}
}

// TestLeaderKilledDuringWrites: writers retry every write that fails with the same ID until
// it is acknowledged. Every acknowledged write must be on every survivor, exactly once.
func TestLeaderKilledDuringWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	const writers = 16
	var (
		mu     sync.Mutex
		acked  = map[string]bool{}
		stop   atomic.Bool
		failed atomic.Int64
	)
	write := func(w int) {
		for i := 0; !stop.Load(); i++ {
			key := fmt.Sprintf("w%02d-%05d", w, i)
			cmd := Command{ID: key, Namespace: "kv", Type: "incr", Data: []byte(key)}
			for !stop.Load() {
				c.nodesMu().Lock()
				var target *Store
				for _, nd := range c.nodes {
					if nd.store != nil && nd.store.IsLeader() {
						target = nd.store
					}
				}
				c.nodesMu().Unlock()
				if target == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := target.Apply(ctx, cmd)
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = true
					mu.Unlock()
					break
				}
				failed.Add(1)
			}
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); write(w) }()
	}
	time.Sleep(300 * time.Millisecond)
	old := c.leader()
	c.nodesMu().Lock()
	c.kill(old)
	killed := time.Now()
	c.nodesMu().Unlock()
	newLead := c.leader()
	t.Logf("killed %s; %s leads after %v", old.id, newLead.id, time.Since(killed).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	state := c.converge()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	counts := map[string]string{}
	for _, line := range bytes.Split(bytes.TrimSpace(state), []byte("\n")) {
		k, v, _ := bytes.Cut(line, []byte("="))
		counts[string(k)] = string(v)
	}
	for key := range acked {
		if got := counts[key]; got != "1" {
			t.Errorf("acknowledged write %s applied %q times, want 1", key, got)
		}
	}
	for key, n := range counts {
		if n != "1" {
			t.Errorf("write %s applied %s times", key, n)
		}
	}
	t.Logf("%d writes acknowledged, %d attempts failed and were retried", len(acked), failed.Load())
}

var clusterMu sync.Mutex

// nodesMu guards c.nodes' stores while a test kills servers under running writers.
func (c *testCluster) nodesMu() *sync.Mutex { return &clusterMu }

func TestRestartAllServers(t *testing.T) {
	c := newCluster(t, 3, nil)
	for i := 0; i < 500; i++ {
		c.apply(put(fmt.Sprintf("k%04d", i), fmt.Sprint(i)))
	}
	before := c.converge()
	for _, nd := range c.nodes {
		c.kill(nd)
	}
	for _, nd := range c.nodes {
		c.open(nd)
	}
	if after := c.converge(); !bytes.Equal(before, after) {
		t.Fatal("state after restarting every server differs")
	}
	// And the restarted cluster takes writes.
	c.apply(put("after", "restart"))
}

// TestSnapshotCompactionAndRestore writes a large state, snapshots and compacts the log, then
// restarts a server (snapshot + log replay) and adds a new one that can only catch up from a
// snapshot sent over the network.
func TestSnapshotCompactionAndRestore(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.TrailingLogs = 64
		cfg.SnapshotThreshold = 1 << 30 // only when asked
	})
	lead := c.leader()
	ctx := context.Background()
	value := string(bytes.Repeat([]byte("x"), 200))
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if _, err := lead.store.Apply(ctx, put(fmt.Sprintf("big/%02d/%04d", w, i), value)); err != nil {
					c.apply(put(fmt.Sprintf("big/%02d/%04d", w, i), value))
				}
			}
		}()
	}
	wg.Wait()
	c.converge()
	for _, nd := range c.nodes {
		if err := nd.store.Snapshot(); err != nil {
			t.Fatalf("%s: %v", nd.id, err)
		}
	}
	for i := 0; i < 200; i++ { // after the snapshot: these come from the log on replay
		c.apply(put(fmt.Sprintf("late/%03d", i), "y"))
	}
	lead = c.leader()
	if first, _ := lead.store.bolt.FirstIndex(); first <= 1 {
		t.Fatalf("log not compacted: first index %d", first)
	}
	before := c.converge()

	var follower *testNode
	for _, nd := range c.nodes {
		if nd != lead {
			follower = nd
		}
	}
	c.kill(follower)
	c.open(follower)

	newbie := &testNode{id: "m4", dir: t.TempDir()}
	newbie.layer = newCutLayer(t, "127.0.0.1:0")
	newbie.addr = newbie.layer.Addr().String()
	c.nodes = append(c.nodes, newbie)
	c.open(newbie)
	c.onLeader(func(s *Store) error { return s.AddVoter(ctx, newbie.id, newbie.addr) })
	after := c.converge()
	if !bytes.Equal(before, after) {
		t.Fatal("state differs after restore")
	}
	v, _ := newbie.store.View(ctx, Stale)
	if n := v.Count("kv", "big/"); n != 20000 {
		t.Fatalf("new server has %d big keys, want 20000", n)
	}
	servers, err := c.leader().store.Servers()
	if err != nil || len(servers) != 4 {
		t.Fatalf("servers = %v, %v", servers, err)
	}
	c.onLeader(func(s *Store) error { return s.RemoveServer(ctx, newbie.id) })
	if servers, _ := c.leader().store.Servers(); len(servers) != 3 {
		t.Fatalf("after remove: %v", servers)
	}
}

func TestCutOffFollowerDoesNotLeadAMinority(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.leader()
	var cut *testNode
	for _, nd := range c.nodes {
		if nd != lead {
			cut = nd
			break
		}
	}
	cut.layer.Cut()
	deadline := time.Now().Add(3 * time.Second) // six heartbeat timeouts
	for time.Now().Before(deadline) {
		if st := cut.store.raft.State(); st == hraft.Leader {
			t.Fatal("a cut-off follower made itself leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The majority goes on.
	c.apply(put("during", "cut"))
	if c.leader() == cut {
		t.Fatal("the cut-off follower leads")
	}
	cut.layer.Heal()
	state := c.converge()
	if !bytes.Contains(state, []byte("during=cut")) {
		t.Fatal("the healed follower did not catch up")
	}
}

// TestLinearizableReadOnAFreshLeader: right after an election the newest entries are the new
// leader's no-op and barrier, which the FSM never sees; a linearizable read must not wait for
// them in vain, and must see every write acknowledged before.
func TestLinearizableReadOnAFreshLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	for i := 0; i < 20; i++ {
		c.apply(put(fmt.Sprintf("k%02d", i), "v"))
	}
	old := c.leader()
	c.kill(old)
	lead := c.leader()
	var wg sync.WaitGroup
	for r := 0; r < 16; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			v, err := lead.store.View(ctx, Linearizable)
			if err != nil {
				t.Errorf("linearizable read on the new leader: %v", err)
				return
			}
			if n := v.Count("kv", "k"); n != 20 {
				t.Errorf("linearizable read sees %d keys, want 20", n)
			}
		}()
	}
	wg.Wait()
}
