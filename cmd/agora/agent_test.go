package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// background is an agora command running in the test.
type background struct {
	out    containerdtest.Buffer
	cancel context.CancelFunc
	done   chan error
}

// stop ends the command as Ctrl-C would and returns what it returned.
func (b *background) stop() error {
	b.cancel()
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		return context.DeadlineExceeded
	}
}

// startCmd runs an agora command and waits until its output matches every pattern, returning
// each pattern's first submatch.
func startCmd(t *testing.T, args []string, patterns ...string) (*background, []string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan error, 1)}
	go func() {
		b.done <- run(ctx, append([]string{"agora", "--log-level", "error"}, args...), &b.out, io.Discard)
	}()
	t.Cleanup(func() { cancel(); <-b.done })
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got []string
		for _, p := range patterns {
			if m := regexp.MustCompile(p).FindStringSubmatch(b.out.String()); m != nil {
				got = append(got, m[1])
			}
		}
		if len(got) == len(patterns) {
			return b, got
		}
		select {
		case err := <-b.done:
			b.done <- err
			t.Fatalf("agora %v exited: %v\n%s", args, err, b.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agora %v never printed %v:\n%s", args, patterns, b.out.String())
		}
	}
}

func listAgents(t *testing.T, masterHTTP string) []api.Agent {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"agora", "agent", "list", "--master", masterHTTP, "-o", "json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var agents []api.Agent
	if err := json.Unmarshal(out.Bytes(), &agents); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return agents
}

func waitAgents(t *testing.T, masterHTTP string, cond func([]api.Agent) bool) []api.Agent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		agents := listAgents(t, masterHTTP)
		if cond(agents) {
			return agents
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents never as expected: %+v", agents)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgentRegistersAndKeepsItsID runs a master and an agent as a user would, then restarts the
// agent: it registers again under the same id, and the registry still holds one agent.
func TestAgentRegistersAndKeepsItsID(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0"},
		`API:\s+(http://\S+)`, `gossip:\s+(\S+)`)
	masterHTTP, masterGossip := got[0], got[1]

	agentDir, ports := t.TempDir(), taskPortRange()
	agentArgs := []string{"agent", "--join", masterGossip, "--data-dir", agentDir, "--containerd", sock, "--containerd-namespace", testNamespace(t),
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--hostname", "node-7",
		"--resources", "cpus:2;mem:1024;disk:1000;ports:" + ports, "--attributes", "rack:r1;zone:a"}
	a, _ := startCmd(t, agentArgs, `API:\s+(http://\S+)`)
	agents := waitAgents(t, masterHTTP, func(as []api.Agent) bool { return len(as) == 1 })
	first := agents[0]
	if first.Hostname != "node-7" || first.Resources.String() != "cpus:2;mem:1024;disk:1000;ports:"+ports || first.Attributes["zone"] != "a" {
		t.Fatalf("registered agent = %+v", first)
	}

	if err := a.stop(); err != nil {
		t.Fatalf("agent stop: %v", err)
	}
	startCmd(t, agentArgs, `API:\s+(http://\S+)`)
	agents = waitAgents(t, masterHTTP, func(as []api.Agent) bool {
		return len(as) == 1 && as[0].LastRegisteredAt.After(first.LastRegisteredAt)
	})
	if agents[0].ID != first.ID || !agents[0].RegisteredAt.Equal(first.RegisteredAt) {
		t.Fatalf("after a restart: %+v, want id %s registered at %v", agents[0], first.ID, first.RegisteredAt)
	}
}
