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
			for _, p := range r.m.clockGuard.Status().Peers {
				if p.ID == lead.m.id && p.Verdict != "disagrees" {
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
