package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agora-sched/agora/chaos/netem"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

// netPair is two network namespaces a test makes, joined by a veth pair that exists only inside
// them: node's (its loopback, and nodeAddr on the pair) for a node under test, and other's
// (otherAddr) for a machine that is not the node's. Neither reaches the host's network. They
// are removed when the test ends, however it ends.
type netPair struct {
	node, other         string // the namespaces' names
	nodeAddr, otherAddr string
}

var netPairSeq atomic.Int32

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	id := fmt.Sprintf("agora-cmd-%d-%d", os.Getpid(), netPairSeq.Add(1))
	p := &netPair{node: id + "-n", other: id + "-o", nodeAddr: "10.231.7.1", otherAddr: "10.231.7.2"}
	t.Cleanup(func() {
		for _, ns := range []string{p.node, p.other} {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	for _, args := range [][]string{
		{"netns", "add", p.node},
		{"netns", "add", p.other},
		{"-n", p.node, "link", "add", "vn", "type", "veth", "peer", "name", "vo", "netns", p.other},
		{"-n", p.node, "addr", "add", p.nodeAddr + "/30", "dev", "vn"},
		{"-n", p.other, "addr", "add", p.otherAddr + "/30", "dev", "vo"},
		{"-n", p.node, "link", "set", "vn", "up"},
		{"-n", p.other, "link", "set", "vo", "up"},
		{"-n", p.node, "link", "set", "lo", "up"},
		{"-n", p.other, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s (network namespaces need root and iproute2, as CI has; scripts/netdeps.sh installs it): %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return p
}

// client is an HTTP client whose connections start in the namespace ns.
func (p *netPair) client(ns string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := netem.InNamespace(ns, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
}

// TestOpenClusterTakesAgentsFromThisMachineOnly: a master without a cluster secret whose API
// listens on every address (--insecure-open-api) takes agents' registrations and status
// updates from loopback only; from another address they are a 403 that says why and which
// flag lets other machines' agents in. With the secret, they come from anywhere with it. The
// master runs in a network namespace of the test's own; the other machine is a second one,
// joined to it by a veth pair.
func TestOpenClusterTakesAgentsFromThisMachineOnly(t *testing.T) {
	pair := newNetPair(t)
	local, remote := pair.client(pair.node), pair.client(pair.other)
	host := pair.otherAddr
	reg := api.AgentRegistration{Hostname: "by-hand", HTTP: "127.0.0.1:1", Resources: mustResources(t, "cpus:8;mem:8192;disk:100")}
	_, got := startProcessIn(t, pair.node, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--http", "0.0.0.0:0", "--insecure-open-api"}, `API:\s+(http://\S+)`, `access:\s+([^\n]*register from this machine only[^\n]*)`)
	port := portOf(t, got[0])
	remoteURL, localURL := "http://"+net.JoinHostPort(pair.nodeAddr, port), "http://"+net.JoinHostPort("127.0.0.1", port)
	waitLeader(t, local, localURL)
	for _, path := range []string{"/v1/agents/register", "/v1/agents/some-agent/status"} {
		code, body, _ := callWith(t, remote, "POST", remoteURL+path, "", reg)
		if code != http.StatusForbidden || !strings.Contains(body, "no cluster secret") || !strings.Contains(body, "loopback") ||
			!strings.Contains(body, "--cluster-secret-file") || !strings.Contains(body, host) {
			t.Fatalf("POST %s from %s to an open cluster: %d %s, want 403 saying why and naming --cluster-secret-file", path, host, code, body)
		}
	}
	var agents []api.AgentView
	if code, body, _ := callWith(t, local, "GET", localURL+"/v1/agents", "", nil); code != http.StatusOK || json.Unmarshal([]byte(body), &agents) != nil || len(agents) != 0 {
		t.Fatalf("a refused registration left agents: %d %s", code, body)
	}
	if code, body, _ := callWith(t, local, "POST", localURL+"/v1/agents/register", "", reg); code != http.StatusOK {
		t.Fatalf("a registration from loopback: %d %s", code, body)
	}

	// With a cluster secret, the secret decides, wherever the agent is.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, got = startProcessIn(t, pair.node, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--http", "0.0.0.0:0", "--insecure-open-api", "--cluster-secret-file", secret}, `API:\s+(http://\S+)`)
	port = portOf(t, got[0])
	remoteURL = "http://" + net.JoinHostPort(pair.nodeAddr, port)
	waitLeader(t, local, "http://"+net.JoinHostPort("127.0.0.1", port))
	if code, body, _ := callWith(t, remote, "POST", remoteURL+"/v1/agents/register", "", reg); code != http.StatusUnauthorized {
		t.Fatalf("a registration without the secret: %d %s, want 401", code, body)
	}
	if code, body, _ := callWith(t, remote, "POST", remoteURL+"/v1/agents/register", "the-cluster-secret-0123456789", reg); code != http.StatusOK {
		t.Fatalf("a registration from %s with the secret: %d %s", host, code, body)
	}
}

// TestHandRegisteredSilentAgentIsUnreachable: an agent registered by hand over
// /v1/agents/register, with no process behind it — it never joins the gossip, its API does not
// answer — is active at first (a new agent's gossip metadata takes a moment), then unreachable
// within --agent-gossip-grace (10 s) of the next scheduler step, and from then on offered to
// nobody: an app only it could hold, launched onto it (and dropped) while it seemed active,
// gets no launch there any more.
func TestHandRegisteredSilentAgentIsUnreachable(t *testing.T) {
	// Mostly waiting: it shares the machine with the other tests that wait.
	t.Parallel()
	const grace = 10 * time.Second // --agent-gossip-grace's default
	base, _, _ := startMarathonDev(t, taskPorts())
	events := streamEvents(t, base)
	postApp(t, base, `{"id": "/big", "cmd": "sleep 3600", "cpus": 3, "mem": 32, "instances": 1, "backoffSeconds": 0.2, "backoffFactor": 1, "maxLaunchDelaySeconds": 0.2}`)
	var ghost api.Agent
	registered := time.Now()
	if code := httpJSON(t, "POST", base+"/v1/agents/register", api.AgentRegistration{Hostname: "ghost", HTTP: "127.0.0.1:1",
		Resources: mustResources(t, "cpus:8;mem:8192;disk:100;ports:[33190-33199]")}, &ghost); code != http.StatusOK || ghost.ID == "" {
		t.Fatalf("register by hand: %d %+v", code, ghost)
	}
	state := func() string {
		for _, a := range agentViews(t, base) {
			if a.ID == ghost.ID {
				return a.State
			}
		}
		return ""
	}
	var unreachableAt time.Time
	var onGhost []time.Time // launches dropped on the ghost, by the framework's clock
	drain := func() {
		for {
			select {
			case ev := <-events:
				if ev.Type == "status_update_event" && ev.Data["slaveId"] == ghost.ID && ev.Data["taskStatus"] == "TASK_DROPPED" {
					at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(ev.Data["timestamp"]))
					onGhost = append(onGhost, at)
				}
			default:
				return
			}
		}
	}
	for deadline := registered.Add(grace + 10*time.Second); ; time.Sleep(100 * time.Millisecond) {
		drain()
		st := state()
		if st == "unreachable" {
			unreachableAt = time.Now()
			break
		}
		if st != "active" {
			t.Fatalf("the agent registered by hand is %q, want active, then unreachable", st)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent registered by hand is still active %s after its registration, want unreachable within --agent-gossip-grace (%s)", time.Since(registered), grace)
		}
	}
	took := unreachableAt.Sub(registered)
	t.Logf("unreachable %s after its registration; %d launches dropped on it meanwhile", took, len(onGhost))
	if took < grace-time.Second {
		t.Fatalf("unreachable %s after its registration, before the grace (%s) a new agent's gossip has", took, grace)
	}
	if len(onGhost) == 0 {
		t.Fatal("no launch went to the agent registered by hand while it was active: the test shows nothing")
	}
	// Offered to nobody from now on: the app waits, and nothing more lands on the ghost.
	quiet := time.Now().Add(3 * time.Second)
	for time.Now().Before(quiet) {
		drain()
		time.Sleep(100 * time.Millisecond)
	}
	drain()
	for _, at := range onGhost {
		if at.After(unreachableAt.Add(500 * time.Millisecond)) {
			t.Fatalf("a launch dropped on the ghost at %s, %s after it was unreachable: its capacity is still offered", at.Format(time.RFC3339Nano), at.Sub(unreachableAt))
		}
	}
	if st := state(); st != "unreachable" {
		t.Fatalf("the agent registered by hand is %q again", st)
	}
}

// agentViews is GET /v1/agents: the agents with their states.
func agentViews(t *testing.T, base string) []api.AgentView {
	t.Helper()
	var out []api.AgentView
	if code := httpJSON(t, "GET", base+"/v1/agents", nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/agents: %d", code)
	}
	return out
}

// mustResources parses resources as --resources takes them.
func mustResources(t *testing.T, s string) resources.Resources {
	t.Helper()
	r, err := resources.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// portOf is the port of an http:// URL.
func portOf(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil || pu.Port() == "" {
		t.Fatalf("no port in %q: %v", u, err)
	}
	return pu.Port()
}

// waitLeader waits until the master at base, called through c, has a leader (it answers
// /v1/agents).
func waitLeader(t *testing.T, c *http.Client, base string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _, _ := callWith(t, c, "GET", base+"/v1/agents", "", nil); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader at %s within 20s", base)
		}
	}
}
