package dnsserver

import (
	"encoding/binary"
	"net"
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
	// wire is a, aaaa, srv and extra packed, for quickAnswer.
	wire wireSet
}

// zoneBuilder makes a zone.
type zoneBuilder struct {
	domain string // "agora.", lower case, fully qualified
	ttl    uint32
	z      *zone
	// seenAddr dedups a name's addresses; seenSRV a name's SRV records.
	seenAddr map[string]map[netip.Addr]bool
	seenSRV  map[string]map[string]bool
	// arena is where packed records are cut from, a block at a time.
	arena []byte
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
	// Each name's records packed for quickAnswer: first the addresses, then the SRV records
	// with their targets' addresses, for the additional section.
	for _, set := range b.z.names {
		set.wire.a, set.wire.aaaa = b.packAddrs(set.a), b.packAddrs(set.aaaa)
	}
	for _, set := range b.z.names {
		if len(set.srv) == 0 {
			continue
		}
		w := &set.wire
		targets := map[string]int{} // the index of each target, in the order of first use
		packs := true
		for _, rr := range set.srv {
			srv := rr.(*dns.SRV)
			i, seen := targets[srv.Target]
			if !seen {
				i = len(targets)
				targets[srv.Target] = i
				if ts := b.z.names[srv.Target]; ts != nil {
					set.extra = append(append(set.extra, ts.a...), ts.aaaa...)
					for _, packed := range ts.wire.a {
						w.extra = append(w.extra, wireExtra{target: i, rr: packed})
					}
					for _, packed := range ts.wire.aaaa {
						w.extra = append(w.extra, wireExtra{target: i, rr: packed})
					}
				}
			}
			packed, ok := b.packSRV(srv)
			packs = packs && ok
			w.srv = append(w.srv, packed)
			w.srvTarget = append(w.srvTarget, i)
		}
		w.targets = len(targets)
		if !packs {
			w.srv, w.extra = nil, nil // answered the general way
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

// packAddrs packs A or AAAA records for quickAnswer, each on its own (see wireSet).
func (b *zoneBuilder) packAddrs(rrs []dns.RR) [][]byte {
	if len(rrs) == 0 {
		return nil
	}
	out := make([][]byte, 0, len(rrs))
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A.To4()
		case *dns.AAAA:
			ip = rr.AAAA.To16()
		}
		w := b.record(rr.Header(), len(ip))
		out = append(out, append(w, ip...))
	}
	return out
}

// packSRV packs an SRV record for quickAnswer, its target written whole (see wireSet).
func (b *zoneBuilder) packSRV(srv *dns.SRV) ([]byte, bool) {
	name := make([]byte, len(srv.Target)+2)
	n, err := dns.PackDomainName(srv.Target, name, 0, nil, false)
	if err != nil {
		return nil, false
	}
	w := b.record(&srv.Hdr, 6+n)
	w = binary.BigEndian.AppendUint16(w, srv.Priority)
	w = binary.BigEndian.AppendUint16(w, srv.Weight)
	w = binary.BigEndian.AppendUint16(w, srv.Port)
	return append(w, name[:n]...), true
}

// record starts a packed record of hdr's type, class and TTL with rdata of rdlen bytes: its
// owner a pointer to offset 12, the header; the rdata is the caller's to append, in the room
// left for it.
func (b *zoneBuilder) record(hdr *dns.RR_Header, rdlen int) []byte {
	size := 12 + rdlen
	if cap(b.arena)-len(b.arena) < size {
		b.arena = make([]byte, 0, max(64<<10, size))
	}
	start := len(b.arena)
	b.arena = b.arena[:start+size]
	w := b.arena[start : start : start+size]
	w = append(w, 0xc0, 12)
	w = binary.BigEndian.AppendUint16(w, hdr.Rrtype)
	w = binary.BigEndian.AppendUint16(w, hdr.Class)
	w = binary.BigEndian.AppendUint32(w, hdr.Ttl)
	return binary.BigEndian.AppendUint16(w, uint16(rdlen))
}
