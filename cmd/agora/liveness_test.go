package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

// hostAddress is an address of this machine beyond loopback, to call its own services from
// somewhere other than loopback.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatalf("this machine has no IPv4 address beyond loopback (%v): the test calls a master from one", addrs)
	return ""
}

// TestOpenClusterTakesAgentsFromThisMachineOnly: a master without a cluster secret whose API
// listens on every address (--insecure-open-api) takes agents' registrations and status
// updates from loopback only; from another address they are a 403 that says why and which
// flag lets other machines' agents in. With the secret, they come from anywhere with it.
func TestOpenClusterTakesAgentsFromThisMachineOnly(t *testing.T) {
	host := hostAddress(t)
	reg := api.AgentRegistration{Hostname: "by-hand", HTTP: "127.0.0.1:1", Resources: mustResources(t, "cpus:8;mem:8192;disk:100")}
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--http", "0.0.0.0:0", "--insecure-open-api"}, `API:\s+(http://\S+)`, `access:\s+([^\n]*register from this machine only[^\n]*)`)
	port := portOf(t, got[0])
	remote, local := "http://"+net.JoinHostPort(host, port), "http://"+net.JoinHostPort("127.0.0.1", port)
	waitLeader(t, local)
	for _, path := range []string{"/v1/agents/register", "/v1/agents/some-agent/status"} {
		code, body, _ := call(t, "POST", remote+path, "", reg)
		if code != http.StatusForbidden || !strings.Contains(body, "no cluster secret") || !strings.Contains(body, "loopback") ||
			!strings.Contains(body, "--cluster-secret-file") || !strings.Contains(body, host) {
			t.Fatalf("POST %s from %s to an open cluster: %d %s, want 403 saying why and naming --cluster-secret-file", path, host, code, body)
		}
	}
	if agents := agentViews(t, local); len(agents) != 0 {
		t.Fatalf("a refused registration left agents: %+v", agents)
	}
	if code, body, _ := call(t, "POST", local+"/v1/agents/register", "", reg); code != http.StatusOK {
		t.Fatalf("a registration from loopback: %d %s", code, body)
	}

	// With a cluster secret, the secret decides, wherever the agent is.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, got = startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0",
		"--http", "0.0.0.0:0", "--insecure-open-api", "--cluster-secret-file", secret}, `API:\s+(http://\S+)`)
	port = portOf(t, got[0])
	remote = "http://" + net.JoinHostPort(host, port)
	waitLeader(t, "http://"+net.JoinHostPort("127.0.0.1", port))
	if code, body, _ := call(t, "POST", remote+"/v1/agents/register", "", reg); code != http.StatusUnauthorized {
		t.Fatalf("a registration without the secret: %d %s, want 401", code, body)
	}
	if code, body, _ := call(t, "POST", remote+"/v1/agents/register", "the-cluster-secret-0123456789", reg); code != http.StatusOK {
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
	const grace = 10 * time.Second // --agent-gossip-grace's default
	base, _, _ := startMarathonDev(t, 33150)
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

// waitLeader waits until the master at base has a leader (it answers /v1/agents).
func waitLeader(t *testing.T, base string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _, _ := call(t, "GET", base+"/v1/agents", "", nil); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader at %s within 20s", base)
		}
	}
}
