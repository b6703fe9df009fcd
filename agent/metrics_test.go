package agent

import (
	"net/http"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/promtext"
	"github.com/agora-sched/agora/pkg/task"
)

// scrape reads the agent's GET /metrics and returns every sample by its series as the text
// format writes it: `name{label="value",...}`, labels sorted by name.
func (ra *runningAgent) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	s, err := promtext.Get(ra.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitForMetrics scrapes until cond holds, for up to 20 s: the agent observes a start and a
// request just after the master or the client may have heard of it.
func (ra *runningAgent) waitForMetrics(t *testing.T, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := ra.scrape(t)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s; metrics:\n%v", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetricsShowTasksAndContainerStarts(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	a.launch(t, testApp("metered", "-sleep", "1h"))
	e.fm.waitState("metered", task.Running, 60*time.Second)

	const (
		running  = `agora_agent_tasks{state="TASK_RUNNING"}`
		starting = `agora_agent_tasks{state="TASK_STARTING"}`
		killed   = `agora_agent_tasks{state="TASK_KILLED"}`
		starts   = `agora_agent_container_start_seconds_count`
		launches = `agora_http_request_duration_seconds_count{code="202",route="POST /v1/tasks"}`
	)
	s := a.waitForMetrics(t, "the running task and its start", func(s map[string]float64) bool {
		return s[running] == 1 && s[starts] >= 1 && s[launches] == 1
	})
	if v, ok := s[starting]; !ok || v != 0 {
		t.Errorf("%s = %g (present %t), want 0: every state of the agent's task life shows", starting, v, ok)
	}
	if s["agora_agent_container_start_seconds_sum"] <= 0 {
		t.Errorf("agora_agent_container_start_seconds_sum = %g, want the time the start took", s["agora_agent_container_start_seconds_sum"])
	}
	for _, name := range []string{"agora_agent_status_update_retries_total", "agora_agent_status_updates_pending", "go_goroutines", "process_open_fds"} {
		if _, ok := s[name]; !ok {
			t.Errorf("no %s in the agent's metrics", name)
		}
	}

	if code := a.call(t, "POST", "/v1/tasks/metered/kill", api.KillRequest{GracePeriodSeconds: 10}, nil); code != http.StatusAccepted {
		t.Fatalf("kill: %d", code)
	}
	e.fm.waitState("metered", task.Killed, 30*time.Second)
	a.waitForMetrics(t, "the killed task", func(s map[string]float64) bool {
		return s[running] == 0 && s[killed] == 1 && s[`agora_agent_status_updates_pending`] == 0 &&
			s[`agora_http_request_duration_seconds_count{code="202",route="POST /v1/tasks/{id}/kill"}`] == 1
	})
}
