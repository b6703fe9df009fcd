package marathon

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/mastertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// BenchmarkThousandApps is the scale benchmark: on 1,000 simulated agents, create 1,000
// apps of 10 instances through the HTTP API and wait until all 10,000 instances run (target
// <= 5 s), then time GET /v2/apps with the 1,000 apps (target <= 100 ms, the median of 5).
func BenchmarkThousandApps(b *testing.B) {
	const apps, instances, agents = 1000, 10, 1000
	for b.Loop() {
		b.StopTimer()
		sim := &mastertest.SimulatedAgents{}
		var svc *Service
		m, stop := frameworktest.Master(b, b.TempDir(), sim, 50*time.Millisecond, map[string]raft.Applier{Namespace: Applier()}, func(m *master.Master) error {
			var err error
			if svc, err = New(Config{Host: m.FrameworkHost(Namespace)}); err == nil {
				svc.Register()
			}
			return err
		})
		frameworktest.WaitFor(b, "the service framework", 20*time.Second, func() bool {
			svc.mu.Lock()
			defer svc.mu.Unlock()
			return svc.st != nil
		})
		sim.AddAgents(agents, resources.Resources{CPUs: 2, Mem: 4096, Disk: 10000, Ports: resources.Ranges{{Begin: 31000, End: 31100}}})
		base := "http://" + m.HTTPAddr()

		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, apps)
		work := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					body := fmt.Sprintf(`{"id": "/bench/app-%04d", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": %d}`, i, instances)
					resp, err := http.Post(base+"/v2/apps", "application/json", bytes.NewBufferString(body))
					if err != nil {
						errs <- err
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						errs <- fmt.Errorf("app %d: %s", i, resp.Status)
					}
				}
			}()
		}
		for i := range apps {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
			svc.mu.Lock()
			running := 0
			for _, in := range svc.st.instances {
				if in.state == task.Running {
					running++
				}
			}
			svc.mu.Unlock()
			if running == apps*instances {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d instances running after 2 minutes", running, apps*instances)
			}
		}
		allRunning := time.Since(start)
		b.StopTimer()

		var gets []time.Duration
		for range 5 {
			t0 := time.Now()
			resp, err := http.Get(base + "/v2/apps")
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || n < int64(apps*100) {
				b.Fatalf("GET /v2/apps: %s, %d bytes", resp.Status, n)
			}
			gets = append(gets, time.Since(t0))
		}
		sort.Slice(gets, func(i, j int) bool { return gets[i] < gets[j] })
		b.ReportMetric(allRunning.Seconds(), "s-to-all-running")
		b.ReportMetric(float64(gets[len(gets)/2].Microseconds())/1000, "ms/GET-v2-apps")
		stop()
		b.StartTimer()
	}
}

// BenchmarkDependencyCheck: the cycle check and the step order of one change of 5,000 apps in
// 50 groups, each app depending on the one before it in its group and every group on the one
// before it (what a large POST /v2/groups asks of the leader).
func BenchmarkDependencyCheck(b *testing.B) {
	apps := map[string]App{}
	groups := map[string]groupRecord{}
	var changed []string
	for g := range 50 {
		gid := fmt.Sprintf("/g%02d", g)
		rec := groupRecord{ID: gid}
		if g > 0 {
			rec.Dependencies = []string{fmt.Sprintf("/g%02d", g-1)}
		}
		groups[gid] = rec
		for a := range 100 {
			id := fmt.Sprintf("%s/app%03d", gid, a)
			app := App{ID: id}
			if a > 0 {
				app.Dependencies = []string{fmt.Sprintf("app%03d", a-1)}
			}
			apps[id] = app
			changed = append(changed, id)
		}
	}
	for b.Loop() {
		if c := dependencyCycle(apps, groups); c != nil {
			b.Fatalf("cycle %v", c)
		}
		orderByDependencies(changed, apps, groups, func(string) bool { return false })
	}
}

// BenchmarkFailedLaunches is the framework's side of issue 18's spin: an app of 2, one
// instance running, whose other launch fails at once, 1,000 and then 10,000 times (the
// planner's clock jumps to the end of each backoff). Reported: the heap the framework still
// holds afterwards (retained-KiB, over what it held before: failed instances are forgotten,
// only lastTaskFailure stays) and the instances it keeps.
func BenchmarkFailedLaunches(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("launches=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				_, st, as, clk := beside(b, `"backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300`)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				for i := range n {
					if as.delayUntil.After(clk.Now()) {
						clk.Advance(as.delayUntil.Sub(clk.Now()))
					}
					now := clk.Now()
					st.decide(now, true, "*")
					if as.want != 1 {
						b.Fatalf("launch %d: the app wants %d", i, as.want)
					}
					id := fmt.Sprintf("web.%06d", i)
					st.add(&instance{rec: InstanceRecord{ID: id, AppID: "/web", Version: "v1", AgentID: "a2", StagedAt: now}, state: task.Staging, reconciled: true})
					as.want--
					st.observe(api.TaskStatus{TaskID: id, State: task.Error, Message: "port 31000 is held", Timestamp: now}, now)
				}
				b.StopTimer()
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/1024, "retained-KiB")
				b.ReportMetric(float64(len(st.instances)), "instances-kept")
				b.StartTimer()
			}
		})
	}
}
