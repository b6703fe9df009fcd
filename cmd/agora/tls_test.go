package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/tlsconf"
)

// TestTLSClusterOnContainerd runs three masters and an agent with certificates from one CA:
// the masters form their raft over TLS and forward writes over it, the agent registers over
// mutual TLS and runs an app's task on containerd that the master launched over it, logs come
// back through the masters; a client without the CA, plain HTTP, and a caller of the agent
// without a certificate get nothing.
func TestTLSClusterOnContainerd(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	// The certificates come from `agora tls`, as an operator without a CA makes them.
	certDir := t.TempDir()
	for _, cmd := range [][]string{
		{"tls", "ca", "create", "--dir", certDir, "--days", "1"},
		{"tls", "cert", "create", "masters", "--host", "127.0.0.1", "--dir", certDir, "--days", "1",
			"--ca", filepath.Join(certDir, "agora-ca.pem"), "--ca-key", filepath.Join(certDir, "agora-ca-key.pem")},
		{"tls", "cert", "create", "agent", "--dir", certDir, "--days", "1",
			"--ca", filepath.Join(certDir, "agora-ca.pem"), "--ca-key", filepath.Join(certDir, "agora-ca-key.pem")},
	} {
		if out, err := agora(t, cmd...); err != nil {
			t.Fatalf("agora %s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	caBefore, _ := os.ReadFile(filepath.Join(certDir, "agora-ca.pem"))
	if out, err := agora(t, "tls", "ca", "create", "--dir", certDir); err == nil || !strings.Contains(err.Error(), "agora-ca.pem exists") {
		t.Fatalf("a second CA over the first: %v\n%s", err, out)
	}
	if caAfter, _ := os.ReadFile(filepath.Join(certDir, "agora-ca.pem")); !bytes.Equal(caBefore, caAfter) {
		t.Fatal("a refused tls ca create changed agora-ca.pem")
	}
	if fi, err := os.Stat(filepath.Join(certDir, "agent-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent-key.pem: %v %v, want mode 0600", fi, err)
	}
	certs := tlsconf.Files{CA: filepath.Join(certDir, "agora-ca.pem"),
		Cert: filepath.Join(certDir, "masters.pem"), Key: filepath.Join(certDir, "masters-key.pem")}
	tlsArgs := []string{"--tls-cert", certs.Cert, "--tls-key", certs.Key, "--tls-ca", certs.CA}
	agentTLSArgs := []string{"--tls-cert", filepath.Join(certDir, "agent.pem"), "--tls-key", filepath.Join(certDir, "agent-key.pem"), "--tls-ca", certs.CA}
	masterArgs := func(join ...string) []string {
		args := append([]string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--bootstrap-expect", "3", "--allocation-interval", "200ms"}, tlsArgs...)
		for _, j := range join {
			args = append(args, "--join", j)
		}
		return args
	}
	var bases []string
	var procs []*process
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range procs {
				t.Logf("--- process %d:\n%s", i, p.out.String())
			}
		}
	})
	p, got := startProcess(t, masterArgs(), `API:\s+(https://\S+)`, `gossip:\s+(\S+)`)
	procs = append(procs, p)
	bases = append(bases, got[0])
	seed := got[1]
	for range 2 {
		p, got := startProcess(t, masterArgs(seed), `API:\s+(https://\S+)`)
		procs = append(procs, p)
		bases = append(bases, got[0])
	}
	pool, err := tlsconf.Pool(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(method, url string, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if out != nil {
			json.Unmarshal(data, out)
		}
		return resp.StatusCode
	}

	// Raft over TLS: a leader, and every master's own raft state read over HTTPS.
	var view api.ClusterView
	waitJob(t, "a leader and three masters seen over TLS", 30*time.Second, func() bool {
		if do("GET", bases[1]+"/v1/cluster", "", &view) != 200 || view.Leader == nil || len(view.Masters) != 3 {
			return false
		}
		for _, m := range view.Masters {
			if m.State == "unreachable" || m.AppliedIndex == 0 {
				return false
			}
		}
		return true
	})
	follower := ""
	for _, b := range bases {
		if b != "https://"+view.Leader.HTTP {
			follower = b
		}
	}
	if code := do("PUT", follower+"/v1/secrets/over-tls", `{"value": "x"}`, nil); code != http.StatusNoContent {
		t.Fatalf("a write forwarded by a follower over TLS: %d", code)
	}

	// Neither plain HTTP nor a client without the CA gets an answer.
	if resp, err := http.Get(strings.Replace(bases[0], "https://", "http://", 1) + "/v1/cluster"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP got the cluster from a TLS master")
		}
	}
	if out, err := agora(t, "cluster", "leader", "--master", bases[0]); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("agora without --tls-ca: %v\n%s", err, out)
	}
	if out, err := agora(t, "cluster", "leader", "--master", bases[0], "--tls-ca", certs.CA); err != nil || !strings.Contains(out, view.Leader.ID) {
		t.Fatalf("agora --tls-ca: %v\n%s", err, out)
	}

	// An agent over mutual TLS, running an app's task the master launched over it.
	agentArgs := append([]string{"agent", "--join", seed, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:1024;disk:1000;ports:" + taskPortRange()}, agentTLSArgs...)
	p, got = startProcess(t, agentArgs, `API:\s+(https://\S+)`)
	procs = append(procs, p)
	agentBase := got[0]
	waitJob(t, "the agent registered over TLS", 30*time.Second, func() bool {
		var agents []api.AgentView
		return do("GET", bases[0]+"/v1/agents", "", &agents) == 200 && len(agents) == 1 && agents[0].State == "active"
	})
	dir := t.TempDir()
	app := filepath.Join(dir, "app.json")
	os.WriteFile(app, []byte(`{"id": "/secure", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1}`), 0o644)
	waitJob(t, "the service framework ready", 30*time.Second, func() bool { return do("GET", bases[0]+"/v2/apps", "", nil) == 200 })
	if out, err := agora(t, "app", "add", app, "--wait", "--master", bases[0], "--tls-ca", certs.CA); err != nil || !strings.Contains(out, "1/1 running") {
		t.Fatalf("agora app add over TLS: %v\n%s", err, out)
	}
	var tasks struct {
		Tasks []appTask `json:"tasks"`
	}
	do("GET", bases[0]+"/v2/apps/secure/tasks", "", &tasks)
	if len(tasks.Tasks) != 1 {
		t.Fatalf("tasks: %+v", tasks)
	}
	// TASK_RUNNING comes as the container starts; the app prints its line a
	// moment later, so the logs are asked until it is there.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err := agora(t, "task", "logs", tasks.Tasks[0].ID, "--master", bases[2], "--tls-ca", certs.CA)
		if err == nil && strings.Contains(out, "testapp: started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task logs through the masters over TLS: %v\n%s", err, out)
		}
	}
	// The agent takes callers with a certificate of the CA only.
	if code := do("GET", agentBase+"/v1/tasks", "", nil); code != 0 {
		t.Fatalf("the agent answered a caller without a certificate: %d", code)
	}
}
