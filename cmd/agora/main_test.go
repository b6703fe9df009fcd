package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

func TestHelpListsTheRoles(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"agora", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"master", "agent", "dev"} {
		if !regexp.MustCompile(`(?m)^\s+` + role + `\s`).MatchString(out.String()) {
			t.Errorf("--help does not list %q:\n%s", role, out.String())
		}
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		want int
		msg  string
	}{
		{[]string{"agora", "--version"}, exitOK, ""},
		{[]string{"agora", "nope"}, exitUsage, `no such command "nope"`},
		{[]string{"agora", "dev", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"agora", "--log-level", "loud", "dev"}, exitUsage, "--log-level"},
		{[]string{"agora", "dev", "extra"}, exitUsage, "dev takes no arguments"},
		{[]string{"agora", "dev", "--data-dir", "", "--containerd", "/nonexistent.sock", "--http", "127.0.0.1:0"}, exitError, "data dir"},
		{[]string{"agora", "dev", "--data-dir", "DATA", "--containerd", "/nonexistent.sock", "--http", "127.0.0.1:0"}, exitError, "containerd at /nonexistent.sock does not answer"},
		{[]string{"agora", "master"}, exitUsage, "--data-dir is required"},
		{[]string{"agora", "master", "--data-dir", "DATA", "--bind", "127.0.0.1:notaport"}, exitError, "127.0.0.1:notaport"},
		{[]string{"agora", "master", "--data-dir", "DATA", "--marathon-role", "a b"}, exitUsage, `--marathon-role: "a b"`},
		{[]string{"agora", "dev", "--data-dir", "DATA", "--marathon-role", "-x"}, exitUsage, "--marathon-role"},
		{[]string{"agora", "cluster", "members", "--master", "http://127.0.0.1:1"}, exitError, "connection refused"},
		{[]string{"agora", "cluster", "leader", "-o", "xml"}, exitUsage, "--output"},
		{[]string{"agora", "app", "scale", "web", "many"}, exitUsage, "INSTANCES must be a whole number"},
		{[]string{"agora", "app", "scale", "web"}, exitUsage, "agora app scale APP INSTANCES"},
		{[]string{"agora", "app", "add", "x.json", "--bogus"}, exitUsage, "flag provided but not defined: --bogus"},
		{[]string{"agora", "app", "add", "/nonexistent/app.json", "--wait"}, exitError, "no such file"},
		{[]string{"agora", "task", "logs"}, exitUsage, "give the task's id"},
		{[]string{"agora", "job", "logs", "j"}, exitUsage, "give the job's id and the run's"},
		{[]string{"agora", "app", "list", "--master", "http://127.0.0.1:1"}, exitError, "connection refused"},
		{[]string{"agora", "--log-format", "xml", "dev"}, exitUsage, "--log-format"},
		{[]string{"agora", "completion", "fish"}, exitUsage, "bash or zsh"},
		{[]string{"agora", "cluster", "remove-master"}, exitUsage, "one master id"},
		{[]string{"agora", "agent", "--join", "127.0.0.1:1"}, exitUsage, "--data-dir is required"},
		{[]string{"agora", "agent", "--data-dir", "DATA"}, exitUsage, "--join is required"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--resources", "cpus:lots"}, exitUsage, "--resources"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--attributes", "rack"}, exitUsage, "--attributes"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--containerd", "/nonexistent.sock"}, exitError, "containerd at /nonexistent.sock does not answer"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--http", "0.0.0.0:5151"}, exitUsage, "give --cluster-secret-file"},
		{[]string{"agora", "dev", "--data-dir", "DATA", "--agent-http", "10.0.0.7:5151"}, exitUsage, "--agent-http 10.0.0.7:5151 is reachable beyond this machine"},
		{[]string{"agora", "dev", "--data-dir", "DATA", "--dns", "10.0.0.7:8600"}, exitUsage, "--dns 10.0.0.7:8600 is reachable beyond this machine"},
		{[]string{"agora", "master", "--data-dir", "DATA", "--dns", "127.0.0.1:0", "--dns-ttl", "1500ms"}, exitUsage, "--dns-ttl must be whole seconds"},
		{[]string{"agora", "master", "--data-dir", "DATA", "--dns-recursors", "192.0.2.1"}, exitUsage, "need --dns ADDR"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--default-task-user", "root"}, exitUsage, "--allow-root-tasks"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--host-volume", "all=/"}, exitUsage, "root directory"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--host-volume", "etc=/etc"}, exitUsage, "/etc/shadow"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--host-volume", "bin=/usr/bin:rw"}, exitUsage, "read-only only"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--host-volume", "data"}, exitUsage, "NAME=PATH"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--task-host-dirs", "/,/usr"}, exitUsage, "root directory"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--task-netns", "/etc/hostname"}, exitUsage, "--task-netns: task network namespace /etc/hostname is not a namespace"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--task-netns", "/proc/self/ns/pid"}, exitUsage, "--task-netns: task network namespace /proc/self/ns/pid is a namespace of another kind"},
		{[]string{"agora", "agent", "--data-dir", "DATA", "--join", "x:1", "--task-netns", "/nonexistent/netns"}, exitUsage, "--task-netns: task network namespace: open /nonexistent/netns"},
		{[]string{"agora", "tls", "ca", "create", "--days", "0"}, exitUsage, "--days"},
		{[]string{"agora", "tls", "cert", "create"}, exitUsage, "takes one NAME"},
		{[]string{"agora", "tls", "cert", "create", "../m1"}, exitUsage, `NAME "../m1"`},
		{[]string{"agora", "tls", "cert", "create", "m1", "--host", "https://m1:8080"}, exitUsage, `--host "https://m1:8080"`},
		{[]string{"agora", "tls", "cert", "create", "m1", "--dir", "DATA", "--ca", "/nonexistent/ca.pem"}, exitError, "the CA (--ca, --ca-key)"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[1:], " "), func(t *testing.T) {
			for i, a := range tt.args {
				if a == "DATA" {
					tt.args[i] = t.TempDir()
				}
			}
			var stderr bytes.Buffer
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if got := exitCode(err, &stderr); got != tt.want {
				t.Fatalf("exit code = %d (%v), want %d", got, err, tt.want)
			}
			if !strings.Contains(stderr.String(), tt.msg) {
				t.Errorf("stderr = %q, want it to say %q", stderr.String(), tt.msg)
			}
		})
	}
}

// TestEveryCommandHasHelpWithAnExample walks the command tree: each command answers --help
// with its usage and at least one example.
func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	var walk func(path []string, names []string)
	seen := 0
	walk = func(path []string, _ []string) {
		var out bytes.Buffer
		args := append(append([]string{"agora"}, path...), "--help")
		if err := run(context.Background(), args, &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		seen++
		if !regexp.MustCompile(`Examples:\n\s+(agora|source <\(agora) `).MatchString(out.String()) {
			t.Errorf("%s has no example:\n%s", strings.Join(args, " "), out.String())
		}
		// Subcommands are listed under COMMANDS: one per line, name first.
		_, cmds, ok := strings.Cut(out.String(), "COMMANDS:\n")
		if !ok {
			return
		}
		cmds, _, _ = strings.Cut(cmds, "\n\n")
		for _, line := range strings.Split(cmds, "\n") {
			name := strings.TrimSuffix(strings.Fields(line)[0], ",")
			if name == "help" {
				continue
			}
			walk(append(append([]string{}, path...), name), nil)
		}
	}
	walk(nil, nil)
	if seen < 40 {
		t.Fatalf("walked %d commands; the tree has more", seen)
	}
}

// TestOutputFormats: --output yaml keeps the JSON's field names and order, in block style.
func TestOutputFormats(t *testing.T) {
	var out bytes.Buffer
	v := struct {
		Zeta  string            `json:"zeta"`
		Alpha []int             `json:"alpha"`
		Inner map[string]string `json:"inner"`
		Quote string            `json:"quote"`
	}{"z", []int{1, 2}, map[string]string{"k": "v"}, "true"}
	if err := printYAML(&out, v); err != nil {
		t.Fatal(err)
	}
	want := "zeta: z\nalpha:\n  - 1\n  - 2\ninner:\n  k: v\nquote: \"true\"\n"
	if out.String() != want {
		t.Fatalf("yaml:\n%s\nwant:\n%s", out.String(), want)
	}
}

// TestDevServesPing runs `agora dev` as a user would, against the real containerd, and asks it
// the questions the README tells a new user to ask.
func TestDevServesPing(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, logs containerdtest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"agora", "--log-format", "json", "dev", "--data-dir", t.TempDir(), "--containerd", sock, "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--dns", "127.0.0.1:0",
			"--agent-http", "127.0.0.1:0", "--containerd-namespace", ns, "--resources", "cpus:1;mem:512;disk:1000;ports:" + taskPortRange()}, &out, &logs)
	}()

	apiRe := regexp.MustCompile(`API:\s+(http://\S+)`)
	var base string
	deadline := time.Now().Add(20 * time.Second)
	for base == "" {
		if m := apiRe.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("agora dev exited early: %v; output:\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agora dev never said where its API is; output:\n%s", out.String())
		}
	}

	resp, err := http.Get(base + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "pong\n" {
		t.Fatalf("GET /ping = %d %q, want 200 pong", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"role": "dev"`) || !strings.Contains(string(body), sock) {
		t.Fatalf("GET /v1/info = %d %s, want a dev node on %s", resp.StatusCode, body, sock)
	}

	// The client commands see the dev node's one master, leading.
	var leader bytes.Buffer
	deadline = time.Now().Add(10 * time.Second)
	for {
		leader.Reset()
		err := run(context.Background(), []string{"agora", "cluster", "leader", "--master", base, "-o", "json"}, &leader, io.Discard)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agora cluster leader: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(leader.String(), `"id": "m-`) {
		t.Fatalf("agora cluster leader -o json = %s", leader.String())
	}
	var members bytes.Buffer
	if err := run(context.Background(), []string{"agora", "cluster", "members", "--master", base}, &members, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^m-\S+\s+master\s+127\.0\.0\.1:\d+\s+127\.0\.0\.1:\d+\s+alive$`).MatchString(members.String()) {
		t.Fatalf("agora cluster members =\n%s", members.String())
	}

	// Its agent registers and runs a task, whose states reach the master.
	// The master lists the agent once the registration is committed; the agent takes tasks once
	// it has the master's answer, a moment later, and says 503 "retry" until then.
	agents := waitAgents(t, base, func(as []api.Agent) bool { return len(as) == 1 })
	info := api.TaskInfo{TaskID: "dev-hello", Cmd: "echo hello from the host", Resources: resources.Resources{CPUs: 0.1, Mem: 32}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code := httpJSON(t, "POST", "http://"+agents[0].HTTP+"/v1/tasks", info, nil)
		if code == http.StatusAccepted {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("launch on the dev agent: %d", code)
		}
	}
	waitMasterState(t, base, "dev-hello", task.Finished)
	var tasks bytes.Buffer
	if err := run(context.Background(), []string{"agora", "task", "list", "--master", base, "--state", "finished"}, &tasks, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^dev-hello\s+TASK_FINISHED\s+-\s+\S+-S0\s`).MatchString(tasks.String()) {
		t.Fatalf("agora task list --state finished =\n%s", tasks.String())
	}
	tasks.Reset()
	if err := run(context.Background(), []string{"agora", "task", "list", "--master", base, "--state", "running"}, &tasks, io.Discard); err != nil || strings.Contains(tasks.String(), "dev-hello") {
		t.Fatalf("agora task list --state running = %v\n%s", err, tasks.String())
	}
	if err := run(context.Background(), []string{"agora", "task", "list", "--master", base, "--state", "sleepy"}, io.Discard, io.Discard); !errors.As(err, new(usageError)) {
		t.Fatalf("a bad --state: %v, want a usage error", err)
	}
	// Both embedded frameworks have subscribed.
	var fws bytes.Buffer
	deadline = time.Now().Add(10 * time.Second)
	for !regexp.MustCompile(`(?m)^\S+-000\d\s+marathon\s+\*\s+yes\s`).MatchString(fws.String()) ||
		!regexp.MustCompile(`(?m)^\S+-000\d\s+chronos\s+\*\s+yes\s`).MatchString(fws.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("agora framework list =\n%s", fws.String())
		}
		fws.Reset()
		if err := run(context.Background(), []string{"agora", "framework", "list", "--master", base}, &fws, io.Discard); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := readLogs(t, "http://"+agents[0].HTTP, "dev-hello"); got != "hello from the host\n" {
		t.Fatalf("the task's stdout: %q", got)
	}
	// --log-format json: every line is a JSON object; the state changes carry their ids.
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line that is not JSON: %q", line)
		}
		msg, _ := rec["msg"].(string)
		switch {
		case msg == "leadership won" && strings.HasPrefix(fmt.Sprint(rec["master"]), "m-") && rec["term"] != nil:
			seen[msg] = true
		case msg == "agent registered" && rec["agent"] == agents[0].ID:
			seen[msg] = true
		}
	}
	if !seen["leadership won"] || !seen["agent registered"] {
		t.Fatalf("the JSON logs lack the leadership or registration line with ids (%v):\n%s", seen, logs.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agora dev after Ctrl-C: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agora dev did not stop within 20s of its context ending")
	}
}
