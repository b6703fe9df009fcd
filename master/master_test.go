package master

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/raft"
)

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// running is one master running in the test process.
type running struct {
	m        *Master
	cancel   context.CancelFunc
	finished chan struct{} // closed when Run returned; err is then set
	err      error
	rec      *recorder
}

func (r *running) url(path string) string { return "http://" + r.m.HTTPAddr() + path }

// stop ends Run gracefully and returns what it returned.
func (r *running) stop() error {
	r.cancel()
	select {
	case <-r.finished:
		return r.err
	case <-time.After(20 * time.Second):
		// Where it hangs is what a reader of the failure needs.
		var dump strings.Builder
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		return fmt.Errorf("Run did not return within 20s; goroutines:\n%s", dump.String())
	}
}

// startMaster runs a master on loopback with ports picked by the kernel.
func startMaster(t *testing.T, dataDir string, expect int, join ...string) *running {
	t.Helper()
	return startMasterConfig(t, Config{DataDir: dataDir, BootstrapExpect: expect, Join: join})
}

// startMasterConfig runs a master of cfg on loopback, with ports picked by the kernel, logging
// warnings to t.Log unless cfg has a logger.
func startMasterConfig(t *testing.T, cfg Config) *running {
	t.Helper()
	rec := &recorder{}
	cfg.RaftAddr, cfg.GossipAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	cfg.GossipTiming = gossip.TimingLocal
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.RegisterLeaderService(rec)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{m: m, cancel: cancel, finished: make(chan struct{}), rec: rec}
	go func() { r.err = m.Run(ctx); close(r.finished) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("master %s: %v", m.id, err)
		}
	})
	return r
}

func getJSON(t *testing.T, url string, out any) http.Header {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	return resp.Header
}

// leaderOf waits until exactly one of ms leads and all the others know it.
func leaderOf(t *testing.T, ms ...*running) *running {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var lead *running
		n := 0
		for _, r := range ms {
			if r.m.store.IsLeader() {
				lead = r
				n++
			}
		}
		if n == 1 {
			agreed := true
			for _, r := range ms {
				if id, _ := r.m.store.Leader(); id != lead.m.id {
					agreed = false
				}
			}
			if agreed {
				return lead
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no agreed leader within 20s")
	return nil
}

// registeredAgent reads an agent of the registry from r's copy.
func registeredAgent(t *testing.T, r *running, id string) (api.Agent, bool) {
	t.Helper()
	v, err := r.m.store.View(context.Background(), raft.Stale)
	if err != nil {
		t.Fatal(err)
	}
	return registry.Agent(v, id)
}

// knowsLeaderHTTP says whether r knows the leader's API address (from its gossip metadata), so
// that it can forward to it.
func knowsLeaderHTTP(r *running) bool {
	id, _ := r.m.store.Leader()
	for _, mem := range r.m.gossip.Masters() {
		if mem.Meta.ID == id && mem.Meta.HTTP != "" {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOneMasterBootstrapsItself(t *testing.T) {
	r := startMaster(t, t.TempDir(), 0)
	leaderOf(t, r)
	var health map[string]any
	getJSON(t, r.url("/health"), &health)
	if health["status"] != "ok" || health["state"] != "leader" {
		t.Fatalf("/health = %v", health)
	}
	waitUntil(t, "leader services run", 5*time.Second, func() bool { running, _, _, _ := r.rec.snapshot(); return running == 1 })
	var v api.ClusterView
	getJSON(t, r.url("/v1/cluster"), &v)
	if v.Leader == nil || v.Leader.ID != r.m.id || v.Self.State != "leader" || len(v.Masters) != 1 || v.ClusterID == "" {
		t.Fatalf("/v1/cluster = %+v", v)
	}
}

// threeMasters starts a cluster of three masters founded through the first one's gossip, and
// names its leader and one follower.
func threeMasters(t *testing.T) (ms []*running, lead, follower *running) {
	t.Helper()
	first := startMaster(t, t.TempDir(), 3)
	seed := first.m.GossipAddr()
	ms = []*running{first, startMaster(t, t.TempDir(), 3, seed), startMaster(t, t.TempDir(), 3, seed)}
	lead = leaderOf(t, ms...)
	for _, r := range ms {
		if r != lead {
			follower = r
		}
	}
	return ms, lead, follower
}

// TestThreeMastersFormFailOverAndGrow is the replicated master's life: three masters found a
// cluster through gossip, a follower forwards writes, the leader dies and another takes over
// with the leader services, a fourth master joins and later leaves gracefully.
func TestThreeMastersFormFailOverAndGrow(t *testing.T) {
	ms, lead, follower := threeMasters(t)
	// A master that raft took in before it founded the cluster itself learns the cluster id
	// from the leader's gossip a moment later.
	waitUntil(t, "every master to know the cluster id", 10*time.Second, func() bool {
		for _, r := range ms {
			if r.m.ClusterID() == "" {
				return false
			}
		}
		return true
	})
	// Any master answers /v1/cluster with the same leader, every master's raft state and every
	// member.
	var v api.ClusterView
	h := getJSON(t, follower.url("/v1/cluster"), &v)
	if v.Leader == nil || v.Leader.ID != lead.m.id || v.Leader.HTTP != lead.m.HTTPAddr() {
		t.Fatalf("leader = %+v, want %s at %s", v.Leader, lead.m.id, lead.m.HTTPAddr())
	}
	if v.Self.ID != follower.m.id || v.Self.State != "follower" {
		t.Fatalf("self = %+v", v.Self)
	}
	states := map[string]int{}
	for _, mi := range v.Masters {
		states[mi.State]++
	}
	if len(v.Masters) != 3 || states["leader"] != 1 || states["follower"] != 2 || len(v.Members) != 3 {
		t.Fatalf("masters %+v members %+v", v.Masters, v.Members)
	}
	if h.Get(httpapi.HeaderLeader) != lead.m.id || h.Get(httpapi.HeaderKnownLeader) != "true" {
		t.Fatalf("staleness headers = %v", h)
	}
	// GET /v1/cluster/leader, what agents ask every second: the same leader, from any master.
	for _, r := range []*running{lead, follower} {
		var l api.LeaderInfo
		getJSON(t, r.url("/v1/cluster/leader"), &l)
		if l.ID != lead.m.id || l.HTTP != lead.m.HTTPAddr() || l.Address != lead.m.RaftAddr() {
			t.Fatalf("GET /v1/cluster/leader on %s = %+v, want %s at %s", r.m.id, l, lead.m.id, lead.m.HTTPAddr())
		}
	}
	// GET /v1/services without --dns: a master nobody asked before reads the view then, a
	// follower from the leader.
	for _, r := range []*running{follower, lead} {
		var doc api.Services
		waitUntil(t, "GET /v1/services on "+r.m.id, 10*time.Second, func() bool {
			resp, err := http.Get(r.url("/v1/services"))
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&doc) == nil
		})
		if doc.Leader != lead.m.id || doc.Index == 0 || doc.Services == nil {
			t.Fatalf("GET /v1/services on %s: %+v, want the leader's view", r.m.id, doc)
		}
	}
	for _, r := range ms {
		if r.m.ClusterID() != v.ClusterID || v.ClusterID == "" {
			t.Fatalf("cluster ids differ: %s vs %s", r.m.ClusterID(), v.ClusterID)
		}
	}

	// A write sent to a follower reaches the leader: the leader's answer (here a 404 for a
	// master that does not exist) comes back through the follower.
	req, _ := http.NewRequest(http.MethodDelete, follower.url("/v1/cluster/masters/nobody"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `no such master: \"nobody\"`) {
		t.Fatalf("forwarded DELETE = %d %s", resp.StatusCode, body)
	}
	var marathon map[string]string
	getJSON(t, follower.url("/v2/leader"), &marathon)
	if marathon["leader"] != lead.m.HTTPAddr() {
		t.Fatalf("/v2/leader = %v", marathon)
	}

	// Leader services run on the leader alone.
	waitUntil(t, "leader services on the leader", 5*time.Second, func() bool { n, _, _, _ := lead.rec.snapshot(); return n == 1 })
	for _, r := range ms {
		if n, _, _, _ := r.rec.snapshot(); r != lead && n != 0 {
			t.Fatalf("leader services run on follower %s", r.m.id)
		}
	}

	// The leader dies (no graceful leave); the others elect a new one, which starts the services.
	lead.m.Kill()
	lead.stop()
	var rest []*running
	for _, r := range ms {
		if r != lead {
			rest = append(rest, r)
		}
	}
	newLead := leaderOf(t, rest...)
	waitUntil(t, "leader services on the new leader", 5*time.Second, func() bool { n, _, _, _ := newLead.rec.snapshot(); return n == 1 })

	// A fourth master joins an existing cluster through any member and is added as a voter.
	fourth := startMaster(t, t.TempDir(), 0, newLead.m.GossipAddr())
	waitUntil(t, "the fourth master is a voter", 15*time.Second, func() bool {
		servers, err := newLead.m.store.Servers()
		if err != nil {
			return false
		}
		for _, s := range servers {
			if s.ID == fourth.m.id && s.Voter {
				return true
			}
		}
		return false
	})
	waitUntil(t, "the fourth master knows the cluster id", 10*time.Second, func() bool { return fourth.m.ClusterID() == v.ClusterID })

	// The dead first leader keeps its seat until an operator removes it; with the fourth master
	// up, three of four voters are alive, enough to commit the change.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := newLead.m.RemoveMaster(ctx, lead.m.id); err != nil {
		t.Fatal(err)
	}

	// The fourth stops gracefully: gossip says it left, and it keeps its seat in raft too (a
	// restart must not shrink the cluster) until an operator removes it.
	if err := fourth.stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "gossip says the fourth master left", 15*time.Second, func() bool {
		for _, mem := range newLead.m.gossip.Members() {
			if mem.Meta.ID == fourth.m.id {
				return mem.Status == gossip.StatusLeft
			}
		}
		return false
	})
	if servers, _ := newLead.m.store.Servers(); len(servers) != 3 {
		t.Fatalf("servers after the fourth stopped: %v, want three", servers)
	}
	if err := newLead.m.RemoveMaster(ctx, fourth.m.id); err != nil {
		t.Fatal(err)
	}
	if servers, _ := newLead.m.store.Servers(); len(servers) != 2 {
		t.Fatalf("servers after removing the fourth: %v", servers)
	}
}

func TestMasterRestartsFromItsDataDir(t *testing.T) {
	dir := t.TempDir()
	r := startMaster(t, dir, 0)
	leaderOf(t, r)
	id, cluster := r.m.id, r.m.ClusterID()
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	again := startMaster(t, dir, 0)
	leaderOf(t, again)
	if again.m.id != id || again.m.ClusterID() != cluster {
		t.Fatalf("after restart: id %s cluster %s, want %s %s", again.m.id, again.m.ClusterID(), id, cluster)
	}
}

func TestDataDirOfAnotherClusterIsRefused(t *testing.T) {
	oldDir := t.TempDir()
	old := startMaster(t, oldDir, 0)
	leaderOf(t, old)
	if err := old.stop(); err != nil {
		t.Fatal(err)
	}
	other := startMaster(t, t.TempDir(), 0)
	leaderOf(t, other)

	stray := startMaster(t, oldDir, 0, other.m.GossipAddr())
	select {
	case <-stray.finished:
		err := stray.err
		if !errors.Is(err, ErrOtherCluster) || !strings.Contains(err.Error(), oldDir) {
			t.Fatalf("Run = %v, want ErrOtherCluster naming %s", err, oldDir)
		}
		t.Logf("the error a user sees: %v", err)
		stray.err = nil // expected; the cleanup need not report it
	case <-time.After(20 * time.Second):
		t.Fatal("a master with another cluster's data dir kept running")
	}
	// The other cluster is untouched: still one master.
	if servers, _ := other.m.store.Servers(); len(servers) != 1 {
		t.Fatalf("the other cluster's servers: %v", servers)
	}
}

func TestNewRejectsPortsInUse(t *testing.T) {
	r := startMaster(t, t.TempDir(), 0)
	for name, cfg := range map[string]Config{
		"raft":   {DataDir: t.TempDir(), RaftAddr: r.m.RaftAddr(), GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"},
		"http":   {DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", HTTPAddr: r.m.HTTPAddr()},
		"gossip": {DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", GossipAddr: r.m.GossipAddr(), HTTPAddr: "127.0.0.1:0"},
	} {
		_, err := New(cfg)
		if err == nil {
			t.Fatalf("%s port in use: no error", name)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := New(Config{DataDir: r.m.cfg.DataDir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a data dir in use: %v", err)
	}
}

func TestAgentRegistrationValidatesEachField(t *testing.T) {
	r := startMaster(t, t.TempDir(), 0)
	leaderOf(t, r)
	tests := []struct {
		body string
		code int
		msg  string
	}{
		{`{"http":"127.0.0.1:5151","resources":{"cpus":1}}`, 422, "hostname: is required"},
		{`{"hostname":"n1","resources":{"cpus":1}}`, 422, "http: is required"},
		{`{"hostname":"n1","http":"h:1","resources":{"cpus":-1}}`, 422, "resources: resources: cpus: must be >= 0"},
		{`{"hostname":"n1","http":"h:1","id":"a b"}`, 422, "id: id: agent id"},
		{`{"hostname":"n1","http":"h:1","attributes":{"a;b":"x"}}`, 422, `attributes: bad name \"a;b\"`},
		{`{"hostname":"n1","http":"h:1","colour":"red"}`, 400, `unknown field \"colour\"`},
		{`{"hostname":`, 400, "registration:"},
		{`{"hostname":"n1","http":"h:1","resources":{"cpus":1,"mem":64,"ports":"[31000-31005]"}}`, 200, `"id": "`},
	}
	for _, tt := range tests {
		resp, err := http.Post(r.url("/v1/agents/register"), "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.msg) {
			t.Errorf("POST %s = %d %s, want %d with %q", tt.body, resp.StatusCode, body, tt.code, tt.msg)
		}
	}
	var agents []api.Agent
	getJSON(t, r.url("/v1/agents"), &agents)
	if len(agents) != 1 || agents[0].Resources.Ports.String() != "[31000-31005]" {
		t.Fatalf("agents = %+v, want only the valid one", agents)
	}
}
