package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scheduler's Prometheus metrics.
type metrics struct {
	offers  *prometheus.CounterVec // by result: made, declined, rescinded, accepted
	cycle   prometheus.Histogram
	updates *prometheus.CounterVec // status updates from agents, by state
}

func newMetrics() *metrics {
	return &metrics{
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_offers_total", Help: "Offers by what became of them: made, accepted, declined, rescinded."}, []string{"result"}),
		cycle: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agora_allocation_cycle_seconds", Help: "How long an allocation cycle took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_status_updates_total", Help: "Status updates received from agents, by task state."}, []string{"state"}),
	}
}

// Collectors are the scheduler's Prometheus metrics, for the master's registry: offers by
// what became of them, allocation cycles' durations, agents' status updates by state, and the
// leader's tasks by state.
func (s *Scheduler) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.offers, s.metrics.cycle, s.metrics.updates,
		&taskCollector{s: s, desc: prometheus.NewDesc("agora_tasks", "Tasks the leader knows, by state (empty on followers).", []string{"state"}, nil)}}
}

// taskCollector reports the leader's tasks by state.
type taskCollector struct {
	s    *Scheduler
	desc *prometheus.Desc
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	tasks, err := c.s.TasksView()
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
