package dnsserver

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/miekg/dns"
)

// The answers most queries get — an A, AAAA or SRV question of a name that has such records —
// are written straight from records packed once per view (wireSet, made by buildZone), without
// a dns.Msg: quickAnswer reads the query's header and question in place, looks the name up,
// and writes the header, the question as asked (its case kept), the records in random order and
// the EDNS0 record. Every other query, and every answer that would not fit the query's size,
// goes the general way (Server.Answer), which is what quickAnswer's answers are checked against
// (TestQuickAnswerAsAnswer).
//
// Names in the records written: an answer's owner is a pointer to the question's name (offset
// 12); an SRV target is written whole (RFC 2782: never compressed), and the additional
// records' owners, the targets' addresses, point at it.

// wireSet is a name's A, AAAA and SRV records packed, each one on its own so that they can be
// written in any order, anywhere after the question.
type wireSet struct {
	a, aaaa, srv [][]byte
	// srvTarget is the index of each SRV record's target among the set's distinct targets, in
	// the order of first use; extra are the additional records (the targets' addresses) with
	// the index of the target they are of. An extra's first two bytes are its owner's place, a
	// pointer to where its target was written.
	srvTarget []int
	targets   int
	extra     []wireExtra
}

type wireExtra struct {
	target int
	rr     []byte
}

// srvTargetAt is where an SRV record's target starts in its packed form: after the owner
// pointer (2), type, class, TTL and length (10), priority, weight and port (6).
const srvTargetAt = 18

// quickScratch is one reader's reusable memory for quickAnswer.
type quickScratch struct {
	name    [256]byte // the question's name, lower case, dotted
	order   []int
	targets []int
}

// quickAnswer writes into out the answer to the query q over UDP if it is one of the common
// kind (see above), and returns it with the question's type; ok false: answer it the general
// way. ra is the header's recursion-available bit.
func (z *zone) quickAnswer(q, out []byte, domain string, ra bool, sc *quickScratch) (answer []byte, qtype uint16, ok bool) {
	if len(q) < 12+5 || q[2]&0x80 != 0 || q[2]&0x78 != 0 || // a response; not a QUERY
		binary.BigEndian.Uint16(q[4:]) != 1 || binary.BigEndian.Uint16(q[6:]) != 0 ||
		binary.BigEndian.Uint16(q[8:]) != 0 || binary.BigEndian.Uint16(q[10:]) > 1 {
		return nil, 0, false
	}
	// The question's name: plain labels of [a-z0-9_-], any case.
	off, n := 12, 0
	for {
		if off >= len(q) {
			return nil, 0, false
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) || n+l+1 > len(sc.name) {
			return nil, 0, false
		}
		for _, c := range q[off : off+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return nil, 0, false
			}
			sc.name[n] = c
			n++
		}
		sc.name[n] = '.'
		n++
		off += l
	}
	qend := off + 4
	if n == 0 || qend > len(q) || binary.BigEndian.Uint16(q[off+2:]) != dns.ClassINET {
		return nil, 0, false
	}
	qtype = binary.BigEndian.Uint16(q[off:])
	// The EDNS0 record, if any, and nothing after it.
	size, edns := dns.MinMsgSize, -1
	if q[11] == 1 {
		if qend+11 > len(q) || q[qend] != 0 || binary.BigEndian.Uint16(q[qend+1:]) != dns.TypeOPT ||
			qend+11+int(binary.BigEndian.Uint16(q[qend+9:])) != len(q) {
			return nil, 0, false
		}
		edns = int(binary.BigEndian.Uint16(q[qend+3:]))
		size = max(edns, dns.MinMsgSize)
	} else if qend != len(q) {
		return nil, 0, false
	}
	name := sc.name[:n]
	if len(name) < len(domain) || string(name[len(name)-len(domain):]) != domain ||
		len(name) > len(domain) && name[len(name)-len(domain)-1] != '.' {
		return nil, 0, false // outside the domain
	}
	set := z.names[string(name)]
	if set == nil {
		return nil, 0, false
	}
	var rrs [][]byte
	switch qtype {
	case dns.TypeA:
		rrs = set.wire.a
	case dns.TypeAAAA:
		rrs = set.wire.aaaa
	case dns.TypeSRV:
		rrs = set.wire.srv
	}
	if len(rrs) == 0 {
		return nil, 0, false
	}
	w := &set.wire
	var extra []wireExtra
	if qtype == dns.TypeSRV {
		extra = w.extra
	}
	ar := len(extra)
	if edns >= 0 {
		ar++
	}
	// The header: the query's id, a response, authoritative, RD and CD as asked.
	out = append(out[:0], q[0], q[1], 0x80|0x04|q[2]&0x01, q[3]&0x10)
	if ra {
		out[3] |= 0x80
	}
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(rrs)))
	out = binary.BigEndian.AppendUint16(out, 0)
	out = binary.BigEndian.AppendUint16(out, uint16(ar))
	out = append(out, q[12:qend]...)
	// The records, shuffled.
	sc.order = sc.order[:0]
	for i := range rrs {
		sc.order = append(sc.order, i)
	}
	for i := len(sc.order) - 1; i > 0; i-- {
		j := rand.IntN(i + 1)
		sc.order[i], sc.order[j] = sc.order[j], sc.order[i]
	}
	if len(extra) > 0 {
		sc.targets = sc.targets[:0]
		for range w.targets {
			sc.targets = append(sc.targets, -1)
		}
	}
	for _, i := range sc.order {
		if len(extra) > 0 && sc.targets[w.srvTarget[i]] < 0 {
			sc.targets[w.srvTarget[i]] = len(out) + srvTargetAt
		}
		out = append(out, rrs[i]...)
	}
	for _, e := range extra {
		at := sc.targets[e.target]
		if at >= 0x3fff || len(out) > size {
			return nil, 0, false // beyond a pointer's reach; or too big already
		}
		out = append(out, 0xc0|byte(at>>8), byte(at))
		out = append(out, e.rr[2:]...)
	}
	if edns >= 0 {
		// OPT: the root name, the query's UDP size, no extended code, version 0, no DO, no options.
		out = append(out, 0, 0, byte(dns.TypeOPT), byte(edns>>8), byte(edns), 0, 0, 0, 0, 0, 0)
	}
	if len(out) > size {
		return nil, 0, false // the general way cuts it
	}
	return out, qtype, true
}
