package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agora-sched/agora/master/discovery"
)

// Defaults of Config.
const (
	DefaultDomain = "agora"
	DefaultTTL    = 5 * time.Second
	// DevAddr is where `agora dev` serves DNS by default: Consul's port, on loopback.
	DevAddr = "127.0.0.1:8600"
)

// Config configures a Server.
type Config struct {
	// Addr is the UDP and TCP address to serve on (--dns): both on the same port.
	Addr string
	// Domain is the zone the server answers for (--dns-domain, DefaultDomain).
	Domain string
	// TTL of every record (--dns-ttl, DefaultTTL); whole seconds, at least 1.
	TTL time.Duration
	// Recursors are DNS servers (host or host:port) that names outside Domain are forwarded to
	// (--dns-recursors), in turn until one answers; none: such names are REFUSED.
	Recursors []string
	// SelfID is this master's id: its addresses are the zone's name server's (ns1.<domain>).
	SelfID string
	Logger *slog.Logger
}

// ForwardTimeout bounds each recursor's answer.
const ForwardTimeout = 2 * time.Second

// Server answers DNS queries for its domain from the latest view (Update), over UDP and TCP.
type Server struct {
	cfg    Config
	domain string // lower case, fully qualified: "agora."
	udp    net.PacketConn
	tcp    net.Listener
	zone   atomic.Pointer[zone] // nil until the first Update

	queries *prometheus.CounterVec
	// counters are queries' counters by qtypes' index (then "other") and rcode (up to 15),
	// each filled in at its first use.
	counters [len(qtypes) + 1][16]atomic.Pointer[prometheus.Counter]
	latency  prometheus.Histogram
	forward  map[string]*dns.Client // by network: "udp", "tcp"
}

// New checks cfg and binds its address, UDP and TCP (a port of 0: the same free port for
// both). Serve answers.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("dns: --dns-ttl must be at least 1s, got %s", cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	domain := strings.ToLower(dns.Fqdn(strings.Trim(cfg.Domain, ".")))
	if _, ok := dns.IsDomainName(domain); !ok || domain == "." {
		return nil, fmt.Errorf("dns: --dns-domain %q is not a domain name", cfg.Domain)
	}
	for i, r := range cfg.Recursors {
		if _, _, err := net.SplitHostPort(r); err != nil {
			r = net.JoinHostPort(strings.Trim(r, "[]"), "53")
		}
		if _, _, err := net.SplitHostPort(r); err != nil || r == "" {
			return nil, fmt.Errorf("dns: --dns-recursors: %q is not host or host:port", cfg.Recursors[i])
		}
		cfg.Recursors[i] = r
	}
	s := &Server{cfg: cfg, domain: domain, forward: map[string]*dns.Client{
		"udp": {Net: "udp", Timeout: ForwardTimeout}, "tcp": {Net: "tcp", Timeout: ForwardTimeout},
	}}
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.queries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_dns_queries_total",
		Help: "DNS queries this master answered, by query type and answer code."}, []string{"qtype", "rcode"})
	s.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agora_dns_answer_seconds",
		Help:    "How long this master took to answer a DNS query, from reading it to writing the answer (forwarded ones included).",
		Buckets: prometheus.ExponentialBuckets(0.000025, 2, 14)}) // 25 µs to 200 ms
	return s, nil
}

// listen binds the UDP and TCP sockets on one port.
func (s *Server) listen() error {
	var lastErr error
	for range 10 {
		udp, err := net.ListenPacket("udp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("dns: listen on %s (--dns): %w", s.cfg.Addr, err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			s.udp, s.tcp = udp, tcp
			return nil
		}
		udp.Close()
		lastErr = err
		if _, port, _ := net.SplitHostPort(s.cfg.Addr); port != "0" {
			break // a port of its own: the TCP one is taken
		}
	}
	return fmt.Errorf("dns: listen on %s (--dns) over TCP: %w", s.cfg.Addr, lastErr)
}

// Addr is the address the server answers on (UDP and TCP).
func (s *Server) Addr() string { return s.udp.LocalAddr().String() }

// Domain is the zone the server answers for, fully qualified ("agora.").
func (s *Server) Domain() string { return s.domain }

// Collectors are the server's metrics.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.queries, s.latency}
}

// Update makes the records of a view, read at readAt, the ones answered from now on.
func (s *Server) Update(v *discovery.View, readAt time.Time) {
	s.zone.Store(buildZone(s.domain, s.cfg.TTL, s.cfg.SelfID, v, readAt))
}

// Serve answers queries until ctx ends: over UDP (serveUDP), and over TCP through miekg/dns's
// server.
func (s *Server) Serve(ctx context.Context) error {
	tcp := &dns.Server{Listener: s.tcp, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- s.serveUDP() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if serr := tcp.ShutdownContext(sctx); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) && !strings.Contains(serr.Error(), "not started") {
		err = fmt.Errorf("dns: shutdown: %w", serr)
	}
	cancel()
	s.udp.Close()
	s.tcp.Close()
	waiting := 2 // both end once their sockets are closed
	if err != nil {
		waiting = 1
	}
	for range waiting {
		<-errc
	}
	return err
}

// Close releases the sockets of a server that never served.
func (s *Server) Close() {
	s.udp.Close()
	s.tcp.Close()
}

// qtypes are the query types the metrics name; others count as "other" (the last counters).
var qtypes = [...]struct {
	t    uint16
	name string
}{{dns.TypeA, "A"}, {dns.TypeAAAA, "AAAA"}, {dns.TypeSRV, "SRV"}, {dns.TypeTXT, "TXT"}, {dns.TypeSOA, "SOA"},
	{dns.TypeNS, "NS"}, {dns.TypeANY, "ANY"}, {dns.TypePTR, "PTR"}, {dns.TypeCNAME, "CNAME"}, {dns.TypeMX, "MX"}}

// ServeDNS answers one query (dns.Handler): the TCP server's.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	m := s.Answer(r, tcp)
	if err := w.WriteMsg(m); err != nil {
		s.cfg.Logger.Debug("dns: answer not written", "err", err)
	}
	s.observe(questionType(r), m.Rcode, start)
}

// questionType is the type r asks, 0 without one question.
func questionType(r *dns.Msg) uint16 {
	if len(r.Question) != 1 {
		return 0
	}
	return r.Question[0].Qtype
}

// observe counts a query of qtype answered with rcode, and how long it took since start.
func (s *Server) observe(qtype uint16, rcode int, start time.Time) {
	s.counter(qtype, rcode).Inc()
	s.latency.Observe(time.Since(start).Seconds())
}

// counter is agora_dns_queries_total's counter of a query type and answer code, looked up in
// the CounterVec once (its labels hashed, its lock taken) and kept in s.counters.
func (s *Server) counter(qtype uint16, rcode int) prometheus.Counter {
	i := len(qtypes)
	for j, q := range qtypes {
		if q.t == qtype {
			i = j
			break
		}
	}
	if rcode < 0 || rcode >= len(s.counters[i]) {
		return s.queries.WithLabelValues(qtypeName(i), dns.RcodeToString[rcode])
	}
	if c := s.counters[i][rcode].Load(); c != nil {
		return *c
	}
	c := s.queries.WithLabelValues(qtypeName(i), dns.RcodeToString[rcode])
	s.counters[i][rcode].Store(&c)
	return c
}

// qtypeName is the metrics' name of qtypes[i] ("other" past them).
func qtypeName(i int) string {
	if i < len(qtypes) {
		return qtypes[i].name
	}
	return "other"
}

// Answer is the answer to query r, which came over TCP or UDP (then cut to what fits, marked
// truncated).
func (s *Server) Answer(r *dns.Msg, tcp bool) *dns.Msg {
	m := new(dns.Msg)
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeNotImplemented)
		if len(r.Question) != 1 {
			m.SetRcode(r, dns.RcodeFormatError)
		}
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if name != s.domain && !strings.HasSuffix(name, "."+s.domain) || q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return s.outside(r, tcp)
	}
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = len(s.cfg.Recursors) > 0
	z := s.zone.Load()
	if z == nil {
		m.Rcode = dns.RcodeServerFailure // no view yet: nothing to deny
		return m
	}
	if name == "_view."+s.domain {
		if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
			m.Answer = []dns.RR{viewTXT(q.Name, z)}
		} else {
			m.Ns = []dns.RR{z.soa}
		}
		return s.fit(m, r, tcp)
	}
	set := z.names[name]
	if set == nil {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{z.soa}
		return s.fit(m, r, tcp)
	}
	switch q.Qtype {
	case dns.TypeA:
		m.Answer = shuffled(set.a)
	case dns.TypeAAAA:
		m.Answer = shuffled(set.aaaa)
	case dns.TypeSRV:
		m.Answer, m.Extra = shuffled(set.srv), slices.Clip(set.extra) // SetEdns0 appends: never to the zone's slice
	case dns.TypeNS:
		m.Answer = set.ns
	case dns.TypeSOA:
		if name == s.domain {
			m.Answer = []dns.RR{z.soa}
		}
	case dns.TypeANY:
		m.Answer = append(append(append(append([]dns.RR{}, set.a...), set.aaaa...), set.srv...), set.ns...)
		if name == s.domain {
			m.Answer = append(m.Answer, z.soa)
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{z.soa} // the name is there, without records of that type
	}
	return s.fit(m, r, tcp)
}

// fit cuts an answer over UDP to the size the query allows (512 bytes, or its EDNS0 size): the
// additional records go first, then the answer is truncated (and marked so: the client asks
// again over TCP).
func (s *Server) fit(m, r *dns.Msg, tcp bool) *dns.Msg {
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(opt.UDPSize(), false)
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	if len(m.Extra) > 0 && m.Len() > size && compressedLen(m) > size {
		var keep []dns.RR
		for _, rr := range m.Extra {
			if rr.Header().Rrtype == dns.TypeOPT {
				keep = append(keep, rr)
			}
		}
		m.Extra = keep
	}
	m.Truncate(size) // compresses only what does not fit without
	return m
}

// compressedLen is m's length with names compressed.
func compressedLen(m *dns.Msg) int {
	m.Compress = true
	defer func() { m.Compress = false }()
	return m.Len()
}

// outside answers a query for a name outside the domain: forwarded to the recursors, in turn,
// or REFUSED without them.
func (s *Server) outside(r *dns.Msg, tcp bool) *dns.Msg {
	if len(s.cfg.Recursors) == 0 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeRefused)
		return m
	}
	netw := "udp"
	if tcp {
		netw = "tcp"
	}
	for _, rs := range s.cfg.Recursors {
		resp, _, err := s.forward[netw].Exchange(r, rs)
		if err == nil {
			resp.Id = r.Id
			return resp
		}
		s.cfg.Logger.Debug("dns: recursor did not answer", "recursor", rs, "err", err)
	}
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	return m
}

// viewTXT says which view the answers come from: the raft index and term the leader had
// applied when it read it, the leader, the view's age, and the master answering's own leader.
func viewTXT(name string, z *zone) dns.RR {
	v := z.view
	age := time.Since(z.readAt).Round(time.Millisecond)
	return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0},
		Txt: []string{"index=" + strconv.FormatUint(v.Index, 10), "term=" + strconv.FormatUint(v.Term, 10), "built-by=" + v.Leader,
			"age=" + age.String(), "leader=" + v.LeaderID}}
}

// shuffled is a copy of rrs in random order, as Mesos-DNS and Consul answer: a rough balance
// of load between instances.
func shuffled(rrs []dns.RR) []dns.RR {
	if len(rrs) < 2 {
		return rrs
	}
	out := make([]dns.RR, len(rrs))
	copy(out, rrs)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
