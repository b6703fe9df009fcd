package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agora-sched/agora/pkg/httpmetrics"
	"github.com/agora-sched/agora/pkg/task"
)

// metrics are the agent's Prometheus metrics, served at GET /metrics: Go's and the process's
// own, the API's request durations, how long containers take to start, the tasks by state and
// the status updates (agentCollector reads those two when scraped).
type metrics struct {
	registry       *prometheus.Registry
	http           *httpmetrics.Metrics
	containerStart prometheus.Histogram // launch request → TASK_RUNNING
}

// newMetrics makes the agent's registry. The collector reads a.tasks and a.updates, which Run
// sets before the API (and so /metrics) serves.
func newMetrics(a *Agent) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		http:     httpmetrics.New(),
		containerStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agora_agent_container_start_seconds",
			Help:    "How long tasks took from their launch request to a started container (TASK_RUNNING), image pull included.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12), // 50 ms to 102 s
		}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.http, m.containerStart, newAgentCollector(a),
	)
	return m
}

// handler serves the registry in Prometheus's text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// observeStart records how long a task took from its launch request to TASK_RUNNING.
func (m *metrics) observeStart(d time.Duration) { m.containerStart.Observe(d.Seconds()) }

// lifeStates are the states of a task's life on the agent (tasks.go); agora_agent_tasks shows
// each of them, 0 when no task is in it.
var lifeStates = []task.State{task.Starting, task.Running, task.Killing, task.Finished, task.Failed, task.Killed, task.Error}

// agentCollector reports the agent's tasks by state and its status updates when scraped.
type agentCollector struct {
	a                      *Agent
	tasks, resent, unacked *prometheus.Desc
	runtimeUp, refused     *prometheus.Desc
}

func newAgentCollector(a *Agent) *agentCollector {
	return &agentCollector{
		a: a,
		tasks: prometheus.NewDesc("agora_agent_tasks",
			"Tasks this agent knows, by state; ended ones count while the agent still lists them.", []string{"state"}, nil),
		resent: prometheus.NewDesc("agora_agent_status_update_retries_total",
			"Status updates sent again because the master did not acknowledge them.", nil, nil),
		unacked: prometheus.NewDesc("agora_agent_status_updates_pending",
			"Status updates not acknowledged by the master yet, sent or waiting their turn.", nil, nil),
		runtimeUp: prometheus.NewDesc("agora_agent_runtime_available",
			"1 while the container runtime can run tasks (containerd answers, every task attached), 0 while it cannot.", nil, nil),
		refused: prometheus.NewDesc("agora_agent_launches_refused_unavailable_total",
			"Launches refused because the container runtime was unavailable.", nil, nil),
	}
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tasks
	ch <- c.resent
	ch <- c.unacked
	ch <- c.runtimeUp
	ch <- c.refused
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.a.tasks.countByState()
	for _, s := range lifeStates {
		if _, ok := counts[s]; !ok {
			counts[s] = 0
		}
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(n), string(s))
	}
	st := c.a.updates.Stats()
	ch <- prometheus.MustNewConstMetric(c.resent, prometheus.CounterValue, float64(st.Resent))
	ch <- prometheus.MustNewConstMetric(c.unacked, prometheus.GaugeValue, float64(st.Pending))
	up := 1.0
	if c.a.tasks.runtimeUnavailable() != "" {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.runtimeUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.a.tasks.launchesRefused()))
}
