package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// call sends a request with a token ("" for none) and returns the status and body.
func call(t *testing.T, method, url, token string, body any) (int, string, http.Header) {
	t.Helper()
	return callWith(t, http.DefaultClient, method, url, token, body)
}

// callWith is call through the client c.
func callWith(t *testing.T, c *http.Client, method, url, token string, body any) (int, string, http.Header) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), resp.Header
}

// TestAccessControlOnContainerd runs a master with API tokens and a cluster secret, an agent
// with the secret and one with a wrong secret, on the real containerd: the wrong agent never
// joins; without a token only the liveness checks, the UI's files and the metrics answer;
// viewers read, operators run apps (the master reaching the agent with the secret), admins
// keep secrets; nobody but masters may call the agent's API.
func TestAccessControlOnContainerd(t *testing.T) {
	// Mostly waiting: it shares the machine with the other tests that wait.
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	dir := t.TempDir()
	const admin, operator, viewer = "admin-token-0123456789", "operator-token-0123456789", "viewer-token-0123456789"
	const operator2 = "other-operator-token-0123456789"
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte(fmt.Sprintf("# role name token\nadmin alice %s\noperator ci %s\noperator deploy %s\nviewer grafana %s\n", admin, operator, operator2, viewer)), 0o600)
	secret, wrong := filepath.Join(dir, "secret"), filepath.Join(dir, "wrong")
	os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o600)
	os.WriteFile(wrong, []byte("not-the-cluster-secret-0123456789\n"), 0o600)

	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--allocation-interval", "200ms", "--tokens-file", tokens, "--cluster-secret-file", secret}, `API:\s+(http://\S+)`, `gossip:\s+(\S+)`, `access:\s+(API tokens required)`)
	base, gossipAddr := got[0], got[1]
	agentArgs := func(secretFile string, port int) []string {
		return []string{"agent", "--join", gossipAddr, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
			"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--cluster-secret-file", secretFile,
			"--resources", fmt.Sprintf("cpus:2;mem:1024;disk:1000;ports:[%d-%d]", port, port+10)}
	}
	_, got = startProcess(t, agentArgs(secret, taskPorts()), `API:\s+(http://\S+)`)
	agentBase := got[0]
	startProcess(t, agentArgs(wrong, taskPorts()), `API:\s+(http://\S+)`)

	var agents []api.AgentView
	waitJob(t, "the agent with the secret registered", 30*time.Second, func() bool {
		code, body, _ := call(t, "GET", base+"/v1/agents", viewer, nil)
		return code == http.StatusOK && json.Unmarshal([]byte(body), &agents) == nil && len(agents) >= 1
	})
	time.Sleep(3 * time.Second) // the other agent retries every second: it never gets in
	call(t, "GET", base+"/v1/agents", viewer, nil)
	if _, body, _ := call(t, "GET", base+"/v1/agents", viewer, nil); json.Unmarshal([]byte(body), &agents) != nil || len(agents) != 1 {
		t.Fatalf("agents %s, want only the one with the cluster secret", body)
	}

	for _, tc := range []struct {
		method, path, token string
		body                any
		want                int
	}{
		{"GET", "/ping", "", nil, 200},
		{"GET", "/health", "", nil, 200},
		{"GET", "/ui/", "", nil, 200},
		{"GET", "/metrics", "", nil, 200},
		{"GET", "/v1/cluster", "", nil, 401},
		{"GET", "/v1/cluster", "not-a-token-0123456789", nil, 401},
		{"GET", "/v1/cluster", viewer, nil, 200},
		{"GET", "/v2/apps", viewer, nil, 200},
		{"POST", "/v2/apps", viewer, map[string]any{"id": "/no", "cmd": "sleep 1"}, 403},
		{"GET", "/v1/secrets", viewer, nil, 403},
		{"PUT", "/v1/secrets/db", operator, map[string]string{"value": "s3cret"}, 403},
		{"PUT", "/v1/secrets/db", admin, map[string]string{"value": "s3cret"}, 204},
		{"GET", "/v1/secrets", admin, nil, 200},
		{"POST", "/v1/agents/" + agents[0].ID + "/drain", operator, nil, 403},
		{"POST", "/v1/agents/register", admin, map[string]any{"hostname": "h", "http": "127.0.0.1:1"}, 403},
	} {
		code, body, h := call(t, tc.method, base+tc.path, tc.token, tc.body)
		if code != tc.want {
			t.Errorf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.token, code, body, tc.want)
		}
		if code == 401 && !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tc.method, tc.path)
		}
		if code == 403 && !strings.Contains(body, "needs") {
			t.Errorf("%s %s: 403 %s does not say what it needs", tc.method, tc.path, body)
		}
	}

	// An operator runs an app through the CLI: the master launches it on the agent with the
	// cluster secret, and reads its logs from the agent the same way.
	waitJob(t, "the service framework ready", 30*time.Second, func() bool {
		code, _, _ := call(t, "GET", base+"/v2/apps", operator, nil)
		return code == http.StatusOK
	})
	app := filepath.Join(dir, "app.json")
	os.WriteFile(app, []byte(`{"id": "/locked", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1}`), 0o644)
	if out, err := agora(t, "app", "add", app, "--wait", "--master", base, "--token", operator); err != nil || !strings.Contains(out, "1/1 running") {
		t.Fatalf("agora app add --token operator: %v\n%s", err, out)
	}
	if out, err := agora(t, "app", "list", "--master", base); err == nil || exitCode(err, io.Discard) != exitError || !strings.Contains(err.Error(), "401") {
		t.Fatalf("agora app list without a token: %v\n%s", err, out)
	}
	var tasks struct {
		Tasks []appTask `json:"tasks"`
	}
	_, body, _ := call(t, "GET", base+"/v2/apps/locked/tasks", viewer, nil)
	if json.Unmarshal([]byte(body), &tasks) != nil || len(tasks.Tasks) != 1 {
		t.Fatalf("tasks: %s", body)
	}
	// RUNNING comes when the process starts, before it writes: poll until it has.
	waitJob(t, "agora task logs through the master to show the app's output", 30*time.Second, func() bool {
		out, err := agora(t, "task", "logs", tasks.Tasks[0].ID, "--master", base, "--token", operator)
		return err == nil && strings.Contains(out, "testapp: started")
	})
	// Logs are for operators (no --viewers-read-logs here); a viewer sees the task's state.
	logs := "/v1/tasks/" + tasks.Tasks[0].ID + "/logs"
	if code, body, _ := call(t, "GET", base+logs, viewer, nil); code != http.StatusForbidden || !strings.Contains(body, "--viewers-read-logs") {
		t.Fatalf("a viewer reading logs: %d %s, want 403 naming --viewers-read-logs", code, body)
	}
	if code, body, _ := call(t, "GET", base+"/v1/tasks/"+tasks.Tasks[0].ID, viewer, nil); code != http.StatusOK || !strings.Contains(body, "TASK_RUNNING") {
		t.Fatalf("a viewer reading the task: %d %s", code, body)
	}
	// ?access_token= only where a browser's EventSource needs it: the event stream and a log
	// follow (which the master answers from the agent with the cluster secret, not the token).
	if code, body, _ := call(t, "GET", base+"/v2/apps?access_token="+viewer, "", nil); code != http.StatusUnauthorized || !strings.Contains(body, "send 'Authorization: Bearer TOKEN'") {
		t.Fatalf("access_token on GET /v2/apps: %d %s, want 401 naming the header", code, body)
	}
	if got := streamUntil(t, base+"/v2/events?access_token="+viewer, "event_stream_attached"); got != http.StatusOK {
		t.Fatalf("access_token on GET /v2/events: %d, want the stream", got)
	}
	if got := streamUntil(t, base+logs+"?follow=true&access_token="+operator, "testapp: started"); got != http.StatusOK {
		t.Fatalf("access_token on a log follow: %d, want the stream", got)
	}

	// A framework id is its registering principal's. ci runs a framework of its own; deploy,
	// another operator, cannot subscribe as it, and nobody, not even an admin, as Marathon.
	ci := subscribeFramework(t, base, operator, api.FrameworkInfo{Name: "ci-framework", FailoverTimeout: 60})
	var marathonID string
	var fws []api.FrameworkState
	if _, body, _ := call(t, "GET", base+"/v1/frameworks", viewer, nil); json.Unmarshal([]byte(body), &fws) != nil {
		t.Fatalf("frameworks: %s", body)
	}
	for _, fw := range fws {
		if fw.Info.Name == "marathon" {
			marathonID = fw.Info.ID
			if fw.Info.Principal != "agora:embedded" {
				t.Fatalf("Marathon's principal is %q", fw.Info.Principal)
			}
		}
	}
	for _, tc := range []struct {
		token, id, owner, caller string
	}{
		{operator2, ci, "ci", "deploy"},
		{admin, marathonID, "agora:embedded", "alice"},
		{operator, marathonID, "agora:embedded", "ci"},
	} {
		code, body := refusedSubscription(t, base, tc.token, api.FrameworkInfo{ID: tc.id, Name: "marathon", FailoverTimeout: 604800})
		var refusal struct {
			FrameworkID string `json:"framework_id"`
			Owner       string `json:"owner"`
			Principal   string `json:"principal"`
		}
		json.Unmarshal([]byte(body), &refusal)
		if code != http.StatusForbidden || refusal.FrameworkID != tc.id || refusal.Owner != tc.owner || refusal.Principal != tc.caller {
			t.Fatalf("%s subscribing as %s's framework %s: %d %s, want 403 naming both", tc.caller, tc.owner, tc.id, code, body)
		}
	}
	// Marathon kept its framework and its task: the same task still runs, Marathon is still
	// subscribed, and it was not subscribed again by anyone meanwhile.
	var after struct {
		Tasks []appTask `json:"tasks"`
	}
	_, body, _ = call(t, "GET", base+"/v2/apps/locked/tasks", viewer, nil)
	if json.Unmarshal([]byte(body), &after) != nil || len(after.Tasks) != 1 || after.Tasks[0].ID != tasks.Tasks[0].ID || after.Tasks[0].State != "TASK_RUNNING" {
		t.Fatalf("the app's tasks after the impersonations: %s, want %s still running", body, tasks.Tasks[0].ID)
	}
	_, body, _ = call(t, "GET", base+"/v1/frameworks", viewer, nil)
	json.Unmarshal([]byte(body), &fws)
	for _, fw := range fws {
		if fw.Info.ID == marathonID && !fw.Connected {
			t.Fatalf("Marathon is no longer subscribed: %+v", fw)
		}
	}

	// The agent's API is for masters only.
	if code, body, _ := call(t, "GET", agentBase+"/v1/tasks", "", nil); code != 401 {
		t.Fatalf("GET the agent's tasks without the secret: %d %s", code, body)
	}
	if code, body, _ := call(t, "POST", agentBase+"/v1/tasks", admin, map[string]any{"task_id": "x", "cmd": "true", "resources": map[string]float64{"cpus": 0.1, "mem": 16}}); code != 403 {
		t.Fatalf("launch on the agent with an admin token: %d %s, want 403 (only the cluster secret)", code, body)
	}
	if code, _, _ := call(t, "GET", agentBase+"/ping", "", nil); code != 200 {
		t.Fatalf("the agent's /ping: %d", code)
	}
}

// TestOpenAPIStaysOnLoopback: without tokens, a master refuses to listen beyond loopback
// unless told to run open, and says at start that the API is open.
func TestOpenAPIStaysOnLoopback(t *testing.T) {
	err := run(t.Context(), []string{"agora", "master", "--data-dir", t.TempDir(), "--http", "0.0.0.0:0", "--bind", "127.0.0.1:0"}, io.Discard, io.Discard)
	if exitCode(err, io.Discard) != exitUsage || !strings.Contains(err.Error(), "--tokens-file") {
		t.Fatalf("an open API on 0.0.0.0: %v, want a usage error naming --tokens-file", err)
	}
	_, got := startCmd(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0"}, `access:\s+(OPEN[^\n]*loopback only)`)
	if got[0] == "" {
		t.Fatal("no access line")
	}
}

// TestTokensNeedAClusterSecret: with tokens, agents could not reach a master without the cluster
// secret, so a master refuses tokens without one (a dev node makes its own for its agent).
func TestTokensNeedAClusterSecret(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("admin alice admin-token-0123456789\n"), 0o600)
	err := run(t.Context(), []string{"agora", "master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--tokens-file", tokens}, io.Discard, io.Discard)
	if exitCode(err, io.Discard) != exitUsage || !strings.Contains(err.Error(), "--cluster-secret-file") {
		t.Fatalf("tokens without a cluster secret: %v, want a usage error naming --cluster-secret-file", err)
	}
}

// TestTokensReloadOnSIGHUP: an operator rotates tokens by editing the file and sending SIGHUP
// (systemctl reload): the new tokens work and the removed ones stop working, without a restart;
// a broken or empty file changes nothing (it would lock everyone out or open the API) and the
// log says why; the master keeps running through every reload.
func TestTokensReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	tokens, secret := filepath.Join(dir, "tokens"), filepath.Join(dir, "secret")
	const old, rotated, viewer = "old-admin-token-0123456789", "new-admin-token-0123456789", "viewer-token-0123456789"
	os.WriteFile(tokens, []byte("admin alice "+old+"\n"), 0o600)
	os.WriteFile(secret, []byte("the-cluster-secret-0123456789\n"), 0o600)
	p, got := startProcess(t, []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--tokens-file", tokens, "--cluster-secret-file", secret}, `API:\s+(http://\S+)`)
	base := got[0]
	status := func(token string) int {
		code, _, _ := call(t, "GET", base+"/v1/agents", token, nil)
		return code
	}
	hangup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10 s for %s; the master said:\n%s", what, p.out.String())
			}
		}
	}
	// The API line comes before the master leads: a read may be 503 until it does.
	waitUntil("the master to lead and answer the admin", func() bool { return status(old) == http.StatusOK })
	if code := status(viewer); code != http.StatusUnauthorized {
		t.Fatalf("at start: viewer %d, want 401", code)
	}

	os.WriteFile(tokens, []byte("admin alice "+rotated+"\nviewer grafana "+viewer+"\n"), 0o600)
	hangup()
	waitUntil("the new tokens to work", func() bool { return status(viewer) == http.StatusOK })
	if status(rotated) != http.StatusOK || status(old) != http.StatusUnauthorized {
		t.Fatalf("after the reload: new admin %d, old admin %d; want 200, 401", status(rotated), status(old))
	}

	for i, bad := range []struct{ file, says string }{
		{"admin alice short\n", "shorter than 16 characters"},
		{"# everyone left\n", "holds no token"},
	} {
		os.WriteFile(tokens, []byte(bad.file), 0o600)
		hangup()
		waitUntil("the log to say the tokens were not reloaded", func() bool {
			return strings.Count(p.out.String(), "tokens not reloaded") == i+1 && strings.Contains(p.out.String(), bad.says)
		})
		if status(viewer) != http.StatusOK || status("") != http.StatusUnauthorized {
			t.Fatalf("after a refused reload (%s): viewer %d, no token %d; want 200, 401", bad.says, status(viewer), status(""))
		}
	}
	if p.cmd.ProcessState != nil {
		t.Fatalf("the master exited: %s", p.out.String())
	}
}

// streamUntil opens a streaming GET and reads until it says want (within 30 s), then hangs up.
// It answers the status (and fails the test if a 200 never says want).
func streamUntil(t *testing.T, url, want string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode
	}
	var seen strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), want) {
			return resp.StatusCode
		}
	}
	t.Fatalf("GET %s: the stream ended or stalled without %q: %v\n%s", url, want, sc.Err(), seen.String())
	return 0
}

// schedulerSubscribe POSTs a SUBSCRIBE with a token; the caller closes the answer.
func schedulerSubscribe(t *testing.T, ctx context.Context, base, token string, info api.FrameworkInfo) *http.Response {
	t.Helper()
	b, _ := json.Marshal(api.Call{Type: api.CallSubscribe, Subscribe: &api.Subscribe{FrameworkInfo: info}})
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/scheduler", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("SUBSCRIBE: %v", err)
	}
	return resp
}

// subscribeFramework subscribes an HTTP framework and keeps its stream open until the test
// ends; it answers the framework's id.
func subscribeFramework(t *testing.T, base, token string, info api.FrameworkInfo) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	resp := schedulerSubscribe(t, ctx, base, token, info)
	t.Cleanup(func() { resp.Body.Close() })
	var ev api.Event
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	if resp.StatusCode != http.StatusOK || err != nil || json.Unmarshal(line, &ev) != nil || ev.Subscribed == nil {
		t.Fatalf("SUBSCRIBE %+v: %d %s %v", info, resp.StatusCode, line, err)
	}
	return ev.Subscribed.FrameworkID
}

// refusedSubscription sends a SUBSCRIBE that must be refused and answers its status and body;
// an accepted one fails the test with the first event it would have had.
func refusedSubscription(t *testing.T, base, token string, info api.FrameworkInfo) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp := schedulerSubscribe(t, ctx, base, token, info)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		line, _ := bufio.NewReader(resp.Body).ReadBytes('\n')
		t.Fatalf("SUBSCRIBE %+v was accepted: %s", info, line)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
