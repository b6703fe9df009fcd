package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/lb/lbtest"
)

// lbApp is an app of the test image with 2 instances, served by agora lb on servicePort and
// by Host header vhost; its HTTP health check keeps an instance out until it answers. Told to
// stop, an instance serves on for 1 s, as a service behind a load balancer drains: Marathon
// kills the old instances the moment their replacements pass their health checks, and the
// leader's view, agora lb and HAProxy's reload take a fraction of a second to put the new ones
// in; an instance that quit at once could leave HAProxy only dead servers for that moment.
func lbApp(id, vhost string, servicePort int) string {
	return fmt.Sprintf(`{"id": %q, "container": {"type": "DOCKER", "docker": {"image": %q}},
		"args": ["-sleep", "24h", "-ignore-term", "1s"], "taskKillGracePeriodSeconds": 5, "cpus": 0.1, "mem": 32, "instances": 2,
		"portDefinitions": [{"port": %d, "name": "http"}],
		"labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": %q},
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]}`,
		id, containerdtest.TestAppImage, servicePort, vhost)
}

var testappTask = regexp.MustCompile(`testapp task="([^"]*)"`)

// askLB asks HAProxy on port for / with Host host, on a new connection as curl does: the
// status and the answering instance's task id.
func askLB(port int, host string) (int, string, error) {
	code, body, err := lbtest.Get(port, host)
	if m := testappTask.FindStringSubmatch(body); m != nil {
		return code, m[1], err
	}
	return code, "", err
}

// lbReaches says whether requests through HAProxy with Host host reach each of the app's
// tasks, and only them.
func lbReaches(port int, host string, a marathonApp) bool {
	want := map[string]bool{}
	for _, tk := range a.Tasks {
		want[tk.ID] = true
	}
	seen := map[string]bool{}
	for range 6 * len(want) {
		code, task, err := askLB(port, host)
		if err != nil || code != http.StatusOK || !want[task] {
			return false
		}
		seen[task] = true
	}
	return len(seen) == len(want)
}

// TestLBOnADevNode: agora dev and agora lb with a real HAProxy. Two apps of 2 instances with
// HAPROXY_0_VHOST labels: requests with each app's Host reach both instances of that app (and
// its service port too); then a rolling upgrade of one app (a changed env) while a bounded
// loop of requests runs through HAProxy: every request is answered 200, by the app.
func TestLBOnADevNode(t *testing.T) {
	t.Parallel()
	haproxy := lbtest.HAProxy(t)
	base, _, _ := startMarathonDev(t, taskPorts())
	shopPort, blogPort, httpPort := lbtest.FreePort(t), lbtest.FreePort(t), lbtest.FreePort(t)
	postApp(t, base, lbApp("/lb/shop", "shop.test", shopPort))
	postApp(t, base, lbApp("/lb/blog", "blog.test", blogPort))

	dir := t.TempDir()
	_, got := startCmd(t, []string{"lb", "--masters", base, "--group", "external", "--http-port", fmt.Sprint(httpPort),
		"--haproxy", haproxy, "--haproxy-config", filepath.Join(dir, "haproxy.cfg"), "--stats-socket", filepath.Join(dir, "haproxy.sock"),
		"--metrics-addr", "127.0.0.1:0"}, `metrics: (http://\S+)/metrics`)
	metrics := got[0]

	healthy := func(a marathonApp) bool { return a.TasksHealthy == 2 && len(a.Tasks) == 2 && len(a.Deployments) == 0 }
	shop := waitApp(t, base, "/lb/shop", "2 healthy", healthy)
	blog := waitApp(t, base, "/lb/blog", "2 healthy", healthy)
	waitDNS(t, "both shop instances through HAProxy by Host", 30*time.Second, func() bool { return lbReaches(httpPort, "shop.test", shop) })
	waitDNS(t, "both blog instances through HAProxy by Host", 30*time.Second, func() bool { return lbReaches(httpPort, "Blog.Test:80", blog) })
	if !lbReaches(shopPort, "anything", shop) {
		t.Fatal("the shop's service port does not reach both of its instances")
	}
	if code, _, err := askLB(httpPort, "nobody.test"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a host no app has: %d %v, want HAProxy's 503", code, err)
	}

	// A rolling upgrade of the shop while requests run through HAProxy: new instances start,
	// pass their health checks, old ones are killed; agora lb follows. The loop is bounded in
	// count and time; it runs until the lb serves the new instances only.
	loop := lbtest.StartLoop(t, httpPort, "shop.test", 20000, 120*time.Second, func(code int, body string, err error) bool {
		m := testappTask.FindStringSubmatch(body)
		return err == nil && code == http.StatusOK && m != nil && strings.HasPrefix(m[1], "lb_shop.")
	})
	var res map[string]any
	if code := httpJSON(t, "PUT", base+"/v2/apps/lb/shop", json.RawMessage(`{"env": {"VERSION": "2"}}`), &res); code != http.StatusOK {
		t.Fatalf("upgrade: %d %v", code, res)
	}
	upgraded := waitApp(t, base, "/lb/shop", "upgraded, 2 healthy", func(a marathonApp) bool {
		if !healthy(a) {
			return false
		}
		for _, tk := range a.Tasks {
			for _, old := range shop.Tasks {
				if tk.ID == old.ID {
					return false
				}
			}
		}
		return true
	})
	waitDNS(t, "the new instances only through HAProxy", 30*time.Second, func() bool { return lbReaches(httpPort, "shop.test", upgraded) })
	total, failed := loop.Stop()
	if failed > 0 || total < 50 {
		t.Fatalf("%d of %d requests during the upgrade failed", failed, total)
	}
	t.Logf("%d requests through HAProxy during a rolling upgrade, every one answered 200", total)
	if !lbReaches(httpPort, "blog.test", blog) {
		t.Fatal("the blog is no longer served after the shop's upgrade")
	}

	// Its metrics: reloads, and what the config holds.
	resp, err := http.Get(metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`agora_lb_backends 2`, `agora_lb_servers 4`, `agora_lb_master_connected 1`, `agora_lb_reloads_total{result="invalid"} 0`} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !regexp.MustCompile(`agora_lb_reloads_total\{result="ok"\} ([2-9]|\d\d+)\n`).Match(body) {
		t.Errorf("/metrics: fewer than 2 ok reloads:\n%s", body)
	}
	resp, err = http.Get(metrics + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/health: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestLBBadFlags: a wrong command line is a usage error naming the flag, before anything runs.
func TestLBBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"lb"}, "--group is required"},
		{[]string{"lb", "--group", " , "}, "--group is required"},
		{[]string{"lb", "--group", "*", "--bind-addr", "localhost"}, `--bind-addr: "localhost" is not an IP address`},
		{[]string{"lb", "--group", "*", "--allow-bind-addr", "0.0.0.0,public"}, `--allow-bind-addr: "public" is not an IP address or *`},
		{[]string{"lb", "--group", "*", "--http-port", "70000"}, "--http-port: 70000 is not a port"},
		{[]string{"lb", "--group", "*", "--stats-socket", "/tmp/a b.sock"}, "--stats-socket: want a path without spaces"},
		{[]string{"lb", "--group", "*", "--masters", "ftp://x"}, "--masters: client: master address"},
		{[]string{"lb", "--group", "*", "--token", "a", "--token-file", "/dev/null"}, "--token and --token-file: give one"},
		{[]string{"lb", "--group", "*", "--token-file", "/nonexistent/token"}, "--token-file:"},
		{[]string{"lb", "extra"}, "lb takes no arguments"},
		{[]string{"lb", "--group", "*", "--haproxy", "/nonexistent/haproxy"}, "--haproxy: exec: \"/nonexistent/haproxy\""},
	} {
		var stderr strings.Builder
		err := run(t.Context(), append([]string{"agora"}, tc.args...), io.Discard, &stderr)
		if code := exitCode(err, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("agora %v: exit %d, %q; want exit %d with %q", tc.args, code, stderr.String(), exitUsage, tc.msg)
		}
	}
}
