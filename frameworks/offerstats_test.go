package frameworks

import (
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

func offer(id, agent, host string, cpus, mem float64) api.Offer {
	return api.Offer{ID: id, AgentID: agent, Hostname: host, Resources: resources.Resources{CPUs: cpus, Mem: mem, Disk: 0,
		Ports: resources.Ranges{{Begin: 31000, End: 31005}}}, Attributes: map[string]string{"rack": "r1"}}
}

// TestOfferStatsAsMarathonShowsThem: the offers judged for one launch attempt, summed as
// Marathon's processedOffersSummary (every reason in funnel order, an offer counted under its
// first reason only, the last offers being each agent's last unused one) and listed as its
// lastUnusedOffers, compared with golden files written from Marathon's documented shape
// (docs/docs/rest-api/public/api/v2/types/queue.raml and offer.raml).
func TestOfferStatsAsMarathonShowsThem(t *testing.T) {
	t0 := time.Date(2026, 2, 28, 16, 41, 41, 90e6, time.UTC)
	s := NewOfferStats(t0)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	cpus := Mismatch{InsufficientCpus, "needs 4 cpus, web1 offers 2"}
	mem := Mismatch{InsufficientMemory, "needs 128 MiB of memory, web1 offers 64"}
	like := Mismatch{UnfulfilledConstraint, `hostname:LIKE:web.*: hostname is "db1" on db1`}
	s.NotUsed(offer("o1", "a1", "db1", 8, 1024), []Mismatch{like}, at(1))
	s.NotUsed(offer("o2", "a2", "web1", 2, 1024), []Mismatch{cpus}, at(2))
	s.NotUsed(offer("o3", "a2", "web1", 2, 64), []Mismatch{mem, cpus}, at(3)) // counted as InsufficientCpus
	s.Used(offer("o4", "a3", "web3", 8, 1024), at(4))
	s.NotUsed(offer("o5", "a3", "web3", 2, 1024), []Mismatch{cpus}, at(5))
	s.Used(offer("o6", "a3", "web3", 8, 1024), at(6)) // a3's last offer was used: not among the last unused

	frameworktest.SameJSON(t, "testdata/processed_offers_summary.json", s.Summary())
	frameworktest.SameJSON(t, "testdata/last_unused_offers.json", s.LastUnusedOffers("*"))
	want := `4 of the last 6 offers declined: 3 InsufficientCpus (needs 4 cpus, web1 offers 2), 1 UnfulfilledConstraint (hostname:LIKE:web.*: hostname is "db1" on db1)`
	if got := s.Declined(); got != want {
		t.Fatalf("Declined() = %q\nwant %q", got, want)
	}

	fresh := NewOfferStats(t0)
	frameworktest.SameJSON(t, "testdata/processed_offers_summary_none.json", fresh.Summary())
	if got := fresh.Declined(); got != "" {
		t.Fatalf("no offer yet: Declined() = %q, want nothing", got)
	}
	fresh.NotUsed(offer("o1", "a1", "db1", 8, 1024), []Mismatch{like}, at(1))
	if got := fresh.Declined(); !strings.HasPrefix(got, "last 1 offer declined: 1 UnfulfilledConstraint") {
		t.Fatalf("Declined() = %q", got)
	}
}

// TestOfferStatsKeepsOneOfferPerAgent: however many agents come and go while something waits,
// at most maxAgentsKept last offers are kept, the oldest dropped first.
func TestOfferStatsKeepsOneOfferPerAgent(t *testing.T) {
	t0 := time.Now()
	s := NewOfferStats(t0)
	why := []Mismatch{{InsufficientCpus, "needs more"}}
	for i := range maxAgentsKept + 10 {
		s.NotUsed(offer("o", "agent-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "h", 1, 1), why, t0.Add(time.Duration(i)*time.Millisecond))
	}
	last := s.LastUnusedOffers("*")
	if len(last) != maxAgentsKept {
		t.Fatalf("%d last offers kept, want %d", len(last), maxAgentsKept)
	}
	if got := s.Summary().RejectSummaryLastOffers[4]; got.Reason != InsufficientCpus || got.Declined != maxAgentsKept {
		t.Fatalf("last offers' summary: %+v", got)
	}
	if s.Processed() != maxAgentsKept+10 || s.Unused() != maxAgentsKept+10 {
		t.Fatalf("processed %d, unused %d", s.Processed(), s.Unused())
	}
	if first := last[len(last)-1]; !time.Time(first.Timestamp).Equal(t0.Add(10 * time.Millisecond)) {
		t.Fatalf("the oldest kept is from %v, want the 11th (the first 10 dropped)", time.Time(first.Timestamp))
	}
}

// TestSilentAgents: agents that make no offers are named with why, under AgentMaintenance.
func TestSilentAgents(t *testing.T) {
	views := []api.AgentView{
		{Agent: api.Agent{ID: "a1", Hostname: "web1"}, State: "active"},
		{Agent: api.Agent{ID: "a2", Hostname: "web2"}, State: "unavailable", Unavailable: "containerd at /run/c.sock does not answer"},
		{Agent: api.Agent{ID: "a3", Hostname: "web3"}, State: "draining"},
	}
	want := "2 agents make no offers: AgentMaintenance (web2 unavailable: containerd at /run/c.sock does not answer; web3 draining)"
	if got := Silent(views); got != want {
		t.Fatalf("Silent = %q\nwant %q", got, want)
	}
	if got := Silent(views[:1]); got != "" {
		t.Fatalf("every agent active: %q", got)
	}
}
