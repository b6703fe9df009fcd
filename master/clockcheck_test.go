package master

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/promtext"
)

// TestJudgeClock: the decision about a master's clock from its peers' samples, without I/O.
func TestJudgeClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mono0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	s := func(off, err time.Duration) clockSample {
		return clockSample{offset: off, err: err, wall: t0, mono: mono0}
	}
	const bound = 500 * time.Millisecond
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		samples map[string][]clockSample
		voters  int
		wallAt  time.Duration // wall clock now, since t0
		monoAt  time.Duration // monotonic now, since mono0
		trusted bool
		skewed  bool
		lag     time.Duration
		offset  time.Duration
		reason  string
	}{
		{name: "alone (agora dev): nothing to compare with", voters: 1, trusted: true},
		{name: "all agree", voters: 3, samples: map[string][]clockSample{"b": {s(2*ms, ms)}, "c": {s(-3*ms, ms)}}, trusted: true, lag: 4 * ms, offset: 0},
		{name: "this clock 90 s ahead of both", voters: 3, samples: map[string][]clockSample{"b": {s(-90*time.Second, ms)}, "c": {s(-90*time.Second, ms)}},
			skewed: true, offset: -90 * time.Second, reason: "1m30s off the other masters'"},
		{name: "one peer 90 s ahead: the other agrees, a majority", voters: 3, samples: map[string][]clockSample{"b": {s(90*time.Second, ms)}, "c": {s(ms, ms)}},
			trusted: true, offset: ms},
		{name: "no peer answers", voters: 3, reason: "no other master answered"},
		{name: "samples too old", voters: 3, samples: map[string][]clockSample{"b": {s(0, ms)}, "c": {s(0, ms)}}, wallAt: 10 * time.Second, monoAt: 10 * time.Second,
			reason: "no other master answered"},
		{name: "a wall step after the probe shows at once", voters: 3, samples: map[string][]clockSample{"b": {s(0, ms)}, "c": {s(0, ms)}},
			wallAt: 90*time.Second + time.Second, monoAt: time.Second, skewed: true, offset: -90 * time.Second},
		{name: "the best of the samples counts, not a slow one", voters: 3, samples: map[string][]clockSample{"b": {s(400*ms, 600*ms), s(2*ms, ms)}, "c": {s(0, 900*ms)}},
			trusted: true, offset: 0},
		{name: "uncertain: too slow a round trip to tell", voters: 3, samples: map[string][]clockSample{"b": {s(0, 600*ms)}, "c": {s(0, 600*ms)}},
			reason: "only 1 of 3 masters"},
		{name: "a peer behind within the bound: decide on its time", voters: 3, samples: map[string][]clockSample{"b": {s(-300*ms, 10*ms)}, "c": {s(0, ms)}},
			trusted: true, lag: 310 * ms, offset: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var peers []string
			for _, id := range []string{"b", "c"} {
				if tc.voters > 1 {
					peers = append(peers, id)
				}
			}
			j := judgeClock(tc.samples, peers, tc.voters, t0.Add(tc.wallAt), mono0.Add(tc.monoAt), bound)
			if j.trusted != tc.trusted || j.skewed != tc.skewed || j.lag != tc.lag || j.offset != tc.offset {
				t.Fatalf("trusted %t skewed %t lag %s offset %s; want %t %t %s %s (%s)", j.trusted, j.skewed, j.lag, j.offset, tc.trusted, tc.skewed, tc.lag, tc.offset, j.reason)
			}
			if tc.trusted != (j.reason == "") || !strings.Contains(j.reason, tc.reason) {
				t.Fatalf("reason %q, want one with %q", j.reason, tc.reason)
			}
		})
	}
}

// TestSaneTarget: a skewed leader hands over to a peer whose clock agrees with a majority.
func TestSaneTarget(t *testing.T) {
	j := clockJudgement{quorum: 2, peers: []peerClock{
		{id: "b", offset: -90 * time.Second, err: time.Millisecond, answer: true},
		{id: "c", offset: -90*time.Second + 3*time.Millisecond, err: time.Millisecond, answer: true},
		{id: "d"},
	}}
	first := func(int) int { return 0 }
	if got := j.saneTarget(500*time.Millisecond, first); got != "b" {
		t.Fatalf("target %q, want b (agrees with c)", got)
	}
	j.peers[1].offset = 0 // c agrees with the leader, b with nobody
	if got := j.saneTarget(500*time.Millisecond, first); got != "c" {
		t.Fatalf("target %q, want c", got)
	}
	j.peers[1].offset = 90 * time.Second // three clocks, three times
	if got := j.saneTarget(500*time.Millisecond, first); got != "" {
		t.Fatalf("target %q, want none", got)
	}
}

// TestOneMasterTrustsItsClock: a single master (agora dev) has no peer to compare with and must
// still fire, whatever its clock says.
func TestOneMasterTrustsItsClock(t *testing.T) {
	r := startMasterConfig(t, Config{DataDir: t.TempDir(), Clock: clock.NewShifted(clock.Real{}, time.Hour)})
	leaderOf(t, r)
	if v := r.m.CheckClock(); !v.Trusted || v.Lag != 0 {
		t.Fatalf("CheckClock = %+v, want trusted", v)
	}
	var v api.ClusterView
	getJSON(t, r.url("/v1/cluster"), &v)
	if v.Clock == nil || !v.Clock.Trusted || v.Clock.Voters != 1 {
		t.Fatalf("/v1/cluster clock = %+v", v.Clock)
	}
}

// TestSkewedLeaderRefusesAndHandsOver: three masters; the leader's clock steps 90 s ahead. At
// once (before any new probe) it no longer trusts its clock, says so in /v1/cluster and in
// agora_master_clock_offset_seconds, and hands leadership to a master whose clock agrees;
// asking the new leader to step down never hands it back to the skewed one.
func TestSkewedLeaderRefusesAndHandsOver(t *testing.T) {
	var ms []*running
	clocks := map[*running]*clock.Shifted{}
	first := (*running)(nil)
	for i := range 3 {
		clk := clock.NewShifted(clock.Real{}, 0)
		cfg := Config{DataDir: t.TempDir(), BootstrapExpect: 3, Clock: clk}
		if i > 0 {
			cfg.Join = []string{first.m.GossipAddr()}
		}
		r := startMasterConfig(t, cfg)
		if i == 0 {
			first = r
		}
		ms = append(ms, r)
		clocks[r] = clk
	}
	lead := leaderOf(t, ms...)
	waitUntil(t, "every master trusts its clock", 10*time.Second, func() bool {
		for _, r := range ms {
			if !r.m.CheckClock().Trusted {
				return false
			}
		}
		return true
	})
	clocks[lead].SetOffset(90 * time.Second)
	if v := lead.m.CheckClock(); v.Trusted || !strings.Contains(v.Reason, "off the other masters'") {
		t.Fatalf("right after the step: CheckClock = %+v, want not trusted", v)
	}
	var view api.ClusterView
	getJSON(t, lead.url("/v1/cluster"), &view)
	if view.Clock == nil || view.Clock.Trusted || !view.Clock.Skewed || view.Clock.OffsetSeconds > -89 {
		t.Fatalf("/v1/cluster clock = %+v", view.Clock)
	}
	m, err := promtext.Get(lead.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	if off := m["agora_master_clock_offset_seconds"]; off > -89.5 || off < -90.5 || m["agora_master_clock_trusted"] != 0 {
		t.Fatalf("agora_master_clock_offset_seconds %g, agora_master_clock_trusted %g; want -90 and 0", off, m["agora_master_clock_trusted"])
	}
	var next *running
	waitUntil(t, "leadership handed to another master", 15*time.Second, func() bool {
		l := leaderOf(t, ms...)
		next = l
		return l != lead
	})
	if v := next.m.CheckClock(); !v.Trusted {
		t.Fatalf("the new leader does not trust its clock: %+v", v)
	}
	// The others learn of the step with their next probe (within a second).
	waitUntil(t, "the others see the skewed clock disagree", 5*time.Second, func() bool {
		for _, r := range ms {
			if r == lead {
				continue
			}
			for _, p := range r.m.clockGuard.judge().peers {
				if p.id == lead.m.id && p.verdict != disagrees {
					return false
				}
			}
		}
		return true
	})
	for range 3 {
		req, _ := http.NewRequest(http.MethodDelete, next.url("/v2/leader"), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		waitUntil(t, "another leader", 15*time.Second, func() bool { l := leaderOf(t, ms...); return l != next })
		next = leaderOf(t, ms...)
		if next == lead {
			t.Fatal("DELETE /v2/leader handed leadership to the master whose clock is 90 s ahead")
		}
	}
}

// TestJudgeClockPeerStep: a peer whose clock stepped since its older samples is judged by the
// samples since the step, however precise the older ones were.
func TestJudgeClockPeerStep(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mono0 := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	samples := map[string][]clockSample{
		"b": {{offset: 0, err: 100 * time.Microsecond, wall: t0, mono: mono0},
			{offset: 90 * time.Second, err: 20 * time.Millisecond, wall: t0.Add(time.Second), mono: mono0.Add(time.Second)}},
		"c": {{offset: 0, err: time.Millisecond, wall: t0, mono: mono0}},
	}
	j := judgeClock(samples, []string{"b", "c"}, 3, t0.Add(2*time.Second), mono0.Add(2*time.Second), 500*time.Millisecond)
	if j.peers[0].verdict != disagrees || j.peers[0].offset != 90*time.Second || !j.trusted {
		t.Fatalf("b judged %+v (trusted %t), want it disagreeing at +90 s", j.peers[0], j.trusted)
	}
}
