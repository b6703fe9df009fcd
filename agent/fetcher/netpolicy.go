package fetcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// special are the IPv4 and IPv6 ranges, beyond what netip.Addr's own predicates name, that are
// not the public internet: where a download is refused unless the agent allows the network.
var special = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \"this network\" address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT (shared) address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a local-use NAT64 address"},
}

// notPublic says what kind of non-public address a is ("a loopback address", …), or "" for an
// address of the public internet.
func notPublic(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (where clouds serve instance metadata)"
	case a.IsPrivate():
		return "a private address"
	case a.IsUnspecified():
		return "an unspecified address"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	for _, s := range special {
		if s.prefix.Contains(a) {
			return s.what
		}
	}
	return ""
}

// checkAddr refuses a connection to address (the "ip:port" about to be dialed, after name
// resolution) unless it is of the public internet or in one of allowed.
func checkAddr(address string, allowed []netip.Prefix) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("connect to %s: not an IP address and port", address)
	}
	a := ap.Addr().Unmap()
	for _, p := range allowed {
		if p.Contains(a) {
			return nil
		}
	}
	what := notPublic(a)
	if what == "" {
		return nil
	}
	bits := 32
	if a.Is6() {
		bits = 128
	}
	return refusedError{fmt.Sprintf("%s is %s, which this agent fetches from only when allowed (agora agent --fetch-allow-net %s)", a, what, netip.PrefixFrom(a, bits))}
}

// refusedError is a connection the agent refused to make; it is the whole story of a failed
// download (the dial error around it adds only the address again).
type refusedError struct{ msg string }

func (e refusedError) Error() string { return e.msg }

// ParseNets reads CIDR prefixes ("10.0.0.0/8", "fd00::/8") or single addresses ("10.1.2.3").
func ParseNets(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Masked() != p {
				return nil, fmt.Errorf("%s: host bits set (the network is %s)", s, p.Masked())
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: not a CIDR prefix (10.0.0.0/8) nor an IP address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// newClient is the fetcher's default HTTP client: it follows redirects to http and https
// only, and dials only addresses of the public internet or of allowed, checked on the address
// it connects to (after DNS, on every redirect), so a name that resolves to a private address
// does not get around it. With a proxy from the environment (HTTP_PROXY, HTTPS_PROXY), it is
// the proxy's address that is checked.
func newClient(allowed []netip.Prefix) *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			return checkAddr(address, allowed)
		}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirected to %s: only http and https", req.URL.Redacted())
		}
		if len(via) >= 10 {
			return fmt.Errorf("stopped after 10 redirects")
		}
		return nil
	}}
}
