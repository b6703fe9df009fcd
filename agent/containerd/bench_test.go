package containerd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/shim"
)

// shimOf is the pid of the shim of a task in namespace ns.
func shimOf(t testing.TB, ns, id string) int {
	t.Helper()
	for _, sh := range shim.List() {
		if sh.Namespace == ns && sh.ID == id {
			return sh.PID
		}
	}
	t.Fatalf("no shim of %s/%s", ns, id)
	return 0
}

// pssKiB is a process's proportional set size (its private memory, and its share of what it
// shares with others), in KiB.
func pssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0 // ended meanwhile
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

// treeOf is pid and every process below it.
func treeOf(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, shim.Children(out[i])...)
	}
	return out
}

// selfRSSKiB is this process's resident set size, in KiB.
func selfRSSKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

// settled is this process's Go heap and RSS once garbage is collected and returned to the
// system.
func settled() (heap, rssKiB int64) {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), selfRSSKiB()
}

// BenchmarkPerTaskCost launches 20 tasks that only sleep, and measures what each costs the host
// beside the task's own process: the proportional set size (PSS) of every process of its shim's
// tree but the task's, that is the shim and whatever else runs for the task's sake; and of the
// shim alone, to compare (issue 21: the first at most 1.25x the second). And what this process,
// the executor's (the agent's), holds per task: the Go heap and the RSS it lets go of once the
// tasks are removed (noisy: a few KiB per task against a process of tens of MiB).
//
//	go test -run '^$' -bench PerTaskCost -benchtime 3x ./agent/containerd/
func BenchmarkPerTaskCost(b *testing.B) {
	const tasks = 20
	ns := fmt.Sprintf("agora-bench-cost-%d", time.Now().UnixNano())
	e := newExecutorWith(b, func(c *Config) { c.Namespace = ns })
	b.Cleanup(func() { containerdtest.RemoveNamespace(b, e.cfg.Client, ns) })
	ctx := context.Background()
	var overhead, shims, rss, heap float64
	runs := 0
	for b.Loop() {
		runs++
		var hs []*Handle
		for i := 0; i < tasks; i++ {
			h, err := e.Launch(ctx, Spec{TaskID: fmt.Sprintf("cost-%d-%d", runs, i), Cmd: "exec sleep 3600"})
			if err != nil {
				b.Fatal(err)
			}
			hs = append(hs, h)
		}
		heapWith, rssWith := settled()
		for _, h := range hs {
			task := map[int]bool{}
			for _, pid := range treeOf(int(containerdtest.TaskPID(b, e.cfg.Client, ns, h.ID))) {
				task[pid] = true
			}
			sh := shimOf(b, ns, h.ID)
			shims += float64(pssKiB(sh))
			for _, pid := range treeOf(sh) {
				if !task[pid] {
					overhead += float64(pssKiB(pid))
				}
			}
		}
		for _, h := range hs {
			if err := e.Kill(ctx, h.ID, 0); err != nil { // sleep, as pid 1, ignores SIGTERM
				b.Fatal(err)
			}
			<-h.Done()
			if err := e.Remove(ctx, h.ID); err != nil {
				b.Fatal(err)
			}
		}
		// What the executor holds per task: what it lets go of when its tasks are gone.
		heapWithout, rssWithout := settled()
		heap += float64(heapWith - heapWithout)
		rss += float64(rssWith - rssWithout)
	}
	n := float64(runs * tasks)
	b.ReportMetric(overhead/n, "pss-per-task-KiB")
	b.ReportMetric(shims/n, "shim-pss-KiB")
	b.ReportMetric(overhead/shims, "x-shim")
	b.ReportMetric(rss/n, "agent-rss-per-task-KiB")
	b.ReportMetric(heap/n, "agent-heap-per-task-B")
}
