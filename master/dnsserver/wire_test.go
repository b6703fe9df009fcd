package dnsserver

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/agora-sched/agora/master/discovery"
)

// bigView is one app of 40 instances, two ports each: its SRV answers fit 512 bytes only cut.
func bigView() *discovery.View {
	v := &discovery.View{Index: 3}
	svc := discovery.Service{Framework: "marathon", Name: "/big", Label: "big"}
	for i := range 40 {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		if i%3 == 0 {
			ip = netip.AddrFrom16([16]byte{0xfd, 15: byte(i + 1)})
		}
		svc.Instances = append(svc.Instances, discovery.Instance{TaskID: fmt.Sprintf("t%d", i), AgentID: fmt.Sprintf("u-S%d", i),
			IPs: []netip.Addr{ip}, Healthy: true,
			Ports: []discovery.Port{{Number: uint16(31000 + i), Name: "http", Protocol: "tcp"}, {Number: uint16(32000 + i), Name: "admin", Protocol: "tcp"}}})
	}
	v.Services = []discovery.Service{svc}
	return v
}

// TestQuickAnswerAsAnswer checks quickAnswer, the answers written without a dns.Msg, against
// Answer's on random queries: names of the zone, in any case, and others; every type; with and
// without EDNS0 of various sizes; RD and CD set or not. Where quickAnswer answers, its answer
// must say what Answer's says: the same header, question, records (in any order in the answer
// section, in order in the others), within the query's size.
func TestQuickAnswerAsAnswer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 22))
	small := benchView()
	small.Services = small.Services[:20]
	for _, tc := range []struct {
		name      string
		v         *discovery.View
		recursors []string
	}{{"test", testView(), nil}, {"bench", small, []string{"192.0.2.1:53"}}, {"big", bigView(), nil}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{domain: "agora.", cfg: Config{TTL: DefaultTTL, Recursors: tc.recursors}}
			s.Update(tc.v, time.Now())
			z := s.zone.Load()
			names := []string{"nothing.marathon.agora.", "agora.", "_view.agora.", "example.com.", "xagora.", "a\\.b.agora."}
			for n := range z.names {
				names = append(names, n)
			}
			slices.Sort(names)
			types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeANY, dns.TypeNS, dns.TypeSOA, dns.TypeMX}
			var sc quickScratch
			out := make([]byte, 0, dns.MaxMsgSize)
			quick := 0
			const queries = 3000
			for range queries {
				r := new(dns.Msg)
				r.SetQuestion(randomCase(rng, names[rng.IntN(len(names))]), types[rng.IntN(len(types))])
				r.RecursionDesired = rng.IntN(2) == 0
				r.CheckingDisabled = rng.IntN(4) == 0
				size := dns.MinMsgSize
				switch rng.IntN(4) {
				case 1:
					r.SetEdns0(4096, false)
					size = 4096
				case 2:
					r.SetEdns0(1232, rng.IntN(2) == 0)
					size = 1232
				case 3:
					r.SetEdns0(100, false) // below 512: 512
				}
				q, err := r.Pack()
				if err != nil {
					t.Fatal(err)
				}
				got, _, ok := z.quickAnswer(q, out, s.domain, len(s.cfg.Recursors) > 0, &sc)
				if !ok {
					continue
				}
				quick++
				if len(got) > size {
					t.Fatalf("%s: %d bytes over %d", r.Question[0].String(), len(got), size)
				}
				var qm dns.Msg
				if err := qm.Unpack(got); err != nil {
					t.Fatalf("%s: quickAnswer's answer does not unpack: %v", r.Question[0].String(), err)
				}
				want := s.Answer(r, false)
				if d := diffAnswers(&qm, want); d != "" {
					t.Fatalf("%s (EDNS0 %d, RD %v, CD %v): %s\nquick:\n%v\nAnswer:\n%v", r.Question[0].String(), size,
						r.RecursionDesired, r.CheckingDisabled, d, &qm, want)
				}
			}
			// The common queries go the quick way (the A, AAAA and SRV ones of names that have them).
			if quick < queries/20 {
				t.Fatalf("quickAnswer answered %d of %d queries", quick, queries)
			}
			t.Logf("%d of %d answered the quick way", quick, queries)
		})
	}
}

// diffAnswers says how a differs from b ("": it does not).
func diffAnswers(a, b *dns.Msg) string {
	if a.MsgHdr != b.MsgHdr {
		return fmt.Sprintf("header %+v, want %+v", a.MsgHdr, b.MsgHdr)
	}
	if !slices.Equal(a.Question, b.Question) {
		return fmt.Sprintf("question %v, want %v", a.Question, b.Question)
	}
	sorted := func(rrs []dns.RR) []string { out := rrStrings(rrs); slices.Sort(out); return out }
	if x, y := sorted(a.Answer), sorted(b.Answer); !slices.Equal(x, y) {
		return fmt.Sprintf("answer %v, want %v", x, y)
	}
	if x, y := rrStrings(a.Ns), rrStrings(b.Ns); !slices.Equal(x, y) {
		return fmt.Sprintf("authority %v, want %v", x, y)
	}
	if x, y := rrStrings(a.Extra), rrStrings(b.Extra); !slices.Equal(x, y) {
		return fmt.Sprintf("additional %v, want %v", x, y)
	}
	return ""
}

// rrStrings are records as text, names in lower case (a name written as a pointer to the
// question has the question's case).
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.ToLower(rr.String()))
	}
	return out
}

// randomCase is name with each letter's case flipped at random, as resolvers using 0x20
// ask.
func randomCase(rng *rand.Rand, name string) string {
	b := []byte(name)
	for i, c := range b {
		if c >= 'a' && c <= 'z' && rng.IntN(2) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestQuickAnswerShuffles: every instance comes first in some answer, and an answer keeps the
// question's case as asked.
func TestQuickAnswerShuffles(t *testing.T) {
	s := serve(t, Config{}, benchView())
	first := map[string]bool{}
	c := &dns.Client{Timeout: 5 * time.Second, UDPSize: 1232}
	for range 300 {
		m := new(dns.Msg)
		m.SetQuestion("_App7-Bench._tcp.Marathon.agora.", dns.TypeSRV)
		m.SetEdns0(1232, false)
		r, _, err := c.Exchange(m, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 10 || len(r.Extra) != 11 || r.Question[0].Name != "_App7-Bench._tcp.Marathon.agora." {
			t.Fatalf("answer: %v", r)
		}
		first[r.Answer[0].(*dns.SRV).Target] = true
	}
	if len(first) != 10 {
		t.Fatalf("%d of 10 instances came first in 300 answers", len(first))
	}
}
