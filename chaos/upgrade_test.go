package chaos

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// kill-leader-mid-upgrade: a rolling upgrade of an app of 3 health-checked instances
// (minimumHealthCapacity 0.5, maximumOverCapacity 0) is under way — 1 to 3 moves made, as the
// seed picks — when the leader is killed -9; it is restarted 4 s later.
//
// Invariant, sampled on what really runs (containerd, and the instances' own /health) every
// 500 ms through the failover: at most 3 containers of the app run, at least 2 of its instances
// answer /health; the upgrade ends with 3 healthy instances of the new version and none of the
// old.
func init() {
	scenarios = append(scenarios, scenario{name: "kill-leader-mid-upgrade", short: true, fault: killLeaderMidUpgrade})
}

const (
	upgradeApp       = "/chaos/upgrade"
	upgradeTaskPfx   = "chaos_upgrade."
	upgradeInstances = 3
	upgradeMaxRun    = 3 // floor((1 + maximumOverCapacity 0) × 3)
	upgradeMinHealth = 2 // ceil(minimumHealthCapacity 0.5 × 3)
	upgradeBound     = 120 * time.Second
)

func upgradeDef(version string) map[string]any {
	return map[string]any{"id": upgradeApp, "container": map[string]any{"type": "DOCKER", "docker": map[string]string{"image": containerdtest.TestAppImage}},
		"args": []string{"-sleep", "24h"}, "cpus": 0.1, "mem": 32, "instances": upgradeInstances,
		"env":             map[string]string{"CHAOS_VERSION": version},
		"upgradeStrategy": map[string]float64{"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
		"portDefinitions": []map[string]any{{"port": 0, "name": "http"}},
		"healthChecks":    []map[string]any{{"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1, "timeoutSeconds": 2, "gracePeriodSeconds": 10}}}
}

// upgradeSample is what runs of the app at one moment, seen from outside Agora.
type upgradeSample struct {
	at         time.Time
	containers []string       // containerd: containers of the app with a live task
	healthy    map[string]int // version → instances whose /health answered 200
	complete   bool           // every agent answered its task list
}

func (s upgradeSample) healthyAll() int {
	n := 0
	for _, c := range s.healthy {
		n += c
	}
	return n
}

// sampleUpgrade looks at containerd in every agent's namespace and probes the /health of every
// live task of the app the agents list.
func sampleUpgrade(t *testing.T, c *Cluster, client *containerd.Client, hc *http.Client) upgradeSample {
	s := upgradeSample{at: time.Now(), healthy: map[string]int{}, complete: true}
	type probe struct{ version, url string }
	var probes []probe
	for _, a := range c.Agents {
		ctx := namespaced(t, a.NS)
		if ctrs, err := client.Containers(ctx); err == nil {
			for _, ctr := range ctrs {
				if !strings.HasPrefix(ctr.ID(), upgradeTaskPfx) {
					continue
				}
				tk, err := ctr.Task(ctx, nil)
				if err != nil {
					continue // no task: nothing runs in it
				}
				if st, err := tk.Status(ctx); err != nil || st.Status != containerd.Stopped {
					s.containers = append(s.containers, a.Name+":"+ctr.ID())
				}
			}
		} else {
			s.complete = false
		}
		var tasks []api.Task
		if c.Agent(a, "/v1/tasks", &tasks) != nil {
			s.complete = false
			continue
		}
		for _, tk := range tasks {
			if !strings.HasPrefix(tk.Info.TaskID, upgradeTaskPfx) || tk.Status.State.IsTerminal() || len(tk.Info.Resources.Ports) == 0 {
				continue
			}
			probes = append(probes, probe{tk.Info.Env["CHAOS_VERSION"], fmt.Sprintf("http://%s:%d/health", a.Host(), tk.Info.Resources.Ports[0].Begin)})
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(p.url)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				mu.Lock()
				s.healthy[p.version]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(s.containers)
	return s
}

// upgradeDeploying says whether a deployment of the app (id, or any when id is "") is in
// progress; an error counts as in progress.
func upgradeDeploying(c *Cluster, id string) (bool, error) {
	var deps []struct {
		ID           string   `json:"id"`
		AffectedApps []string `json:"affectedApps"`
	}
	if _, err := c.Do("GET", "/v2/deployments", nil, &deps); err != nil {
		return true, err
	}
	for _, d := range deps {
		if d.ID == id || id == "" && slices.Contains(d.AffectedApps, upgradeApp) {
			return true, nil
		}
	}
	return false, nil
}

func killLeaderMidUpgrade(t *testing.T, c *Cluster, rng *rand.Rand) []string {
	client := containerdtest.Client(t)
	// A probe may take its time on a loaded machine: a slow answer is still an answer. A stopped
	// instance refuses at once.
	hc := c.Client(3 * time.Second)
	if _, err := c.Do("POST", "/v2/apps", upgradeDef("v1"), nil); err != nil {
		t.Fatalf("create %s: %v", upgradeApp, err)
	}
	c.Event("created %s (%d instances, v1)", upgradeApp, upgradeInstances)
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		s := sampleUpgrade(t, c, client, hc)
		deploying, err := upgradeDeploying(c, "")
		if err == nil && !deploying && len(s.containers) == upgradeInstances && s.healthy["v1"] == upgradeInstances {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not at %d healthy instances, deployed, within 90s: %v, healthy %v, deploying %t (%v)", upgradeApp, upgradeInstances, s.containers, s.healthy, deploying, err)
		}
	}
	c.Event("%s runs %d healthy instances of v1", upgradeApp, upgradeInstances)

	// The invariant, sampled every 500 ms from now until the upgrade is done; each sample in its
	// own goroutine, so that a slow one does not slow the sampling.
	var (
		mu         sync.Mutex
		samples    []upgradeSample
		violations []string
	)
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sampling.Add(1)
			go func() {
				defer sampling.Done()
				s := sampleUpgrade(t, c, client, hc)
				mu.Lock()
				defer mu.Unlock()
				samples = append(samples, s)
				if len(s.containers) > upgradeMaxRun {
					msg := fmt.Sprintf("%d containers of %s run at once (at most %d): %v", len(s.containers), upgradeApp, upgradeMaxRun, s.containers)
					c.Event("VIOLATION %s", msg)
					violations = append(violations, msg)
				}
				if s.complete && s.healthyAll() < upgradeMinHealth {
					msg := fmt.Sprintf("%d instances of %s healthy (at least %d): %v, running %v", s.healthyAll(), upgradeApp, upgradeMinHealth, s.healthy, s.containers)
					c.Event("VIOLATION %s", msg)
					violations = append(violations, msg)
				}
			}()
		}
	}()
	stopSampling := func() {
		close(stop)
		sampling.Wait()
	}

	var dep struct {
		DeploymentID string `json:"deploymentId"`
	}
	if _, err := c.Do("PUT", "/v2/apps"+upgradeApp, upgradeDef("v2"), &dep); err != nil {
		stopSampling()
		t.Fatalf("upgrade %s: %v", upgradeApp, err)
	}
	upgraded := time.Now()
	c.Event("upgrade %s to v2: deployment %s", upgradeApp, dep.DeploymentID)

	// Under way: the seed picks after how many moves (old instances being killed, new ones
	// launched, as the agents see them) the leader goes: 1 to 3 of the upgrade's 6.
	moves := 1 + rng.IntN(3)
	var underWay string
	seen := map[string]string{}
	for deadline := time.Now().Add(60 * time.Second); len(seen) < moves; time.Sleep(50 * time.Millisecond) {
		for _, a := range c.Agents {
			var tasks []api.Task
			if c.Agent(a, "/v1/tasks", &tasks) != nil {
				continue
			}
			for _, tk := range tasks {
				if !strings.HasPrefix(tk.Info.TaskID, upgradeTaskPfx) || seen[tk.Info.TaskID] != "" {
					continue
				}
				switch {
				case tk.Info.Env["CHAOS_VERSION"] == "v2":
					seen[tk.Info.TaskID] = fmt.Sprintf("new instance %s launched on %s", tk.Info.TaskID, a.Name)
				case tk.Status.State == "TASK_KILLING" || tk.Status.State.IsTerminal():
					seen[tk.Info.TaskID] = fmt.Sprintf("old instance %s on %s %s", tk.Info.TaskID, a.Name, tk.Status.State)
				default:
					continue
				}
				c.Event("move %d: %s", len(seen), seen[tk.Info.TaskID])
				underWay = fmt.Sprintf("after move %d: %s", len(seen), seen[tk.Info.TaskID])
			}
		}
		if time.Now().After(deadline) {
			stopSampling()
			t.Fatalf("the upgrade of %s made %d of %d moves within 60s", upgradeApp, len(seen), moves)
		}
	}
	c.Event("under way: %s", underWay)
	l := mustLeader(t, c)
	c.Event("kill -9 leader %s", l.Name)
	if err := l.Kill(); err != nil {
		stopSampling()
		t.Fatal(err)
	}
	rec := recovery(t, c, l)
	time.Sleep(time.Until(time.Now().Add(4*time.Second - rec)))
	restart(t, c, l)

	// Done: the deployment is gone and only new instances run, all of them healthy.
	var done time.Duration
	var last upgradeSample
	for deadline := upgraded.Add(upgradeBound); ; time.Sleep(250 * time.Millisecond) {
		pending, err := upgradeDeploying(c, dep.DeploymentID)
		last = sampleUpgrade(t, c, client, hc)
		if !pending && len(last.containers) == upgradeInstances && last.healthy["v2"] == upgradeInstances && last.healthyAll() == upgradeInstances {
			done = time.Since(upgraded)
			c.Event("upgrade done: %d instances of v2, healthy, none of v1", upgradeInstances)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the upgrade of %s was not done within %s: deployment pending %t (%v), containers %v, healthy %v", upgradeApp, upgradeBound, pending, err, last.containers, last.healthy)
			break
		}
	}
	stopSampling()

	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Errorf("kill-leader-mid-upgrade: %s", v)
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].at.Before(samples[j].at) })
	maxRun, minHealthy, incomplete := 0, upgradeInstances, 0
	var maxGap time.Duration
	for i, s := range samples {
		maxRun = max(maxRun, len(s.containers))
		if s.complete {
			minHealthy = min(minHealthy, s.healthyAll())
		} else {
			incomplete++
		}
		if i > 0 {
			maxGap = max(maxGap, s.at.Sub(samples[i-1].at))
		}
	}
	if len(samples) < 2 {
		t.Errorf("kill-leader-mid-upgrade: only %d samples", len(samples))
	}
	return []string{
		fmt.Sprintf("invariant: containers ≤ %d and /health 200 ≥ %d at every sample", upgradeMaxRun, upgradeMinHealth),
		fmt.Sprintf("leader %s killed %s", l.Name, underWay),
		fmt.Sprintf("recovery %.1fs", rec.Seconds()),
		fmt.Sprintf("upgrade done in %.1fs (bound %s)", done.Seconds(), upgradeBound),
		fmt.Sprintf("upgrade samples %d (max gap %dms, %d without every agent's list), max containers %d, min healthy %d", len(samples), maxGap.Milliseconds(), incomplete, maxRun, minHealthy),
	}
}
