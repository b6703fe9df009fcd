package dnsserver

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/agora-sched/agora/master/discovery"
)

// zone is the records of one view, by lower-case name, made once per view (Server.Update) so
// that an answer is a map lookup and a copy.
type zone struct {
	names  map[string]*rrset
	soa    *dns.SOA
	view   *discovery.View
	readAt time.Time
}

// rrset is a name's records by type.
type rrset struct {
	a, aaaa, srv []dns.RR
	// extra are the addresses of the SRV records' targets, for the additional section.
	extra []dns.RR
	ns    []dns.RR
	// wire is a, aaaa, srv and extra packed, for quickAnswer (nil: none of them packs).
	wire *wireSet
}

// zoneBuilder makes a zone.
type zoneBuilder struct {
	domain string // "agora.", lower case, fully qualified
	ttl    uint32
	z      *zone
	// seenAddr dedups a name's addresses; seenSRV a name's SRV records.
	seenAddr map[string]map[netip.Addr]bool
	seenSRV  map[string]map[string]bool
}

// Names, under the domain (Mesos-DNS's, with Agora's agents and masters):
//
//	<task>.<framework>.                  A, AAAA: the agents of the service's healthy instances
//	_<task>._tcp.<framework>.            SRV: each healthy instance's tcp ports (_udp: udp ports)
//	_<port>._<task>._tcp.<framework>.    SRV: its ports of that name
//	<task>-<hash>-<agent>.<framework>.   A, AAAA: one instance's agent (the SRV records' target)
//	leader.  master.                     A, AAAA: the leading master; every master alive
//	agent.   <agent-id>.agent.           A, AAAA: every agent tasks may run on; one agent
//	_view.                               TXT: the view's raft index, term, leader and age
//
// The apex has an SOA and an NS record (ns1.<domain>, this master).
func buildZone(domain string, ttl time.Duration, selfID string, v *discovery.View, readAt time.Time) *zone {
	b := &zoneBuilder{domain: domain, ttl: uint32(ttl / time.Second), z: &zone{names: map[string]*rrset{}, view: v, readAt: readAt},
		seenAddr: map[string]map[netip.Addr]bool{}, seenSRV: map[string]map[string]bool{}}
	if b.ttl == 0 && ttl > 0 {
		b.ttl = 1
	}
	ns := "ns1." + domain
	b.z.soa = &dns.SOA{Hdr: dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: b.ttl},
		Ns: ns, Mbox: "root." + ns, Serial: uint32(v.Index), Refresh: 60, Retry: 600, Expire: 86400, Minttl: b.ttl}
	apex := b.set(domain)
	apex.ns = append(apex.ns, &dns.NS{Hdr: dns.RR_Header{Name: domain, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: b.ttl}, Ns: ns})
	for _, m := range v.Masters {
		b.addrs("master."+domain, m.IPs)
		if m.ID == v.LeaderID {
			b.addrs("leader."+domain, m.IPs)
		}
		if m.ID == selfID {
			b.addrs(ns, m.IPs)
		}
	}
	for _, ag := range v.Agents {
		b.addrs("agent."+domain, ag.IPs)
		if l := discovery.AgentLabel(ag.ID); l != "" {
			b.addrs(l+".agent."+domain, ag.IPs)
		}
	}
	for i := range v.Services {
		s := &v.Services[i]
		fw := discovery.FrameworkLabel(s.Framework)
		if fw == "" || s.Label == "" {
			continue
		}
		under := fw + "." + domain
		for _, in := range s.Instances {
			if !in.Healthy {
				continue
			}
			b.addrs(s.Label+"."+under, in.IPs)
			target := discovery.InstanceLabel(s.Label, in.TaskID, in.AgentID) + "." + under
			b.addrs(target, in.IPs)
			for _, p := range in.Ports {
				proto := "._" + p.Protocol + "."
				b.srv("_"+s.Label+proto+under, target, p.Number)
				if l := discovery.Label(p.Name); l != "" {
					b.srv("_"+l+"._"+s.Label+proto+under, target, p.Number)
				}
			}
		}
	}
	// Each SRV name's targets' addresses, for the additional section.
	for _, set := range b.z.names {
		seen := map[string]bool{}
		for _, rr := range set.srv {
			t := rr.(*dns.SRV).Target
			if seen[t] {
				continue
			}
			seen[t] = true
			if ts := b.z.names[t]; ts != nil {
				set.extra = append(append(set.extra, ts.a...), ts.aaaa...)
			}
		}
	}
	for _, set := range b.z.names {
		if len(set.a)+len(set.aaaa)+len(set.srv) > 0 {
			set.wire = packWire(set)
		}
	}
	return b.z
}

func (b *zoneBuilder) set(name string) *rrset {
	s := b.z.names[name]
	if s == nil {
		s = &rrset{}
		b.z.names[name] = s
	}
	return s
}

// addrs adds A and AAAA records of ips to name, each address once.
func (b *zoneBuilder) addrs(name string, ips []netip.Addr) {
	if len(ips) == 0 {
		return
	}
	name = strings.ToLower(name)
	s := b.set(name)
	seen := b.seenAddr[name]
	if seen == nil {
		seen = map[netip.Addr]bool{}
		b.seenAddr[name] = seen
	}
	for _, ip := range ips {
		if seen[ip] {
			continue
		}
		seen[ip] = true
		hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: b.ttl}
		if ip.Is4() {
			hdr.Rrtype = dns.TypeA
			s.a = append(s.a, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		} else {
			hdr.Rrtype = dns.TypeAAAA
			s.aaaa = append(s.aaaa, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
}

// srv adds an SRV record of target:port to name, once.
func (b *zoneBuilder) srv(name, target string, port uint16) {
	name = strings.ToLower(name)
	s := b.set(name)
	seen := b.seenSRV[name]
	if seen == nil {
		seen = map[string]bool{}
		b.seenSRV[name] = seen
	}
	k := target + ":" + strconv.Itoa(int(port))
	if seen[k] {
		return
	}
	seen[k] = true
	s.srv = append(s.srv, &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: b.ttl},
		Priority: 0, Weight: 0, Port: port, Target: target})
}
