package lb

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
)

// Options are what an lb's config depends on besides the services: its flags.
type Options struct {
	// Groups are the HAPROXY_GROUPs this load balancer serves; "*" serves every app, those
	// without the label too (marathon-lb's --group).
	Groups []string `json:"groups"`
	// BindAddr is the address frontends bind unless a HAPROXY_{n}_BIND_ADDR label says
	// otherwise: 127.0.0.1 serves this machine only, 0.0.0.0 publishes.
	BindAddr string `json:"bind_addr"`
	// AllowBindAddrs are the other addresses a HAPROXY_{n}_BIND_ADDR label may name ("*": any).
	// None by default: an app's author may not publish a port wider than the operator did.
	AllowBindAddrs []string `json:"allow_bind_addrs,omitempty"`
	// HTTPPort is the port of the frontend that routes by Host header to the apps with a
	// HAPROXY_{n}_VHOST (80 as marathon-lb); 0: no such frontend.
	HTTPPort int `json:"http_port"`
	// StatsSocket is the path of HAProxy's admin socket (a unix socket of mode 600; it also
	// hands the listeners over to new workers on a reload).
	StatsSocket string `json:"stats_socket"`
}

// Config is a generated HAProxy configuration and what it holds.
type Config struct {
	Text     string
	Services int       // the services (apps) with at least one frontend in it
	Backends int       // one per served service port
	Servers  int       // server lines: healthy instances, over all backends
	Skipped  []Skipped // service ports left out of it, and why
}

// Skipped is a service port left out of the config because a label of it is wrong, or a
// label of a served port that could not be followed.
type Skipped struct {
	Service string
	Port    int // the port index
	Reason  string
}

// The labels of marathon-lb that Generate reads; {n} is a port index.
const (
	labelGroup         = "HAPROXY_GROUP"
	labelPortGroup     = "HAPROXY_%d_GROUP"
	labelVHost         = "HAPROXY_%d_VHOST"
	labelMode          = "HAPROXY_%d_MODE"
	labelPort          = "HAPROXY_%d_PORT"
	labelBalance       = "HAPROXY_%d_BALANCE"
	labelBindAddr      = "HAPROXY_%d_BIND_ADDR"
	labelBackendWeight = "HAPROXY_%d_BACKEND_WEIGHT"
	labelPath          = "HAPROXY_%d_PATH"
	labelEnabled       = "HAPROXY_%d_ENABLED"
)

// marathonFramework names the embedded Marathon framework in the services document: only its
// apps carry marathon-lb's labels and service ports.
const marathonFramework = "marathon"

// httpFrontend is the name of the frontend that routes by Host header (marathon-lb's).
const httpFrontend = "marathon_http_in"

// frontend is one service port the config serves.
type frontend struct {
	name     string // the frontend's and its backend's name
	service  string
	index    int // the port index
	bindAddr string
	port     int
	mode     string // http or tcp
	balance  string
	vhosts   []string
	path     string
	weight   int
	servers  []server
}

type server struct {
	name, addr string
	port       int
}

// Generate writes the HAProxy configuration that serves svcs as marathon-lb would from the same
// labels. It is a pure function of its arguments: the same services and options give the same
// text, byte for byte, whatever the order of the services, labels or instances; the raft index
// and term are not in it, so a view that proves a newer index but serves the same is the same
// text (no reload).
//
// Which service ports get a frontend:
//   - Marathon apps only (framework "marathon"); the services of other frameworks are ignored:
//     they have no service ports or labels.
//   - A port with a service port (or a HAPROXY_{n}_PORT label), of protocol tcp (or udp,tcp:
//     its tcp side).
//   - Of an app in one of the groups: HAPROXY_{n}_GROUP, else HAPROXY_GROUP (comma-separated);
//     an app with neither is served only by the group "*", which serves every app.
//   - Not disabled by HAPROXY_{n}_ENABLED=false.
//
// Each gets a frontend on its bind address and service port and a backend with one server
// per healthy instance (none: a backend with no server, which HAProxy answers 503 in http
// mode); with a HAPROXY_{n}_VHOST, also a rule in the http frontend on opts.HTTPPort.
func Generate(svcs api.Services, opts Options) Config {
	var fes []frontend
	var skipped []Skipped
	for _, s := range svcs.Services {
		if s.Framework != marathonFramework {
			continue
		}
		for _, p := range s.Ports {
			fe, reason, ok := servePort(s, p, opts)
			if reason != "" {
				skipped = append(skipped, Skipped{Service: s.Name, Port: p.Index, Reason: reason})
			}
			if ok {
				fes = append(fes, fe)
			}
		}
	}
	// Sorted as marathon-lb sorts (app id, then service port): the document's order and the
	// labels' map order play no part.
	slices.SortFunc(fes, func(a, b frontend) int {
		return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.port, b.port), cmp.Compare(a.index, b.index))
	})
	fes, skipped = uniqueFrontends(fes, skipped, opts)
	slices.SortFunc(skipped, func(a, b Skipped) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Reason, b.Reason))
	})

	var b strings.Builder
	writeHead(&b, opts)
	writeHTTPFrontend(&b, fes, opts)
	cfg := Config{Skipped: skipped}
	services := map[string]bool{}
	for _, fe := range fes {
		writeFrontend(&b, fe)
		services[fe.service] = true
		cfg.Backends++
		cfg.Servers += len(fe.servers)
	}
	for _, fe := range fes {
		writeBackend(&b, fe)
	}
	cfg.Services = len(services)
	cfg.Text = b.String()
	return cfg
}

// servePort reads a service port's labels into its frontend: ok false when it is not served
// here, with a reason when a label is wrong (a reason means the port would otherwise be served).
func servePort(s api.ServiceEntry, p api.ServicePort, opts Options) (fe frontend, reason string, ok bool) {
	label := func(format string) (string, bool) {
		v, ok := s.Labels[fmt.Sprintf(format, p.Index)]
		return strings.TrimSpace(v), ok
	}
	groups := s.Labels[labelGroup]
	if g, ok := label(labelPortGroup); ok {
		groups = g
	}
	if !inGroups(opts.Groups, groups) {
		return fe, "", false
	}
	if v, ok := label(labelEnabled); ok && !truthy(v) {
		return fe, "", false
	}
	port := p.ServicePort
	if v, ok := label(labelPort); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fe, fmt.Sprintf("HAPROXY_%d_PORT %q is not a port (1-65535)", p.Index, v), false
		}
		port = n
	}
	if port == 0 {
		return fe, "", false // no service port: nothing to bind
	}
	if p.Protocol != "" && !slices.Contains(strings.Split(strings.ToLower(p.Protocol), ","), "tcp") {
		return fe, fmt.Sprintf("protocol %s: HAProxy balances TCP only", p.Protocol), false
	}
	fe = frontend{service: s.Name, index: p.Index, port: port, bindAddr: opts.BindAddr, balance: "roundrobin"}
	if v, ok := label(labelBindAddr); ok {
		if !bindable(v) {
			return fe, fmt.Sprintf("HAPROXY_%d_BIND_ADDR %q is not an IP address or *", p.Index, v), false
		}
		if v != opts.BindAddr && !slices.Contains(opts.AllowBindAddrs, v) && !slices.Contains(opts.AllowBindAddrs, "*") {
			return fe, fmt.Sprintf("HAPROXY_%d_BIND_ADDR %s is not allowed: this lb binds %s (--bind-addr) and allows %s (--allow-bind-addr)", p.Index, v, opts.BindAddr, allowed(opts.AllowBindAddrs)), false
		}
		fe.bindAddr = v
	}
	if v, ok := label(labelVHost); ok {
		for h := range strings.SplitSeq(strings.ToLower(v), ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			if !hostname(h) {
				return fe, fmt.Sprintf("HAPROXY_%d_VHOST: %q is not a host name", p.Index, h), false
			}
			fe.vhosts = append(fe.vhosts, h)
		}
		slices.Sort(fe.vhosts)
		fe.vhosts = slices.Compact(fe.vhosts)
	}
	// marathon-lb's default: tcp, http for a port with a vhost.
	fe.mode = "tcp"
	if len(fe.vhosts) > 0 {
		fe.mode = "http"
	}
	if v, ok := label(labelMode); ok {
		v = strings.ToLower(v)
		if v != "http" && v != "tcp" {
			return fe, fmt.Sprintf("HAPROXY_%d_MODE %q: want http or tcp", p.Index, v), false
		}
		fe.mode = v
	}
	if fe.mode == "tcp" && len(fe.vhosts) > 0 {
		// An http frontend cannot hand a connection to a tcp backend: the port is served
		// on its service port only.
		reason = fmt.Sprintf("HAPROXY_%d_VHOST not routed: HAPROXY_%d_MODE is tcp", p.Index, p.Index)
		fe.vhosts = nil
	}
	if v, ok := label(labelBalance); ok && v != "" {
		if !oneLine(v) {
			return fe, fmt.Sprintf("HAPROXY_%d_BALANCE: not one line of printable text", p.Index), false
		}
		fe.balance = v // HAProxy judges it: a config it refuses is not applied
	}
	if v, ok := label(labelBackendWeight); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fe, fmt.Sprintf("HAPROXY_%d_BACKEND_WEIGHT %q is not an integer", p.Index, v), false
		}
		fe.weight = n
	}
	if v, ok := label(labelPath); ok && v != "" && len(fe.vhosts) > 0 {
		if !oneLine(v) {
			return fe, fmt.Sprintf("HAPROXY_%d_PATH: not one line of printable text", p.Index), false
		}
		fe.path = v
		if fe.weight == 0 {
			fe.weight = 1 // marathon-lb: a path's rule goes before the host-only rules
		}
	}
	fe.name = sanitize(strings.TrimPrefix(s.Name, "/")) + "_" + strconv.Itoa(port)
	for _, in := range s.Instances {
		if p.Index >= len(in.Ports) || in.Ports[p.Index] <= 0 {
			continue
		}
		addr := cmp.Or(in.IP, in.Host)
		if addr == "" {
			continue
		}
		name := addr + "_" + strconv.Itoa(in.Ports[p.Index])
		if in.Host != "" && in.Host != addr {
			name = in.Host + "_" + name
		}
		fe.servers = append(fe.servers, server{name: sanitize(name), addr: addr, port: in.Ports[p.Index]})
	}
	slices.SortFunc(fe.servers, func(a, b server) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.addr, b.addr), cmp.Compare(a.port, b.port))
	})
	fe.servers = slices.CompactFunc(fe.servers, func(a, b server) bool { return a.name == b.name })
	return fe, reason, true
}

// uniqueFrontends keeps the first frontend (in order) of each name and of each bind address
// and port, and none on the http frontend's port: HAProxy would let two frontends share a port
// and split connections between them.
func uniqueFrontends(fes []frontend, skipped []Skipped, opts Options) ([]frontend, []Skipped) {
	names := map[string]string{}
	binds := map[string]string{}
	if opts.HTTPPort > 0 && slices.ContainsFunc(fes, func(fe frontend) bool { return len(fe.vhosts) > 0 }) {
		binds[bindKey(opts.BindAddr, opts.HTTPPort)] = "the http frontend"
	}
	out := fes[:0]
	for _, fe := range fes {
		key := bindKey(fe.bindAddr, fe.port)
		if other, ok := binds[key]; ok {
			skipped = append(skipped, Skipped{Service: fe.service, Port: fe.index, Reason: fmt.Sprintf("port %d is %s's", fe.port, other)})
			continue
		}
		if other, ok := names[fe.name]; ok {
			skipped = append(skipped, Skipped{Service: fe.service, Port: fe.index, Reason: fmt.Sprintf("its name %s is %s's", fe.name, other)})
			continue
		}
		binds[key] = fe.service
		names[fe.name] = fe.service
		out = append(out, fe)
	}
	return out, skipped
}

func bindKey(addr string, port int) string {
	if addr == "*" || addr == "0.0.0.0" || addr == "::" {
		addr = "" // a wildcard takes the port on every address
	}
	return addr + ":" + strconv.Itoa(port)
}

func writeHead(b *strings.Builder, opts Options) {
	fmt.Fprintf(b, `# Written by agora lb from the masters' services (GET /v1/services): changes made here are lost
# at its next write. Groups: %s.
global
  log stdout format raw local0 notice
%s  spread-checks 5
  hard-stop-after 5m

defaults
  log global
  option dontlognull
  option redispatch 1
  retries 3
  timeout connect 3s
  timeout client 30s
  timeout server 30s
  timeout tunnel 3600s
  timeout http-keep-alive 1s
  timeout http-request 15s
  timeout queue 30s
  default-server inter 2s fall 2 rise 2
`, strings.Join(opts.Groups, ","), statsSocket(opts.StatsSocket))
}

// statsSocket is the global line of the admin socket: a unix socket only this user may use,
// which also hands the listeners to the new worker on a reload.
func statsSocket(path string) string {
	if path == "" {
		return ""
	}
	return "  stats socket " + path + " mode 600 level admin expose-fd listeners\n"
}

func writeHTTPFrontend(b *strings.Builder, fes []frontend, opts Options) {
	if opts.HTTPPort <= 0 {
		return
	}
	var rules []frontend
	for _, fe := range fes {
		if len(fe.vhosts) > 0 {
			rules = append(rules, fe)
		}
	}
	if len(rules) == 0 {
		return
	}
	// HAProxy takes the first use_backend that matches: the heaviest
	// HAPROXY_{n}_BACKEND_WEIGHT first, as marathon-lb orders them.
	slices.SortStableFunc(rules, func(a, c frontend) int { return cmp.Compare(c.weight, a.weight) })
	fmt.Fprintf(b, "\nfrontend %s\n  bind %s\n  mode http\n  option idle-close-on-response\n", httpFrontend, bindAddr(opts.BindAddr, opts.HTTPPort))
	for _, fe := range rules {
		acl := "host_" + sanitize(fe.vhosts[0]) + "_" + fe.name
		// The Host header without its port: "shop.example.com:8080" is shop.example.com.
		fmt.Fprintf(b, "  acl %s req.hdr(host),lower,field(1,:) -m str %s\n", acl, strings.Join(fe.vhosts, " "))
		if fe.path != "" {
			fmt.Fprintf(b, "  acl path_%s path_beg %s\n", fe.name, fe.path)
			fmt.Fprintf(b, "  use_backend %s if %s path_%s\n", fe.name, acl, fe.name)
		} else {
			fmt.Fprintf(b, "  use_backend %s if %s\n", fe.name, acl)
		}
	}
}

func writeFrontend(b *strings.Builder, fe frontend) {
	fmt.Fprintf(b, "\nfrontend %s\n  bind %s\n  mode %s\n", fe.name, bindAddr(fe.bindAddr, fe.port), fe.mode)
	if fe.mode == "http" {
		b.WriteString("  option idle-close-on-response\n")
	}
	fmt.Fprintf(b, "  use_backend %s\n", fe.name)
}

func writeBackend(b *strings.Builder, fe frontend) {
	fmt.Fprintf(b, "\nbackend %s\n  balance %s\n  mode %s\n", fe.name, fe.balance, fe.mode)
	if fe.mode == "http" {
		// A request that reaches an instance that has just stopped (connection refused, or
		// closed without an answer) is sent again to another: a rolling upgrade loses none.
		b.WriteString("  option http-server-close\n  option forwardfor\n  http-request set-header X-Forwarded-Port %[dst_port]\n  retry-on conn-failure empty-response\n")
	}
	for _, s := range fe.servers {
		fmt.Fprintf(b, "  server %s %s check\n", s.name, bindAddr(s.addr, s.port))
	}
}

// bindAddr is addr:port as HAProxy reads it: an IPv6 address in brackets.
func bindAddr(addr string, port int) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.Itoa(port)
	}
	return addr + ":" + strconv.Itoa(port)
}

// inGroups is marathon-lb's rule: "*" serves every app; otherwise an app is served when one of
// its comma-separated groups is one of ours, and an app without a group is not.
func inGroups(ours []string, theirs string) bool {
	if slices.Contains(ours, "*") {
		return true
	}
	for g := range strings.SplitSeq(theirs, ",") {
		if g = strings.TrimSpace(g); g != "" && slices.Contains(ours, g) {
			return true
		}
	}
	return false
}

// truthy is marathon-lb's reading of a boolean label.
func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "true", "t", "yes", "y":
		return true
	}
	return false
}

// bindable says whether v may follow "bind": an IP address, or * for every address.
// allowed shows the addresses --allow-bind-addr allows.
func allowed(addrs []string) string {
	if len(addrs) == 0 {
		return "no other"
	}
	return strings.Join(addrs, ", ")
}

func bindable(v string) bool {
	return v == "*" || net.ParseIP(v) != nil
}

// hostname says whether h is a host name a Host header can carry: letters, digits, dots,
// dashes and underscores (nothing HAProxy would read as more than one word).
func hostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// oneLine says whether v is printable ASCII without a line break: a label's value can add
// words to its own line of the config, never a line of its own.
func oneLine(v string) bool {
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// sanitize makes s a name HAProxy accepts for a proxy, server or ACL: letters, digits, '-',
// '_' and '.'; anything else becomes '_' (marathon-lb's /shop/web becomes shop_web).
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
