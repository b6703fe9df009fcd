package dnsserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/agora-sched/agora/master/discovery"
)

// testView: /group/web with two healthy instances (ports named http and admin, admin both udp
// and tcp) on two agents, one of them IPv6, and an unhealthy third; a job's run; an external
// framework's task; three masters, m2 leading.
func testView() *discovery.View {
	ip := netip.MustParseAddr
	return &discovery.View{Index: 77, Term: 4, Leader: "m2", LeaderID: "m2",
		Masters: []discovery.Master{{ID: "m1", IPs: []netip.Addr{ip("10.1.0.1")}}, {ID: "m2", IPs: []netip.Addr{ip("10.1.0.2")}}, {ID: "m3", IPs: []netip.Addr{ip("10.1.0.3")}}},
		Agents: []discovery.Agent{{ID: "uuid-S0", IPs: []netip.Addr{ip("10.0.0.1")}}, {ID: "uuid-S1", IPs: []netip.Addr{ip("fd00::2")}},
			{ID: "uuid-S2", IPs: []netip.Addr{ip("10.0.0.3")}}},
		Services: []discovery.Service{
			{Framework: "Ext.Framework", Name: "worker", Label: "worker", Instances: []discovery.Instance{
				{TaskID: "x1", AgentID: "uuid-S2", IPs: []netip.Addr{ip("10.0.0.3")}, Healthy: true, Ports: []discovery.Port{{Number: 9000, Protocol: "tcp"}}}}},
			{Framework: "chronos", Name: "prod.backup", Label: "prod-backup", Instances: []discovery.Instance{
				{TaskID: "j1", AgentID: "uuid-S0", IPs: []netip.Addr{ip("10.0.0.1")}, Healthy: true}}},
			{Framework: "marathon", Name: "/group/web", Label: "web-group", Instances: []discovery.Instance{
				{TaskID: "w1", AgentID: "uuid-S0", IPs: []netip.Addr{ip("10.0.0.1")}, Healthy: true,
					Ports: []discovery.Port{{Number: 31000, Name: "http", Protocol: "tcp"}, {Number: 31001, Name: "admin", Protocol: "udp"}, {Number: 31001, Name: "admin", Protocol: "tcp"}}},
				{TaskID: "w2", AgentID: "uuid-S1", IPs: []netip.Addr{ip("fd00::2")}, Healthy: true,
					Ports: []discovery.Port{{Number: 32000, Name: "http", Protocol: "tcp"}, {Number: 32001, Name: "admin", Protocol: "udp"}, {Number: 32001, Name: "admin", Protocol: "tcp"}}},
				{TaskID: "w3", AgentID: "uuid-S2", IPs: []netip.Addr{ip("10.0.0.3")}, Healthy: false,
					Ports: []discovery.Port{{Number: 33000, Name: "http", Protocol: "tcp"}}},
			}},
		}}
}

// serve runs a Server on loopback, answering from v, until the test ends.
func serve(t testing.TB, cfg Config, v *discovery.View) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		s.Update(v, time.Now())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// ask asks the server one question over netw ("udp" or "tcp").
func ask(t *testing.T, addr, netw, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], netw, err)
	}
	return r
}

// values are an answer's records as strings without their names and TTLs, sorted.
func values(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		s := rr.String()
		hdr := rr.Header().String()
		out = append(out, strings.TrimPrefix(s, hdr))
	}
	slices.Sort(out)
	return out
}

func TestAnswers(t *testing.T) {
	s := serve(t, Config{}, testView())
	addr := s.Addr()
	target := func(task, agent string) string {
		return discovery.InstanceLabel("web-group", task, agent) + ".marathon.agora."
	}
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web-group.marathon.agora", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"Web-Group.Marathon.AGORA", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"web-group.marathon.agora", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::2"}},
		{"_web-group._tcp.marathon.agora", dns.TypeSRV, dns.RcodeSuccess, []string{
			"0 0 31000 " + target("w1", "uuid-S0"), "0 0 31001 " + target("w1", "uuid-S0"), "0 0 32000 " + target("w2", "uuid-S1"), "0 0 32001 " + target("w2", "uuid-S1")}},
		{"_web-group._udp.marathon.agora", dns.TypeSRV, dns.RcodeSuccess, []string{"0 0 31001 " + target("w1", "uuid-S0"), "0 0 32001 " + target("w2", "uuid-S1")}},
		{"_http._web-group._tcp.marathon.agora", dns.TypeSRV, dns.RcodeSuccess, []string{"0 0 31000 " + target("w1", "uuid-S0"), "0 0 32000 " + target("w2", "uuid-S1")}},
		{target("w1", "uuid-S0"), dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{target("w2", "uuid-S1"), dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::2"}},
		{target("w3", "uuid-S2"), dns.TypeA, dns.RcodeNameError, nil}, // unhealthy
		{"prod-backup.chronos.agora", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1"}},
		{"worker.ext-framework.agora", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.3"}},
		{"_worker._tcp.ext-framework.agora", dns.TypeSRV, dns.RcodeSuccess, []string{"0 0 9000 " + discovery.InstanceLabel("worker", "x1", "uuid-S2") + ".ext-framework.agora."}},
		{"leader.agora", dns.TypeA, dns.RcodeSuccess, []string{"10.1.0.2"}},
		{"master.agora", dns.TypeA, dns.RcodeSuccess, []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"}},
		{"agent.agora", dns.TypeA, dns.RcodeSuccess, []string{"10.0.0.1", "10.0.0.3"}},
		{"agent.agora", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::2"}},
		{"uuid-s1.agent.agora", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::2"}},
		{"leader.agora", dns.TypeSRV, dns.RcodeSuccess, nil}, // no records of that type: NOERROR
		{"nothing.marathon.agora", dns.TypeA, dns.RcodeNameError, nil},
		{"agora", dns.TypeNS, dns.RcodeSuccess, []string{"ns1.agora."}},
		{"example.com", dns.TypeA, dns.RcodeRefused, nil},
		{"agora.example.com", dns.TypeA, dns.RcodeRefused, nil},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			r := ask(t, addr, netw, tt.name, tt.qtype)
			if r.Rcode != tt.rcode || !slices.Equal(values(r.Answer), tt.want) {
				t.Errorf("%s %s over %s: %s %v, want %s %v", tt.name, dns.TypeToString[tt.qtype], netw, dns.RcodeToString[r.Rcode], values(r.Answer),
					dns.RcodeToString[tt.rcode], tt.want)
				continue
			}
			if tt.rcode == dns.RcodeRefused {
				continue
			}
			if !r.Authoritative {
				t.Errorf("%s: not authoritative", tt.name)
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl != 5 {
					t.Errorf("%s: TTL %d, want 5", tt.name, rr.Header().Ttl)
				}
			}
			if len(r.Answer) == 0 && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("%s %s: no answer and no SOA in authority: %v", tt.name, dns.RcodeToString[r.Rcode], r.Ns)
			}
		}
	}
	// SRV answers carry their targets' addresses.
	r := ask(t, addr, "udp", "_http._web-group._tcp.marathon.agora", dns.TypeSRV)
	if got := values(r.Extra); !slices.Equal(got, []string{"10.0.0.1", "fd00::2"}) {
		t.Errorf("SRV additional section %v", got)
	}
	// _view says which view: the leader's index and term.
	r = ask(t, addr, "udp", "_view.agora", dns.TypeTXT)
	if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), `"index=77" "term=4" "built-by=m2"`) {
		t.Errorf("_view.agora TXT: %v", r.Answer)
	}
}

// TestGoResolver: Go's resolver, dialing the server, finds an app's SRV records and addresses.
func TestGoResolver(t *testing.T) {
	s := serve(t, Config{}, testView())
	for _, netw := range []string{"udp", "tcp"} {
		res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, netw, s.Addr())
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, srvs, err := res.LookupSRV(ctx, "", "", "_http._web-group._tcp.marathon.agora.")
		if err != nil {
			t.Fatalf("LookupSRV over %s: %v", netw, err)
		}
		var ports []int
		for _, srv := range srvs {
			ports = append(ports, int(srv.Port))
			addrs, err := res.LookupHost(ctx, srv.Target)
			if err != nil || len(addrs) != 1 {
				t.Fatalf("the target %s: %v %v", srv.Target, addrs, err)
			}
		}
		slices.Sort(ports)
		if !slices.Equal(ports, []int{31000, 32000}) {
			t.Fatalf("_http._web-group._tcp over %s: ports %v", netw, ports)
		}
		if _, err := res.LookupHost(ctx, "gone.marathon.agora."); err == nil || !err.(*net.DNSError).IsNotFound {
			t.Fatalf("a name not there: %v, want not found", err)
		}
		cancel()
	}
}

// TestTruncationAndTCP: an SRV answer too big for 512 bytes comes truncated over UDP, whole over
// TCP and with EDNS0's size.
func TestTruncationAndTCP(t *testing.T) {
	v := &discovery.View{}
	svc := discovery.Service{Framework: "marathon", Name: "/big", Label: "big"}
	for i := range 40 {
		svc.Instances = append(svc.Instances, discovery.Instance{TaskID: fmt.Sprintf("t%d", i), AgentID: fmt.Sprintf("u-S%d", i),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})}, Healthy: true, Ports: []discovery.Port{{Number: uint16(31000 + i), Protocol: "tcp"}}})
	}
	v.Services = []discovery.Service{svc}
	s := serve(t, Config{}, v)
	udp := ask(t, s.Addr(), "udp", "_big._tcp.marathon.agora", dns.TypeSRV)
	if !udp.Truncated || len(udp.Answer) >= 40 {
		t.Fatalf("over UDP: truncated %v, %d records", udp.Truncated, len(udp.Answer))
	}
	tcp := ask(t, s.Addr(), "tcp", "_big._tcp.marathon.agora", dns.TypeSRV)
	if tcp.Truncated || len(tcp.Answer) != 40 || len(tcp.Extra) != 40 {
		t.Fatalf("over TCP: truncated %v, %d records, %d additional", tcp.Truncated, len(tcp.Answer), len(tcp.Extra))
	}
	m := new(dns.Msg)
	m.SetQuestion("big.marathon.agora.", dns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&dns.Client{Net: "udp", UDPSize: 4096}).Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("EDNS0 4096: truncated %v, %d records", r.Truncated, len(r.Answer))
	}
}

// TestRecursors: names outside the domain go to the recursors in turn; without an answer,
// SERVFAIL.
func TestRecursors(t *testing.T) {
	upstream := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)}}
		w.WriteMsg(m)
	})}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream.PacketConn = pc
	go upstream.ActivateAndServe()
	defer upstream.Shutdown()
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // takes nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := serve(t, Config{Recursors: []string{dead.LocalAddr().String(), pc.LocalAddr().String()}}, testView())
	r := ask(t, s.Addr(), "udp", "www.example.com", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || !slices.Equal(values(r.Answer), []string{"192.0.2.7"}) {
		t.Fatalf("forwarded: %s %v", dns.RcodeToString[r.Rcode], values(r.Answer))
	}
	if r = ask(t, s.Addr(), "udp", "leader.agora", dns.TypeA); !r.RecursionAvailable || values(r.Answer)[0] != "10.1.0.2" {
		t.Fatalf("its own names: %v", r)
	}
	lone := serve(t, Config{Recursors: []string{dead.LocalAddr().String()}}, testView())
	if r = ask(t, lone.Addr(), "udp", "www.example.com", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("no recursor answers: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

// TestBeforeAnyView: until the first view, names of the domain answer SERVFAIL (nothing to deny
// yet), never NXDOMAIN, which resolvers would cache.
func TestBeforeAnyView(t *testing.T) {
	s := serve(t, Config{Domain: "Cluster.Example."}, nil)
	if r := ask(t, s.Addr(), "udp", "web.marathon.cluster.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("before a view: %s", dns.RcodeToString[r.Rcode])
	}
	s.Update(testView(), time.Now())
	if r := ask(t, s.Addr(), "udp", "web-group.marathon.cluster.example", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("after: %v", r)
	}
	if r := ask(t, s.Addr(), "udp", "web-group.marathon.agora", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("the default domain, not served: %s", dns.RcodeToString[r.Rcode])
	}
}

func TestConfigRefusals(t *testing.T) {
	for _, cfg := range []Config{
		{Addr: "127.0.0.1:0", TTL: 500 * time.Millisecond},
		{Addr: "127.0.0.1:0", Domain: "bad domain..x"},
		{Addr: "127.0.0.1:notaport"},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// TestWildcardAnswersFromAddressAsked: a server on 0.0.0.0 answers a query sent to one of the
// host's addresses from that address (127.0.0.2 here, where the kernel's own choice would be
// 127.0.0.1): a client's connected socket takes nothing else.
func TestWildcardAnswersFromAddressAsked(t *testing.T) {
	s := serve(t, Config{Addr: "0.0.0.0:0"}, testView())
	_, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.2", "127.0.0.1"} {
		r := ask(t, net.JoinHostPort(host, port), "udp", "leader.agora", dns.TypeA)
		if !slices.Equal(values(r.Answer), []string{"10.1.0.2"}) {
			t.Fatalf("asked at %s: %v", host, r)
		}
	}
}

// TestNotDNSGetsFormErr: a packet with a header but no readable question gets FORMERR with its
// id, over UDP, as miekg/dns's server answers, rather than nothing.
func TestNotDNSGetsFormErr(t *testing.T) {
	s := serve(t, Config{}, testView())
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	// Id 0x1234, a query, one question that is not there.
	if _, err := conn.Write([]byte{0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'b', 'r'}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var m dns.Msg
	if err := m.Unpack(buf[:n]); err != nil || m.Id != 0x1234 || !m.Response || m.Rcode != dns.RcodeFormatError {
		t.Fatalf("answer %v (%v)", &m, err)
	}
}
