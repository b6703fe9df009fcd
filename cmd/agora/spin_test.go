package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/marathon"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
	"github.com/agora-sched/agora/pkg/task"
)

// spinWindow is how long TestAgentRefusingEveryLaunchBacksOff watches an agent refuse an app's
// launches: $AGORA_TEST_SPIN_WINDOW (a Go duration; "60s" is the minute at Marathon's
// own backoffSeconds of 1), by default 20 s. The app's backoff scales with it, so that the
// shape — how many launches, how far apart — is the same whatever the window.
func spinWindow(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("AGORA_TEST_SPIN_WINDOW")
	if v == "" {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 5*time.Second {
		t.Fatalf("AGORA_TEST_SPIN_WINDOW=%q: want a duration of 5s or more", v)
	}
	return d
}

// TestAgentRefusingEveryLaunchBacksOff is issue 18's spin on the real path: agora dev with its
// agent on containerd, and an app of 2 whose instances have run for longer than it takes to
// start the backoff over (10 s), updated to an image the agent cannot get (a registry on a
// closed loopback port): every launch of the new version fails — TASK_STARTING, then
// TASK_FAILED before it ever runs — while the old instances run on, as the upgrade strategy
// keeps them. Watched through /v2/events for the window (a minute at backoffSeconds 1,
// scaled): each launch comes only after the app's backoff — backoffSeconds × 2^(n-1) after the
// n-th failure in a row, at most maxLaunchDelaySeconds — the instances that run all along do
// not start it over, so launches grow apart and stop growing at the cap; and never does anyone
// keep more failed tasks of the app than it has instances: not the master's task list, not
// Marathon's /v2/tasks, not the agent's.
func TestAgentRefusingEveryLaunchBacksOff(t *testing.T) {
	t.Parallel()
	window := spinWindow(t)
	scale := window.Seconds() / 60
	backoff, maxDelay := 1*scale, 16*scale
	base, agentBase, _ := startMarathonDev(t, taskPorts())
	const instances = 2
	postApp(t, base, fmt.Sprintf(`{"id": "/spin", "container": {"type": "DOCKER", "docker": {"image": %q}}, "args": ["-sleep", "24h"],
		"cpus": 0.1, "mem": 32, "instances": %d, "backoffSeconds": %g, "backoffFactor": 2, "maxLaunchDelaySeconds": %g}`,
		containerdtest.TestAppImage, instances, backoff, maxDelay))
	old := waitApp(t, base, "/spin", "2 running", func(a marathonApp) bool { return a.TasksRunning == instances })
	running := map[string]bool{}
	for _, tk := range old.Tasks {
		running[tk.ID] = true
	}
	// Let them run past the backoff's reset (10 s): they could start it over, and must not.
	time.Sleep(11 * time.Second)
	events := streamEvents(t, base)
	image := fmt.Sprintf("127.0.0.1:%d/nowhere:1", containerdtest.FreePort(t))
	if code := httpJSON(t, "PUT", base+"/v2/apps/spin", json.RawMessage(fmt.Sprintf(`{"container": {"type": "DOCKER", "docker": {"image": %q}}}`, image)), nil); code != http.StatusOK {
		t.Fatalf("PUT the missing image: %d", code)
	}
	app := marathon.App{BackoffSeconds: backoff, BackoffFactor: 2, MaxLaunchDelaySeconds: maxDelay}

	type launch struct {
		id               string
		started, failed  time.Time // the framework's timestamps of TASK_STARTING and TASK_FAILED
		failedMsg, state string
	}
	byID := map[string]*launch{}
	var worst struct{ master, marathon, agent int }
	checkKept := func() {
		// The master's task list: tasks of the app that ended without running.
		var all []api.TaskStatus
		if code := httpJSON(t, "GET", base+"/v1/tasks", nil, &all); code != http.StatusOK {
			t.Fatalf("GET /v1/tasks: %d", code)
		}
		n := 0
		for _, st := range all {
			if strings.HasPrefix(st.TaskID, "spin.") && st.State.IsTerminal() {
				n++
			}
		}
		worst.master = max(worst.master, n)
		// Marathon's /v2/tasks: the app's new instances, whatever their state.
		var v2 struct {
			Tasks []struct {
				ID    string `json:"id"`
				AppID string `json:"appId"`
				State string `json:"state"`
			} `json:"tasks"`
		}
		if code := httpJSON(t, "GET", base+"/v2/tasks", nil, &v2); code != http.StatusOK {
			t.Fatalf("GET /v2/tasks: %d", code)
		}
		n, olds := 0, 0
		for _, tk := range v2.Tasks {
			switch {
			case running[tk.ID] && tk.State == string(task.Running):
				olds++
			case tk.AppID == "/spin":
				n++
			}
		}
		if olds != instances {
			t.Fatalf("%d of the old instances run, want %d: the upgrade strategy keeps them until new ones are healthy", olds, instances)
		}
		worst.marathon = max(worst.marathon, n)
		// The agent's own list: its ended tasks of the app.
		var on []api.Task
		if code := httpJSON(t, "GET", agentBase+"/v1/tasks", nil, &on); code != http.StatusOK {
			t.Fatalf("GET the agent's /v1/tasks: %d", code)
		}
		n = 0
		for _, tk := range on {
			if strings.HasPrefix(tk.Info.TaskID, "spin.") && tk.Status.State.IsTerminal() {
				n++
			}
		}
		worst.agent = max(worst.agent, n)
	}

	start := time.Now()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for time.Since(start) < window {
		select {
		case ev := <-events:
			if ev.Type != "status_update_event" || ev.Data["appId"] != "/spin" {
				continue
			}
			id, _ := ev.Data["taskId"].(string)
			if running[id] {
				continue // an old instance, running on
			}
			l := byID[id]
			if l == nil {
				l = &launch{id: id}
				byID[id] = l
			}
			switch state, _ := ev.Data["taskStatus"].(string); task.State(state) {
			case task.Starting:
				l.started = eventStamp(t, ev)
			case task.Running:
				t.Fatalf("task %s runs: its image should be missing", id)
			default:
				if task.State(state).IsTerminal() {
					l.failed, l.state = eventStamp(t, ev), state
					l.failedMsg, _ = ev.Data["message"].(string)
				}
			}
		case <-poll.C:
			checkKept()
		}
	}
	checkKept()

	var launches []*launch
	for _, l := range byID {
		if !l.started.IsZero() {
			launches = append(launches, l)
		}
	}
	sort.Slice(launches, func(i, j int) bool { return launches[i].started.Before(launches[j].started) })
	var failures []time.Time
	for _, l := range byID {
		if !l.failed.IsZero() {
			if l.state != string(task.Failed) || !strings.Contains(l.failedMsg, "nowhere") {
				t.Fatalf("task %s ended %s %q, want TASK_FAILED naming the missing image", l.id, l.state, l.failedMsg)
			}
			failures = append(failures, l.failed)
		}
	}
	sort.Slice(failures, func(i, j int) bool { return failures[i].Before(failures[j]) })
	var gaps []string
	longest := time.Duration(0)
	for i, l := range launches {
		// The failures before this launch, and the latest of them: the launch waits the backoff
		// of that many failures in a row from it.
		n := sort.Search(len(failures), func(k int) bool { return !failures[k].Before(l.started) })
		if n == 0 {
			if i >= instances {
				t.Fatalf("launch %d (%s) came before any launch had failed", i+1, l.id)
			}
			continue
		}
		gap := l.started.Sub(failures[n-1])
		want := marathon.LaunchDelay(app, n)
		gaps = append(gaps, fmt.Sprintf("%s after failure %d (want %s)", gap.Round(time.Millisecond), n, want))
		// The event stamps are the framework's own clock; the launch's TASK_STARTING comes
		// after the launch, so a gap can only be longer than the wait, never shorter.
		if gap < want-10*time.Millisecond {
			t.Fatalf("launch %d (%s) came %s after failure %d, want at least %s, the backoff: %v", i+1, l.id, gap, n, want, gaps)
		}
		longest = max(longest, gap)
	}
	t.Logf("%d launches in %s (backoff %gs doubling, at most %gs): %v", len(launches), window, backoff, maxDelay, gaps)
	// A minute of waits of 2, 8, 16, 16 ... s (2 instances fail at once: the failures in a row
	// go 2, 4, 6, ...): about a dozen launches, never the hundreds a spin makes; and the waits
	// grow to the cap.
	wantAtMost := instances * int(math.Ceil(window.Seconds()/maxDelay)+4)
	if len(launches) < 4 || len(launches) > wantAtMost {
		t.Fatalf("%d launches in %s, want 4 to %d: %v", len(launches), window, wantAtMost, gaps)
	}
	if capped := time.Duration(maxDelay * float64(time.Second)); longest < capped-10*time.Millisecond {
		t.Fatalf("the longest wait was %s, want the backoff to reach maxLaunchDelaySeconds (%s): %v", longest, capped, gaps)
	}
	if worst.master > instances || worst.marathon > instances || worst.agent > instances {
		t.Fatalf("ended tasks of the app kept at most: master %d, Marathon's /v2/tasks %d, agent %d; want at most %d (instances)",
			worst.master, worst.marathon, worst.agent, instances)
	}
	if worst.master == 0 || worst.agent == 0 {
		t.Fatalf("no failed task of the app ever listed (master %d, agent %d): the latest failure should stay visible", worst.master, worst.agent)
	}
	var got struct {
		App struct {
			LastTaskFailure *marathon.TaskFailure `json:"lastTaskFailure"`
		} `json:"app"`
	}
	if code := httpJSON(t, "GET", base+"/v2/apps/spin?embed=app.lastTaskFailure", nil, &got); code != http.StatusOK ||
		got.App.LastTaskFailure == nil || got.App.LastTaskFailure.State != string(task.Failed) {
		b, _ := json.Marshal(got)
		t.Fatalf("lastTaskFailure: %d %s", code, b)
	}
}
