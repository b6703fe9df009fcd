package master

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// schedMetrics are the scheduler's Prometheus metrics.
type schedMetrics struct {
	offers  *prometheus.CounterVec // by result: made, declined, rescinded, accepted
	cycle   prometheus.Histogram
	updates *prometheus.CounterVec // status updates from agents, by state
}

// newRegistry makes the master's metrics registry: Go's and the process's own, the
// scheduler's, and whatever embedded frameworks add (Master.Metrics).
func (m *Master) newRegistry() {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sm := &schedMetrics{
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_offers_total", Help: "Offers by what became of them: made, accepted, declined, rescinded."}, []string{"result"}),
		cycle: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agora_allocation_cycle_seconds", Help: "How long an allocation cycle took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_status_updates_total", Help: "Status updates received from agents, by task state."}, []string{"state"}),
	}
	reg.MustRegister(sm.offers, sm.cycle, sm.updates, m.taskGauge())
	m.metrics, m.registry = sm, reg
}

// taskCollector reports the leader's tasks by state.
type taskCollector struct {
	m    *Master
	desc *prometheus.Desc
}

func (m *Master) taskGauge() prometheus.Collector {
	return &taskCollector{m: m, desc: prometheus.NewDesc("agora_tasks", "Tasks the leader knows, by state (empty on followers).", []string{"state"}, nil)}
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	tasks, err := c.m.sched.tasksView()
	if err != nil {
		return
	}
	counts := map[string]int{}
	for _, t := range tasks {
		counts[string(t.State)]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}

// Metrics is the master's Prometheus registry, served at /metrics; embedded frameworks add
// their own metrics to it.
func (m *Master) Metrics() *prometheus.Registry { return m.registry }

// metricsHandler serves the registry in Prometheus's text format.
func (m *Master) metricsHandler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
