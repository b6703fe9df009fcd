package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// dnsApp is an app of the test image with 2 instances, one port named http, and an HTTP health
// check that never kills (an unhealthy instance stays, out of the answers).
func dnsApp(id string, instances int) string {
	return fmt.Sprintf(`{"id": %q, "container": {"type": "DOCKER", "docker": {"image": %q}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": %d, "portDefinitions": [{"port": 0, "name": "http"}],
		"labels": {"HAPROXY_GROUP": "external"},
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 0}]}`,
		id, containerdtest.TestAppImage, instances)
}

// digSRV asks dig for name's SRV records at the DNS server addr and answers their ports, sorted.
func digSRV(t *testing.T, addr, name string) []int {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("dig", "@"+host, "-p", port, "+short", "+tries=1", "+time=2", name, "SRV").CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s SRV: %v\n%s (scripts/netdeps.sh installs dig)", name, err, out)
	}
	var ports []int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		p, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("dig: %q", line)
		}
		ports = append(ports, p)
	}
	slices.Sort(ports)
	return ports
}

// resolver is Go's resolver asking only the DNS server at addr.
func resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
}

// srvPorts asks Go's resolver for name's SRV records and checks that their targets resolve: it
// answers their ports, sorted; none when the name is not found.
func srvPorts(addr, name string) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, srvs, err := resolver(addr).LookupSRV(ctx, "", "", name)
	if dnsErr, ok := err.(*net.DNSError); ok && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ports []int
	for _, s := range srvs {
		if addrs, err := resolver(addr).LookupHost(ctx, s.Target); err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("the SRV target %s does not resolve: %v", s.Target, err)
		}
		ports = append(ports, int(s.Port))
	}
	slices.Sort(ports)
	return ports, nil
}

// lookupSRVPorts is srvPorts, failing the test on an error.
func lookupSRVPorts(t *testing.T, addr, name string) []int {
	t.Helper()
	ports, err := srvPorts(addr, name)
	if err != nil {
		t.Fatalf("SRV %s: %v", name, err)
	}
	return ports
}

// srvPortsAre says whether name's SRV records are on ports, as Go's resolver finds them.
func srvPortsAre(addr, name string, ports []int) bool {
	got, err := srvPorts(addr, name)
	return err == nil && slices.Equal(got, ports)
}

// query asks the DNS server at addr one question over UDP.
func query(addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, addr)
	return r, err
}

// waitDNS asks until cond holds of the answer, for at most d; it answers how long that took.
func waitDNS(t *testing.T, what string, d time.Duration, ask func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ask() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func appTaskPorts(a marathonApp) []int {
	var ports []int
	for _, tk := range a.Tasks {
		ports = append(ports, tk.Ports...)
	}
	slices.Sort(ports)
	return ports
}

// TestDNSOnADevNode: agora dev serves DNS; an app of 2 instances with an HTTP health check is
// found by name with dig and with Go's resolver (both SRV records, the right ports); an instance
// that fails its health check leaves the answers within the TTL; scaled to 0, the name is gone.
func TestDNSOnADevNode(t *testing.T) {
	t.Parallel()
	first := taskPorts()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	_, got := startCmd(t, []string{"dev", "--data-dir", t.TempDir(), "--containerd", sock, "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--agent-http", "127.0.0.1:0", "--containerd-namespace", ns, "--allocation-interval", "200ms", "--dns", "127.0.0.1:0",
		"--resources", fmt.Sprintf("cpus:2;mem:2048;disk:1000;ports:[%d-%d]", first, first+40)}, `API:\s+(http://\S+)`, `DNS:\s+(\S+), UDP and TCP, domain agora`)
	base, dnsAddr := got[0], got[1]
	const ttl = 5 * time.Second

	// The cluster's own names answer at once.
	waitDNS(t, "leader.agora", 10*time.Second, func() bool {
		r, err := query(dnsAddr, "leader.agora", dns.TypeA)
		return err == nil && len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "127.0.0.1"
	})
	if r, err := query(dnsAddr, "example.com", dns.TypeA); err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("a name outside the domain: %v %v, want REFUSED", r, err)
	}

	postApp(t, base, dnsApp("/dns/web", 2))
	a := waitApp(t, base, "/dns/web", "2 healthy", func(a marathonApp) bool { return a.TasksHealthy == 2 && len(a.Tasks) == 2 })
	ports := appTaskPorts(a)
	waitDNS(t, "both instances in the SRV answer", 10*time.Second, func() bool { return slices.Equal(digSRV(t, dnsAddr, "_web-dns._tcp.marathon.agora"), ports) })
	if got := lookupSRVPorts(t, dnsAddr, "_web-dns._tcp.marathon.agora."); !slices.Equal(got, ports) {
		t.Fatalf("Go's resolver: SRV ports %v, want %v", got, ports)
	}
	if got := lookupSRVPorts(t, dnsAddr, "_http._web-dns._tcp.marathon.agora."); !slices.Equal(got, ports) {
		t.Fatalf("the named port: SRV ports %v, want %v", got, ports)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	addrs, err := resolver(dnsAddr).LookupHost(ctx, "web-dns.marathon.agora.")
	cancel()
	if err != nil || !slices.Equal(addrs, []string{"127.0.0.1"}) {
		t.Fatalf("web-dns.marathon.agora: %v %v", addrs, err)
	}

	// GET /v1/services: the app with its DNS name, its labels, its service port and both
	// instances' host ports; Marathon's text form of it; and a stream that starts with it.
	svc := waitService(t, base, "/dns/web", func(s api.ServiceEntry) bool { return len(s.Instances) == 2 })
	if svc.DNS != "web-dns.marathon.agora." || svc.Labels["HAPROXY_GROUP"] != "external" || len(svc.Ports) != 1 ||
		svc.Ports[0].Name != "http" || svc.Ports[0].ServicePort < 10000 || !slices.Equal(serviceHostPorts(svc), ports) {
		t.Fatalf("GET /v1/services: %+v; want its DNS name, labels, service port and host ports %v", svc, ports)
	}
	text := servicesText(t, base)
	wantLine := fmt.Sprintf("dns_web\t%d\t", svc.Ports[0].ServicePort)
	for _, in := range svc.Instances {
		wantLine += fmt.Sprintf("%s:%d\t", in.Host, in.Ports[0])
	}
	if !strings.Contains(text, wantLine+"\n") {
		t.Fatalf("text form:\n%s\nwant the line %q", text, wantLine)
	}
	stream := followServices(t, base)
	if first := <-stream; len(serviceOf(first, "/dns/web").Instances) != 2 {
		t.Fatalf("the stream's first event: %+v", first)
	}

	// One instance fails its health check: it leaves the answers within one TTL of Marathon
	// seeing it unhealthy.
	sick := a.Tasks[0].Ports[0]
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/health/fail", sick), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if a, _ := getApp(t, base, "/dns/web"); a.TasksUnhealthy == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the instance never showed unhealthy")
		}
	}
	healthy := slices.DeleteFunc(slices.Clone(ports), func(p int) bool { return p == sick })
	took := waitDNS(t, "the unhealthy instance out of the answers", ttl, func() bool { return srvPortsAre(dnsAddr, "_web-dns._tcp.marathon.agora.", healthy) })
	t.Logf("the unhealthy instance left the answers %s after Marathon showed it", took)
	for deadline := time.After(ttl); ; {
		select {
		case doc := <-stream:
			if got := serviceHostPorts(serviceOf(doc, "/dns/web")); !slices.Equal(got, healthy) {
				continue // an event of another change, before it
			}
		case <-deadline:
			t.Fatal("the services stream did not tell that the unhealthy instance left within the TTL")
		}
		break
	}

	// Scaled to 0: the name is gone (NXDOMAIN, the SOA in authority).
	var res map[string]string
	if code := httpJSON(t, "PUT", base+"/v2/apps/dns/web", json.RawMessage(`{"instances": 0}`), &res); code != http.StatusOK {
		t.Fatalf("scale to 0: %d %v", code, res)
	}
	waitApp(t, base, "/dns/web", "no instance", func(a marathonApp) bool { return len(a.Tasks) == 0 })
	took = waitDNS(t, "the name gone", ttl, func() bool {
		r, err := query(dnsAddr, "web-dns.marathon.agora", dns.TypeA)
		return err == nil && r.Rcode == dns.RcodeNameError && len(r.Ns) == 1
	})
	t.Logf("scaled to 0: NXDOMAIN %s after the last instance ended", took)
	if got := digSRV(t, dnsAddr, "_web-dns._tcp.marathon.agora"); len(got) != 0 {
		t.Fatalf("dig after scale to 0: %v", got)
	}

	// The metrics count the queries by type and answer code, and show the view's age.
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`agora_dns_queries_total{qtype="SRV",rcode="NOERROR"}`, `agora_dns_queries_total{qtype="A",rcode="NXDOMAIN"}`,
		`agora_dns_queries_total{qtype="A",rcode="REFUSED"}`, "agora_dns_answer_seconds_bucket", "agora_discovery_view_age_seconds", `agora_discovery_view_refreshes_total{result="built"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
}

// viewTXT reads a DNS server's _view TXT record: index, term, built-by, age, leader.
func viewTXT(addr, domain string) (map[string]string, error) {
	r, err := query(addr, "_view."+domain, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if len(r.Answer) != 1 {
		return nil, fmt.Errorf("_view: %v", r)
	}
	out := map[string]string{}
	for _, kv := range r.Answer[0].(*dns.TXT).Txt {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out, nil
}

// TestDNSFromEveryMasterThroughLeaderKill: three masters serve DNS; a follower answers what the
// leader answers, from the view it fetched (its raft index shown); the leader is killed with
// SIGKILL and the other two keep answering every query with both instances, through the
// election and until the new leader's view has replaced the old one.
func TestDNSFromEveryMasterThroughLeaderKill(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	type dnsMaster struct {
		p               *process
		http, goss, dns string
	}
	args := func(join ...string) []string {
		a := []string{"master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--bootstrap-expect", "3", "--allocation-interval", "200ms", "--dns", "127.0.0.1:0", "--dns-domain", "cluster.test"}
		for _, j := range join {
			a = append(a, "--join", j)
		}
		return a
	}
	patterns := []string{`API:\s+(http://\S+)`, `gossip:\s+(\S+)`, `DNS:\s+(\S+), UDP`}
	var masters []dnsMaster
	p, got := startProcess(t, args(), patterns...)
	masters = append(masters, dnsMaster{p, got[0], got[1], got[2]})
	for range 2 {
		p, got := startProcess(t, args(masters[0].goss), patterns...)
		masters = append(masters, dnsMaster{p, got[0], got[1], got[2]})
	}
	leader := waitLeaderVia(t, masters[0].http, "")
	startCmd(t, []string{"agent", "--join", masters[1].goss, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:1024;disk:100;ports:" + taskPortRange()}, `API:\s+(http://\S+)`)
	waitAgents(t, leader, func(as []api.Agent) bool { return len(as) == 1 })
	postApp(t, leader, dnsApp("/dns/api", 2))
	a := waitApp(t, leader, "/dns/api", "2 healthy", func(a marathonApp) bool { return a.TasksHealthy == 2 && len(a.Tasks) == 2 })
	ports := appTaskPorts(a)

	const name = "_api-dns._tcp.marathon.cluster.test."
	var leaderIdx int
	for i, m := range masters {
		if m.http == leader {
			leaderIdx = i
		}
		waitDNS(t, "master "+m.http+" answers both instances", 10*time.Second, func() bool { return srvPortsAre(m.dns, name, ports) })
		// GET /v1/services: every master answers from its own copy of the view.
		waitService(t, m.http, "/dns/api", func(s api.ServiceEntry) bool { return slices.Equal(serviceHostPorts(s), ports) })
	}
	// The stream through a follower (which forwards it to the leader) carries both instances.
	for _, m := range masters {
		if m.http == leader {
			continue
		}
		first := <-followServices(t, m.http)
		if got := serviceHostPorts(serviceOf(first, "/dns/api")); !slices.Equal(got, ports) || first.Leader == "" {
			t.Fatalf("the stream through follower %s: %+v", m.http, first)
		}
		break
	}
	var leaderID string
	for i, m := range masters {
		v, err := viewTXT(m.dns, "cluster.test")
		if err != nil {
			t.Fatal(err)
		}
		if idx, _ := strconv.Atoi(v["index"]); idx == 0 || v["built-by"] != v["leader"] {
			t.Fatalf("master %d's view: %v; want the leader's, with its raft index", i, v)
		}
		leaderID = v["leader"]
		t.Logf("master %d answers from the view of index %s built by %s, %s old", i, v["index"], v["built-by"], v["age"])
	}
	if leaderID == "" || !regexp.MustCompile(`^m-`).MatchString(leaderID) {
		t.Fatalf("leader id %q", leaderID)
	}

	// kill -9 the leader: the two others answer every query, both instances, until a new leader
	// has built the view they answer from.
	if err := masters[leaderIdx].p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var survivors []dnsMaster
	for i, m := range masters {
		if i != leaderIdx {
			survivors = append(survivors, m)
		}
	}
	queries := 0
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		done := true
		for _, m := range survivors {
			r, err := query(m.dns, name, dns.TypeSRV)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
				t.Fatalf("%s after the leader's kill: %v %v; want both instances", time.Since(killed).Round(time.Millisecond), r, err)
			}
			queries++
			var doc api.Services
			if code := httpJSON(t, "GET", m.http+"/v1/services", nil, &doc); code != http.StatusOK || !slices.Equal(serviceHostPorts(serviceOf(doc, "/dns/api")), ports) {
				t.Fatalf("%s after the leader's kill: GET /v1/services %d %+v; want both instances", time.Since(killed).Round(time.Millisecond), code, doc)
			}
			v, err := viewTXT(m.dns, "cluster.test")
			if err != nil {
				t.Fatal(err)
			}
			if v["built-by"] == leaderID || v["built-by"] == "" {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new leader's view within 60s of the kill")
		}
	}
	t.Logf("%d queries answered with both instances in the %s until the new leader's view", queries, time.Since(killed).Round(time.Millisecond))
	for _, m := range survivors {
		if got := lookupSRVPorts(t, m.dns, name); !slices.Equal(got, ports) {
			t.Fatalf("under the new leader: %v, want %v", got, ports)
		}
		r, err := query(m.dns, "leader.cluster.test", dns.TypeA)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("leader.cluster.test: %v %v", r, err)
		}
	}
}

// waitService polls GET /v1/services until the service named name satisfies cond.
func waitService(t *testing.T, base, name string, cond func(api.ServiceEntry) bool) api.ServiceEntry {
	t.Helper()
	var last api.Services
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code := httpJSON(t, "GET", base+"/v1/services", nil, &last)
		if s := serviceOf(last, name); code == http.StatusOK && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/services: %d %+v; %s never as wanted", code, last, name)
		}
	}
}

// serviceOf is the service named name of a document (zero when it has none).
func serviceOf(doc api.Services, name string) api.ServiceEntry {
	for _, s := range doc.Services {
		if s.Name == name {
			return s
		}
	}
	return api.ServiceEntry{}
}

// serviceHostPorts are the first host ports of a service's instances, sorted.
func serviceHostPorts(s api.ServiceEntry) []int {
	var out []int
	for _, in := range s.Instances {
		if len(in.Ports) > 0 {
			out = append(out, in.Ports[0])
		}
	}
	slices.Sort(out)
	return out
}

// servicesText is GET /v1/services as Marathon's text list.
func servicesText(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/services", nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /v1/services as text: %s %s %s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

// followServices reads GET /v1/services as an event stream until the test ends: each
// "services" event's document, in order.
func followServices(t *testing.T, base string) <-chan api.Services {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/services", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("GET /v1/services as a stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan api.Services, 64)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "services":
				var doc api.Services
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &doc) == nil {
					select {
					case out <- doc:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	return out
}
