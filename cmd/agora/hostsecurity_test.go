package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

// TestTasksCannotReachTheHost: an operator's app without an image and without a user, on a
// dev node whose tokens and cluster secret files lie in a directory tasks are shown, runs as
// nobody, cannot read /etc/shadow, finds in the data dir only the way to its own sandbox and
// both files blank, and writes in its sandbox; a dev node whose data dir lies in such a directory does not start;
// an app asking for root is refused where no agent allows it; the agent's API, open to no one
// but the masters, refuses a launch without the secret.
func TestTasksCannotReachTheHost(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	shared, err := os.MkdirTemp("/var/tmp", "agora-hostsec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	dataDir, tokens, secret := t.TempDir(), filepath.Join(shared, "tokens"), filepath.Join(shared, "cluster-secret")
	const admin, operator = "admin-token-0123456789", "operator-token-0123456789"
	// Both readable by all, carelessly, in a directory tasks are shown.
	if err := os.WriteFile(tokens, []byte("admin alice "+admin+"\noperator ci "+operator+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	devArgs := []string{"dev", "--data-dir", dataDir, "--containerd", sock, "--containerd-namespace", ns, "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--agent-http", "127.0.0.1:0", "--allocation-interval", "200ms", "--dns", "off", "--tokens-file", tokens, "--cluster-secret-file", secret,
		"--resources", "cpus:2;mem:1024;disk:1000;ports:" + taskPortRange(), "--task-host-dirs", "/bin,/sbin,/lib,/lib64,/usr," + shared}
	// The data dir among the directories tasks see: refused.
	if err := run(t.Context(), append(append([]string{"agora"}, devArgs...), "--data-dir", filepath.Join(shared, "data")), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "holds the agent's data") {
		t.Fatalf("a host dir holding the data dir: %v", err)
	}
	_, got := startCmd(t, devArgs, `API:\s+(http://\S+)`, `agent API:\s+(http://\S+)`, `agent:\s+(masters only[^\n]*)`)
	base, agentBase := got[0], got[1]

	app := `{"id": "/peek", "instances": 1, "cpus": 0.1, "mem": 32, "portDefinitions": [], "cmd": "` + strings.Join([]string{
		`echo uid=$(id -u)`,
		`cat /etc/shadow >/dev/null 2>&1 && echo SHADOW-READ`,
		`echo data=[$(ls -A ` + dataDir + `)] agent=[$(ls -A ` + filepath.Join(dataDir, "agent") + `)] tokens=[$(cat ` + tokens + `)] secret=[$(cat ` + secret + `)]`,
		`echo hi > $HOME/f && echo home=$(cat f)`,
		`sleep 1000`}, "; ") + `"}`
	var created map[string]any
	waitJob(t, "the service framework", 30*time.Second, func() bool {
		code, body, _ := call(t, "POST", base+"/v2/apps", operator, json.RawMessage(app))
		json.Unmarshal([]byte(body), &created)
		return code == 201
	})
	var out string
	waitJob(t, "the app's output", 60*time.Second, func() bool {
		var tasks struct {
			Tasks []struct {
				ID string `json:"id"`
			} `json:"tasks"`
		}
		_, body, _ := call(t, "GET", base+"/v2/apps/peek/tasks", operator, nil)
		if json.Unmarshal([]byte(body), &tasks) != nil || len(tasks.Tasks) == 0 {
			return false
		}
		_, out, _ = call(t, "GET", base+"/v1/tasks/"+tasks.Tasks[0].ID+"/logs?stream=stdout", operator, nil)
		return strings.Contains(out, "home=")
	})
	// The data dir holds, for the task, only the way to its own sandbox.
	if !strings.Contains(out, "uid=65534\n") || strings.Contains(out, "SHADOW-READ") || !strings.Contains(out, "data=[agent] agent=[sandboxes] tokens=[] secret=[]\n") || !strings.Contains(out, "home=hi\n") {
		t.Fatalf("a task sees more of the host than it should:\n%s", out)
	}
	for _, user := range []string{"root", "0"} {
		code, body, _ := call(t, "POST", base+"/v2/apps", operator, json.RawMessage(`{"id": "/rooted", "cmd": "id", "user": "`+user+`"}`))
		if code != 422 || !strings.Contains(body, `"/user"`) || !strings.Contains(body, "--allow-root-tasks") {
			t.Fatalf("an app as %s where no agent allows root: %d %s", user, code, body)
		}
	}
	if code, body, _ := call(t, "POST", agentBase+"/v1/tasks", "", map[string]any{"task_id": "x", "cmd": "true", "resources": map[string]float64{"cpus": 0.1, "mem": 16}}); code != 401 {
		t.Fatalf("a launch on the agent without the secret: %d %s", code, body)
	}
}

// TestAgentAPIBeyondLoopbackNeedsTheSecret: an agent listening on every address starts only
// with the cluster secret, and then refuses a launch without it.
func TestAgentAPIBeyondLoopbackNeedsTheSecret(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o600)
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--cluster-secret-file", secret}, `gossip:\s+(\S+)`)
	args := []string{"agent", "--join", got[0], "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
		"--http", "0.0.0.0:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:1;mem:512;disk:100;ports:" + taskPortRange()}
	p, got := startProcess(t, append(args, "--cluster-secret-file", secret), `API:\s+http://(\S+)`, `access:\s+(masters only[^\n]*)`)
	_, port, err := net.SplitHostPort(got[0])
	if err != nil {
		t.Fatalf("the agent's API address %q: %v\n%s", got[0], err, p.out.String())
	}
	url := fmt.Sprintf("http://127.0.0.1:%s/v1/tasks", port)
	if code, body, _ := call(t, "POST", url, "", map[string]any{"task_id": "x", "cmd": "true", "resources": map[string]float64{"cpus": 0.1, "mem": 16}}); code != 401 {
		t.Fatalf("a launch without the secret: %d %s", code, body)
	}
}
