package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/resources"
)

// httpGreedy is a framework outside the master, on the HTTP scheduler API: once go is set, it
// fills every offer with `sleep` tasks of its shape, takes nothing else of it (refusing the
// rest for an hour) and acknowledges every update, until ctx ends; before, it gives offers
// back at once. It counts its launches and the tasks that ended.
type httpGreedy struct {
	base, fwID, streamID string
	shape                resources.Resources
	start                *atomic.Bool
	launched, ended      atomic.Int64
}

// subscribeGreedy subscribes it as role and serves its stream in the background.
func subscribeGreedy(t *testing.T, ctx context.Context, base, name, role string, shape resources.Resources, start *atomic.Bool) *httpGreedy {
	t.Helper()
	g := &httpGreedy{base: base, shape: shape, start: start}
	// 503 while the scheduler starts: subscribe again, for a while.
	resp := schedulerSubscribe(t, ctx, base, "", api.FrameworkInfo{Name: name, Role: role})
	for deadline := time.Now().Add(30 * time.Second); resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
		resp = schedulerSubscribe(t, ctx, base, "", api.FrameworkInfo{Name: name, Role: role})
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SUBSCRIBE %s: %d", name, resp.StatusCode)
	}
	g.streamID = resp.Header.Get("Agora-Stream-Id")
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64<<10), 16<<20)
	if !lines.Scan() {
		t.Fatalf("SUBSCRIBE %s: no first event: %v", name, lines.Err())
	}
	var first api.Event
	if err := json.Unmarshal(lines.Bytes(), &first); err != nil || first.Subscribed == nil {
		t.Fatalf("SUBSCRIBE %s: first event %s (%v)", name, lines.Bytes(), err)
	}
	g.fwID = first.Subscribed.FrameworkID
	go func() {
		n := 0
		for lines.Scan() {
			var ev api.Event
			if json.Unmarshal(lines.Bytes(), &ev) != nil {
				continue
			}
			switch {
			case ev.Offers != nil:
				for _, o := range ev.Offers.Offers {
					if !g.start.Load() {
						zero := 0.0
						g.call(ctx, api.Call{Type: api.CallDecline, Decline: &api.Decline{OfferIDs: []string{o.ID}, Filters: &api.Filters{RefuseSeconds: &zero}}})
						continue
					}
					var infos []api.TaskInfo
					for left := o.Resources; left.Contains(g.shape); left, _ = left.Subtract(g.shape) {
						infos = append(infos, api.TaskInfo{TaskID: fmt.Sprintf("%s-%d", name, n), Cmd: "sleep 1000", Resources: g.shape})
						n++
					}
					g.launched.Add(int64(len(infos)))
					hour := 3600.0
					g.call(ctx, api.Call{Type: api.CallAccept, Accept: &api.Accept{OfferIDs: []string{o.ID},
						Operations: []api.Operation{{Type: api.OperationLaunch, Launch: &api.Launch{TaskInfos: infos}}}, Filters: &api.Filters{RefuseSeconds: &hour}}})
				}
			case ev.Update != nil:
				st := ev.Update.Status
				if st.State.IsTerminal() {
					g.ended.Add(1)
				}
				if st.UUID != "" {
					g.call(ctx, api.Call{Type: api.CallAcknowledge, Acknowledge: &api.AckUpdate{AgentID: st.AgentID, TaskID: st.TaskID, UUID: st.UUID}})
				}
			}
		}
	}()
	return g
}

// call makes one call on the subscription; a refusal is logged by the test's end, not fatal
// here (this runs on the stream's goroutine).
func (g *httpGreedy) call(ctx context.Context, c api.Call) {
	c.FrameworkID = g.fwID
	b, _ := json.Marshal(c)
	req, _ := http.NewRequestWithContext(ctx, "POST", g.base+"/api/v1/scheduler", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Agora-Stream-Id", g.streamID)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// TestFairSharesOnOneAgent is issue 23 item 5 on the real path: agora dev with one agent of 4
// cpus / 4 GiB on containerd, and two greedy frameworks outside it — cpu-heavy tasks of 0.2
// cpus / 32 MiB and memory-heavy ones of 0.02 cpus / 256 MiB, host `sleep`s — that subscribed
// before it had anything to offer them. They used to end at dominant shares 0 and 1 (the
// first offer held the whole agent); they end where exact DRF does, 18 and 13 tasks (0.90 and
// 0.8125): within 5 % but for the cpu-heavy framework's last task, which the other could not
// use (see allocator.TestOneAgentIsShared).
func TestFairSharesOnOneAgent(t *testing.T) {
	t.Parallel()
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	_, got := startCmd(t, []string{"dev", "--data-dir", t.TempDir(), "--containerd", sock, "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0",
		"--agent-http", "127.0.0.1:0", "--containerd-namespace", ns, "--allocation-interval", "200ms",
		"--resources", fmt.Sprintf("cpus:4;mem:4096;disk:1000;ports:%s", taskPortRange())}, `API:\s+(http://\S+)`)
	base := got[0]
	// Alone, the first to subscribe is rightly offered the whole agent: they start together,
	// giving back what they are offered until both are there.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var start atomic.Bool
	cpu := subscribeGreedy(t, ctx, base, "cpu-heavy", "analytics", resources.Resources{CPUs: 0.2, Mem: 32}, &start)
	mem := subscribeGreedy(t, ctx, base, "mem-heavy", "cache", resources.Resources{CPUs: 0.02, Mem: 256}, &start)
	start.Store(true)

	// Done: nothing launched for 3 s, every task running, no offer outstanding.
	shares := map[string]float64{}
	var fws []api.FrameworkState
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if n := cpu.launched.Load() + mem.launched.Load(); n != last {
			last, since = n, time.Now()
		}
		if code := httpJSON(t, "GET", base+"/v1/frameworks", nil, &fws); code != http.StatusOK {
			t.Fatalf("GET /v1/frameworks: %d", code)
		}
		offered, tasks := false, 0
		for _, fw := range fws {
			if fw.Info.ID == cpu.fwID || fw.Info.ID == mem.fwID {
				shares[fw.Info.ID] = fw.Share
				offered = offered || !fw.Offered.IsEmpty()
				tasks += fw.Tasks
			}
		}
		if time.Since(since) > 3*time.Second && !offered && int64(tasks) == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still launching or offering after 2 minutes: %d launched, %d tasks, frameworks %+v", last, tasks, fws)
		}
	}
	if n := cpu.ended.Load() + mem.ended.Load(); n > 0 {
		t.Fatalf("%d tasks ended; they should sleep on", n)
	}
	s, m := shares[cpu.fwID], shares[mem.fwID]
	t.Logf("%d tasks; dominant shares %.4f (cpu-heavy) and %.4f (memory-heavy)", last, s, m)
	if d := math.Abs(s-0.05-m) / math.Max(s-0.05, m); d > 0.05 || m < 0.8 || s < 0.8 {
		t.Fatalf("dominant shares %.4f and %.4f: %.1f%% apart without the last cpu-heavy task", s, m, d*100)
	}
}
