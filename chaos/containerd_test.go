package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/promtext"
)

func init() {
	scenarios = append(scenarios,
		scenario{name: "containerd-restart", privateContainerd: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			return containerdRestart(t, c, 10*time.Second, false)
		}},
		// Past every timeout of registration (--agent-reregister-timeout 20 s), with a new
		// leader meanwhile, which must learn from the agents that they take no tasks.
		scenario{name: "containerd-restart-long", privateContainerd: true, fault: func(t *testing.T, c *Cluster, rng *rand.Rand) []string {
			return containerdRestart(t, c, 30*time.Second, true)
		}},
	)
}

// containerdRestart kills -9 the agents' containerd (the cluster's own) for down while the
// workload runs, then starts it again on the same root and state; with killLeader, the leading
// master is killed -9 too while containerd is down, and restarted.
//
// Invariant: no app has more running containers than it wants, and no task is terminal on the
// masters while its container runs — sampled every 400 ms through the fault and its healing;
// after it, no shim is left that containerd lost.
func containerdRestart(t *testing.T, c *Cluster, downFor time.Duration, killLeader bool) []string {
	d := c.Containerd
	webs := func() int {
		n := 0
		for _, ids := range containersUnderShims(c) {
			for _, id := range ids {
				if strings.HasPrefix(id, "chaos_web-") {
					n++
				}
			}
		}
		return n
	}
	// The sampler reads containers where containerd keeps them: it must see the workload's.
	if n := webs(); n < 2 {
		t.Fatalf("the containers of the apps are not where the sampler looks (%d running)", n)
	}
	watch := watchContainers(c, 2)
	refusedBefore := agentsRefused(c)
	ended := func() map[string]bool {
		out := map[string]bool{}
		var tasks []api.TaskStatus
		if _, err := c.Do("GET", "/v1/tasks", nil, &tasks); err == nil {
			for _, st := range tasks {
				if strings.HasPrefix(st.TaskID, "chaos_web-") && st.State.IsTerminal() {
					out[st.TaskID] = true
				}
			}
		}
		return out
	}
	endedBefore := ended()

	c.Event("kill -9 containerd for %s", downFor)
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	noticed := waitAgents(t, c, 10*time.Second, func(a *Node) (bool, string) {
		code, err := c.call("GET", a.HTTP+"/health", "", nil, nil) // err holds the body
		return code == 503 && strings.Contains(fmt.Sprint(err), "containerd"), fmt.Sprintf("%s /health %d %v", a.Name, code, err)
	})
	c.Event("every agent answers /health 503 naming containerd (%.1fs)", noticed.Seconds())
	shown := waitAgents(t, c, 10*time.Second, func(a *Node) (bool, string) {
		v, ok := masterView(c, a)
		return ok && v.State == "unavailable" && strings.Contains(v.Unavailable, "containerd"), fmt.Sprintf("%s: %+v", a.Name, v)
	})
	c.Event("the masters show every agent unavailable (%.1fs)", shown.Seconds())
	var failover []string
	if killLeader {
		l := mustLeader(t, c)
		c.Event("kill -9 leader %s while containerd is down", l.Name)
		if err := l.Kill(); err != nil {
			t.Fatal(err)
		}
		rec := recovery(t, c, l)
		restart(t, c, l)
		again := waitAgents(t, c, 30*time.Second, func(a *Node) (bool, string) {
			v, ok := masterView(c, a)
			return ok && v.State == "unavailable", fmt.Sprintf("%s: %+v", a.Name, v)
		})
		c.Event("the new leader shows every agent unavailable (%.1fs after it committed)", again.Seconds())
		failover = append(failover, fmt.Sprintf("leader killed meanwhile: recovery %.1fs, agents unavailable on the new leader %.1fs after", rec.Seconds(), again.Seconds()))
	}
	time.Sleep(time.Until(killed.Add(downFor)))
	runningDown := webs()

	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	down := time.Since(killed)
	c.Event("containerd started again on the same root and state (down %.1fs)", down.Seconds())
	back := waitAgents(t, c, 60*time.Second, func(a *Node) (bool, string) {
		code, err := c.call("GET", a.HTTP+"/health", "", nil, nil)
		if code != 200 {
			return false, fmt.Sprintf("%s /health %d %v", a.Name, code, err)
		}
		v, ok := masterView(c, a)
		return ok && v.State == "active", fmt.Sprintf("%s on the masters: %+v", a.Name, v)
	})
	c.Event("every agent re-attached and active again (%.1fs)", back.Seconds())
	endedMeanwhile := 0
	for id := range ended() {
		if !endedBefore[id] {
			endedMeanwhile++
		}
	}
	refused := agentsRefused(c) - refusedBefore
	// Keep sampling through the healing: in the bug, replacements started beside the originals
	// within seconds of containerd's return.
	time.Sleep(20 * time.Second)
	samples, most := watch.stop()
	// containerd 1.6 killed while it creates a task can lose the task's shim (containerd#6860):
	// it lives on, with a `runc init`, unknown to containerd; the agent whose launch it was
	// must end it (no orphan, even one containerd does not list).
	lost := 0
	for _, sh := range d.Shims() {
		if _, err := c.ctrd.LoadContainer(namespaced(t, sh.Namespace), sh.ID); errdefs.IsNotFound(err) {
			lost++
			c.Violate("a shim of %s/%s (pid %d) runs that containerd lost: no agent ended it", sh.Namespace, sh.ID, sh.PID)
		}
	}
	return append([]string{
		fmt.Sprintf("containerd down %.1fs (app containers running under their shims meanwhile %d)", down.Seconds(), runningDown),
		fmt.Sprintf("agents 503 after %.1fs, unavailable on the masters after %.1fs", noticed.Seconds(), shown.Seconds()),
		fmt.Sprintf("launches refused %d", refused),
		fmt.Sprintf("re-attached and active %.1fs after containerd answered", back.Seconds()),
		fmt.Sprintf("app tasks ended meanwhile %d", endedMeanwhile),
		fmt.Sprintf("container samples %d (most running for one app %d)", samples, most),
		fmt.Sprintf("shims containerd lost left %d", lost),
	}, failover...)
}

// waitAgents waits until ok holds for every agent, and answers how long it took.
func waitAgents(t *testing.T, c *Cluster, within time.Duration, ok func(*Node) (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		all, why := true, ""
		for _, a := range c.Agents {
			if done, w := ok(a); !done {
				all, why = false, w
				break
			}
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// masterView is the agent as the masters list it.
func masterView(c *Cluster, a *Node) (api.AgentView, bool) {
	var views []api.AgentView
	if _, err := c.Do("GET", "/v1/agents", nil, &views); err != nil {
		return api.AgentView{}, false
	}
	for _, v := range views {
		if v.Hostname == "chaos-"+a.Name && v.RemovedAt == nil {
			return v, true
		}
	}
	return api.AgentView{}, false
}

// agentsRefused sums the launches the agents refused while their containerd was unavailable.
func agentsRefused(c *Cluster) int {
	n := 0.0
	for _, a := range c.Agents {
		if m, err := promtext.Get(a.HTTP + "/metrics"); err == nil {
			n += m["agora_agent_launches_refused_unavailable_total"]
		}
	}
	return int(n)
}

// containerWatch samples, every 400 ms, the containers that run, read from the cluster's
// containerd's state directory and /proc (so that it sees them while containerd is dead too),
// against the masters' task table.
type containerWatch struct {
	c       *Cluster
	want    int
	stopped chan struct{}
	done    sync.WaitGroup
	samples int
	most    int
}

func watchContainers(c *Cluster, want int) *containerWatch {
	w := &containerWatch{c: c, want: want, stopped: make(chan struct{})}
	w.done.Add(1)
	go w.run()
	return w
}

func (w *containerWatch) stop() (samples, most int) {
	close(w.stopped)
	w.done.Wait()
	return w.samples, w.most
}

func (w *containerWatch) run() {
	defer w.done.Done()
	suspect := map[string]bool{}  // terminal on the masters while running, at the last sample
	reported := map[string]bool{} // each breach once: a sampler sees a lasting one every time
	violate := func(key, format string, args ...any) {
		if !reported[key] {
			reported[key] = true
			w.c.Violate(format, args...)
		}
	}
	for {
		select {
		case <-w.stopped:
			return
		case <-time.After(400 * time.Millisecond):
		}
		// The masters first: a task's end is told only after its container is gone, so a
		// container that runs after the masters said its task ended is a breach.
		var tasks []api.TaskStatus
		_, terr := w.c.Do("GET", "/v1/tasks", nil, &tasks)
		running := containersUnderShims(w.c)
		w.samples++
		perApp := map[string][]string{}
		for _, a := range w.c.Agents {
			for _, id := range running[a.NS] {
				if strings.HasPrefix(id, "chaos_web-") {
					app, _, _ := strings.Cut(id, ".")
					perApp[app] = append(perApp[app], a.Name+":"+id)
				}
			}
		}
		for app, where := range perApp {
			w.most = max(w.most, len(where))
			if len(where) > w.want {
				violate(fmt.Sprint(app, len(where)), "%s has %d containers running at once, wants %d: %v", app, len(where), w.want, where)
			}
		}
		if terr != nil {
			continue
		}
		runs := map[string]bool{}
		for _, ids := range running {
			for _, id := range ids {
				runs[id] = true
			}
		}
		now := map[string]bool{}
		for _, st := range tasks {
			if st.State.IsTerminal() && runs[st.TaskID] {
				if suspect[st.TaskID] { // twice in a row: not a sample caught mid-removal
					violate(st.TaskID, "task %s is %s on the masters while its container runs", st.TaskID, st.State)
				}
				now[st.TaskID] = true
			}
		}
		suspect = now
	}
}

// containersUnderShims are the containers whose process runs, by namespace, read from the cluster
// containerd's state directory (each task's bundle and its init.pid, there until the task is
// deleted) and /proc: containerd need not answer.
func containersUnderShims(c *Cluster) map[string][]string {
	out := map[string][]string{}
	root := filepath.Join(c.Containerd.Dir, "state", "io.containerd.runtime.v2.task")
	for _, a := range c.Agents {
		bundles, _ := os.ReadDir(filepath.Join(root, a.NS))
		for _, b := range bundles {
			pid, err := os.ReadFile(filepath.Join(root, a.NS, b.Name(), "init.pid"))
			if err != nil {
				continue
			}
			if p, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil && alive(p) {
				out[a.NS] = append(out[a.NS], b.Name())
			}
		}
	}
	return out
}

// alive says whether process pid runs (exists and is not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}
