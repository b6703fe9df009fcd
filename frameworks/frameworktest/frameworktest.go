// Package frameworktest runs an embedded framework on a real master — raft on bbolt, HTTP on
// loopback — whose scheduler reports to simulated agents, for the frameworks' own tests and
// benchmarks; or on a cluster of masters (Masters), to fail its leader over. Scripts runs a
// framework's testdata scripts of commands and expected traces. The real path, with agents on
// containerd, is tested in cmd/agora.
package frameworktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/raft"
)

// Master starts a master with its data in dir and the given raft namespaces, its scheduler
// making offers every interval and reporting to sim; register adds the framework before the
// master runs. It runs until stop is called or the test ends.
func Master(t testing.TB, dir string, sim *mastertest.SimulatedAgents, interval time.Duration, appliers map[string]raft.Applier, register func(*master.Master) error) (m *master.Master, stop func()) {
	t.Helper()
	m, err := master.New(master.Config{
		DataDir: dir, RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Scheduler: master.SchedulerConfig{Agents: sim, AllocationInterval: interval},
		Appliers:  appliers,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := register(m); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return m, stop
}

// Node is one master of a cluster Masters started.
type Node struct {
	*master.Master
	cancel func()
	done   chan error
	killed bool
}

// Kill stops the master abruptly, as if its process died (no graceful leave, its raft store
// closed under it), and waits for it to end.
func (n *Node) Kill() {
	if n.killed {
		return
	}
	n.killed = true
	n.Master.Kill()
	n.cancel()
	<-n.done // what Run says of a store closed under it is no test's business
}

// Masters starts n masters on loopback that found a cluster together, each with its data in a
// directory of its own, the given raft namespaces and register run on it before it runs, as
// Master does for one; no agents register (their schedulers have none to offer). They run until
// killed or the test ends.
func Masters(t testing.TB, n int, appliers map[string]raft.Applier, register func(*master.Master) error) []*Node {
	t.Helper()
	var nodes []*Node
	for i := range n {
		cfg := master.Config{
			DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			BootstrapExpect: n, GossipTiming: gossip.TimingLocal,
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Scheduler: master.SchedulerConfig{Agents: &mastertest.SimulatedAgents{}},
			Appliers:  appliers,
		}
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		m, err := master.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := register(m); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nd := &Node{Master: m, cancel: cancel, done: make(chan error, 1)}
		go func() { nd.done <- m.Run(ctx) }()
		t.Cleanup(func() {
			if !nd.killed {
				nd.killed = true
				cancel()
				if err := <-nd.done; err != nil {
					t.Error(err)
				}
			}
		})
		nodes = append(nodes, nd)
	}
	return nodes
}

// Leader waits until one of nodes leads, and returns it.
func Leader(t testing.TB, nodes []*Node) *Node {
	t.Helper()
	var lead *Node
	WaitFor(t, "a leader", 30*time.Second, func() bool {
		for _, nd := range nodes {
			if !nd.killed && nd.Store().IsLeader() {
				lead = nd
				return true
			}
		}
		return false
	})
	return lead
}

// WaitFor checks cond every 10 ms until it holds, and fails the test if it does not within d.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// Call sends body as JSON and decodes the answer into out (if not nil); a 2xx answer that
// does not decode fails the test. It returns the status code.
func Call(t testing.TB, method, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil && resp.StatusCode < 300 {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode
}

// Stored is every key and value of a namespace of the store, as one string: compare it before
// and after a request to see that the request wrote nothing.
func Stored(t testing.TB, store raft.Namespace) string {
	t.Helper()
	v, err := store.View(context.Background(), raft.Stale)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	v.List("", func(key string, data []byte) bool {
		fmt.Fprintf(&b, "%s=%s\n", key, data)
		return true
	})
	return b.String()
}

// SameJSON fails the test unless got, marshalled, is the JSON of the golden file: the same
// fields with the same values, whatever their order. Golden files are written by hand from the
// shape the API copies (Marathon's, Metronome's), never from the code's own output.
func SameJSON(t testing.TB, golden string, got any) {
	t.Helper()
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", golden, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("not the shape of %s; got:\n%s\nwant:\n%s", golden, b, want)
	}
}
