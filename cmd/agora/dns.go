package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/dnsserver"
)

// dnsFlags are the DNS server's flags (master/dnsserver): off by default on `agora master`,
// on loopback for `agora dev` (defaultAddr).
func dnsFlags(defaultAddr string) []cli.Flag {
	usage := "serve the cluster's names over DNS, UDP and TCP, on this address (off: none)"
	if defaultAddr == "" {
		usage = "serve the cluster's names over DNS, UDP and TCP, on this address, e.g. 10.0.0.1:53 (default: none)"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "dns", Value: defaultAddr, Usage: usage},
		&cli.StringFlag{Name: "dns-domain", Value: dnsserver.DefaultDomain, Usage: "the DNS domain of the cluster's names: web-group.marathon.agora"},
		&cli.DurationFlag{Name: "dns-ttl", Value: dnsserver.DefaultTTL, Usage: "the TTL of every DNS record, whole seconds; the view is refreshed every half TTL"},
		&cli.StringSliceFlag{Name: "dns-recursors", Usage: "DNS servers (host[:port], repeatable or comma-separated) that names outside --dns-domain are forwarded to (default: such names are refused)"},
	}
}

// dnsConfig reads the DNS flags.
func dnsConfig(c *cli.Context) (master.DNSConfig, error) {
	addr := c.String("dns")
	if addr == "off" {
		addr = ""
	}
	ttl := c.Duration("dns-ttl")
	if ttl < time.Second || ttl%time.Second != 0 {
		return master.DNSConfig{}, usageError{fmt.Sprintf("--dns-ttl must be whole seconds, at least 1s, got %s", ttl)}
	}
	var recursors []string
	for _, r := range c.StringSlice("dns-recursors") {
		for _, part := range strings.Split(r, ",") {
			if part = strings.TrimSpace(part); part != "" {
				recursors = append(recursors, part)
			}
		}
	}
	if addr == "" && (c.IsSet("dns-domain") || c.IsSet("dns-ttl") || len(recursors) > 0) {
		return master.DNSConfig{}, usageError{"--dns-domain, --dns-ttl and --dns-recursors need --dns ADDR"}
	}
	return master.DNSConfig{Addr: addr, Domain: c.String("dns-domain"), TTL: ttl, Recursors: recursors}, nil
}

// dnsLine says where the DNS server answers, for the startup banner.
func dnsLine(m *master.Master, domain string) string {
	if m.DNSAddr() == "" {
		return "off (--dns ADDR serves the cluster's names)"
	}
	host, port, _ := net.SplitHostPort(m.DNSAddr())
	domain = strings.Trim(domain, ".")
	return fmt.Sprintf("%s, UDP and TCP, domain %s (try: dig @%s -p %s leader.%s)", m.DNSAddr(), domain, host, port, domain)
}
