package clockcheck

import (
	"strings"
	"testing"
	"time"
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
