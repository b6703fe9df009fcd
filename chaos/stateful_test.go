package chaos

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// stateful: a resident Marathon app (two instances, each with a persistent volume its task
// counts its starts in) through kill -9 of the leader, kill -9 of an agent that holds one of
// its volumes, and a kill of that instance's task. Invariant (sampled 4 times a second): an
// instance's task never runs, nor is staged, on another agent than its volume's — while that
// agent lives, there is nowhere else its data is. After: each instance runs on its volume's
// agent with the same volume, its count never went back (no volume lost or made anew), the
// one whose task was killed counted a new start; deleting the app removes both volumes from
// their agents.
func init() {
	scenarios = append(scenarios, scenario{name: "stateful", short: true, marathonRole: "chaos", fault: statefulFault})
}

const statefulApp = "/stateful/db"

// statefulTask is a task of the resident app as Marathon lists it.
type statefulTask struct {
	ID           string `json:"id"`
	SlaveID      string `json:"slaveId"`
	State        string `json:"state"`
	LocalVolumes []struct {
		PersistenceID string `json:"persistenceId"`
	} `json:"localVolumes"`
}

func (tk statefulTask) volume() string {
	if len(tk.LocalVolumes) == 0 {
		return ""
	}
	return tk.LocalVolumes[0].PersistenceID
}

func statefulTasks(c *Cluster) ([]statefulTask, error) {
	var out struct {
		Tasks []statefulTask `json:"tasks"`
	}
	_, err := c.Do("GET", "/v2/apps"+statefulApp+"/tasks", nil, &out)
	return out.Tasks, err
}

// statefulRunning waits until both instances run, each with its volume, and answers volume →
// task.
func statefulRunning(t *testing.T, c *Cluster, what string, timeout time.Duration) map[string]statefulTask {
	t.Helper()
	var last []statefulTask
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		tasks, err := statefulTasks(c)
		if err != nil {
			continue
		}
		last = tasks
		byVol := map[string]statefulTask{}
		for _, tk := range tasks {
			if tk.State == "TASK_RUNNING" && tk.volume() != "" {
				byVol[tk.volume()] = tk
			}
		}
		if len(byVol) == 2 {
			return byVol
		}
	}
	t.Fatalf("stateful: %s: not both instances running with their volumes within %s; last %+v", what, timeout, last)
	return nil
}

func statefulFault(t *testing.T, c *Cluster, rng *rand.Rand) []string {
	app := map[string]any{"id": statefulApp, "instances": 2, "cpus": 0.1, "mem": 32, "disk": 1,
		"cmd":       "n=$(cat data/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > data/count && sync && echo count=$n; exec sleep 86400",
		"container": map[string]any{"type": "MESOS", "volumes": []map[string]any{{"containerPath": "data", "mode": "RW", "persistent": map[string]any{"type": "root", "size": 16}}}}}
	if _, err := c.Do("POST", "/v2/apps", app, nil); err != nil {
		t.Fatalf("create %s: %v", statefulApp, err)
	}
	first := statefulRunning(t, c, "started", 90*time.Second)
	home := map[string]string{} // volume → its agent
	for vol, tk := range first {
		home[vol] = tk.SlaveID
	}
	c.Event("resident app %s runs: volumes %v", statefulApp, home)
	counts := map[string]int{}
	for vol := range home {
		counts[vol] = statefulCount(t, c, home[vol], vol)
	}

	s := startStatefulSampler(c, home)
	// kill -9 the leader.
	rec := killLeader(t, c)
	statefulRunning(t, c, "after the leader's kill", 90*time.Second)

	// kill -9 an agent that holds a volume, then kill that instance's task once it is back.
	vols := slices.Sorted(maps.Keys(home))
	victim := vols[rng.IntN(len(vols))]
	a := c.agentByID(t, home[victim])
	c.Event("kill -9 agent %s (volume %s)", a.Name, victim)
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	restart(t, c, a)
	before := statefulRunning(t, c, "after the agent's kill", 90*time.Second)
	c.Event("kill task %s of volume %s", before[victim].ID, victim)
	if _, err := c.Do("DELETE", "/v2/apps"+statefulApp+"/tasks/"+before[victim].ID, nil, nil); err != nil {
		t.Fatalf("kill %s: %v", before[victim].ID, err)
	}
	var after map[string]statefulTask
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = statefulRunning(t, c, "after the task's kill", 90*time.Second)
		if after[victim].ID != before[victim].ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stateful: the killed task %s of volume %s was not relaunched within 90s", before[victim].ID, victim)
		}
	}
	time.Sleep(time.Second) // sampled a little longer
	failures := s.stop()
	for vol, tk := range after {
		if tk.SlaveID != home[vol] {
			failures = append(failures, fmt.Sprintf("volume %s's instance runs on %s, its volume is on %s", vol, tk.SlaveID, home[vol]))
		}
	}
	for vol := range home {
		n := statefulCount(t, c, home[vol], vol)
		switch {
		case n < counts[vol]:
			failures = append(failures, fmt.Sprintf("volume %s's count went back from %d to %d: its data was lost", vol, counts[vol], n))
		case vol == victim && n <= counts[vol]:
			failures = append(failures, fmt.Sprintf("volume %s's count is %d after its task was killed and relaunched, want more than %d", vol, n, counts[vol]))
		}
		counts[vol] = n
	}

	// Deleting the app destroys both volumes on their agents.
	if _, err := c.Do("DELETE", "/v2/apps"+statefulApp, nil, nil); err != nil {
		t.Fatalf("delete %s: %v", statefulApp, err)
	}
	gone := time.Now()
	for deadline := gone.Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		left := c.agentVolumes()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			failures = append(failures, fmt.Sprintf("60 s after the app's delete its agents still have volumes %v", left))
			break
		}
	}
	for _, f := range failures {
		c.Event("VIOLATION %s", f)
		t.Errorf("stateful: %s", f)
	}
	return []string{
		fmt.Sprintf("leader recovery %.1fs; agent %s killed with volume %s; counts %v; volumes removed %.1fs after the app's delete", rec.Seconds(), a.Name, victim, counts, time.Since(gone).Seconds()),
		s.figures(),
	}
}

// statefulCount reads the count a volume holds, from its agent's host (the harness runs there),
// once its task has written it (its task runs before its shell writes).
func statefulCount(t *testing.T, c *Cluster, agentID, vol string) int {
	t.Helper()
	a := c.agentByID(t, agentID)
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var vols []api.AgentVolume
		if err := c.Agent(a, "/v1/volumes", &vols); err != nil {
			last = err.Error()
			continue
		}
		i := slices.IndexFunc(vols, func(v api.AgentVolume) bool { return v.ID == vol })
		if i < 0 {
			last = fmt.Sprintf("agent %s has no volume %s (it has %+v)", a.Name, vol, vols)
			continue
		}
		data, err := os.ReadFile(filepath.Join(vols[i].Path, "count"))
		if err != nil {
			last = err.Error()
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			return n
		}
		last = fmt.Sprintf("count %q", data)
	}
	t.Fatalf("stateful: volume %s's count: %s", vol, last)
	return 0
}

// agentByID is the cluster's agent whose id is id.
func (c *Cluster) agentByID(t *testing.T, id string) *Node {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for _, n := range c.Agents {
			var info struct {
				ID string `json:"id"`
			}
			if c.Agent(n, "/v1/info", &info) == nil && info.ID == id {
				return n
			}
		}
	}
	t.Fatalf("no agent of id %s answers", id)
	return nil
}

// agentVolumes lists every volume the cluster's agents have, as agent/volume.
func (c *Cluster) agentVolumes() []string {
	var out []string
	for _, n := range c.Agents {
		var vols []api.AgentVolume
		if c.Agent(n, "/v1/volumes", &vols) != nil {
			out = append(out, n.Name+"/?")
			continue
		}
		for _, v := range vols {
			out = append(out, n.Name+"/"+v.ID)
		}
	}
	return out
}

// statefulSampler checks, 4 times a second, that no task of the app is on another agent than
// its volume's.
type statefulSampler struct {
	c          *Cluster
	home       map[string]string
	stopCh     chan struct{}
	wg         sync.WaitGroup
	samples    int
	violations []string
}

func startStatefulSampler(c *Cluster, home map[string]string) *statefulSampler {
	s := &statefulSampler{c: c, home: home, stopCh: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.stopCh:
				return
			case <-time.After(250 * time.Millisecond):
			}
			tasks, err := statefulTasks(c)
			if err != nil {
				continue
			}
			s.samples++
			for _, tk := range tasks {
				if tk.State == "" || tk.volume() == "" {
					continue // a suspended reservation, or one not launched yet
				}
				if want, ok := s.home[tk.volume()]; !ok || tk.SlaveID != want {
					v := fmt.Sprintf("task %s (%s) of volume %s on agent %s, the volume's agent is %q", tk.ID, tk.State, tk.volume(), tk.SlaveID, want)
					if len(s.violations) < 5 {
						s.violations = append(s.violations, v)
					}
				}
			}
		}
	}()
	return s
}

func (s *statefulSampler) stop() []string {
	close(s.stopCh)
	s.wg.Wait()
	if s.samples < 10 {
		return append(s.violations, fmt.Sprintf("the sampler took only %d samples", s.samples))
	}
	return s.violations
}

func (s *statefulSampler) figures() string {
	return fmt.Sprintf("placement samples %d, off their volume's agent %d", s.samples, len(s.violations))
}
