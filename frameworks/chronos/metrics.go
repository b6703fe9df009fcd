package chronos

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics reports the batch framework at /metrics: jobs and active runs by status (on the
// leader; absent elsewhere), and counters of this master's terms.
type metrics struct {
	s          *Service
	jobs, runs *prometheus.Desc
	lag        prometheus.Histogram
	finished   *prometheus.CounterVec
	missed     prometheus.Counter
	collectors []prometheus.Collector
}

func newMetrics(s *Service) *metrics {
	m := &metrics{
		s:    s,
		jobs: prometheus.NewDesc("agora_chronos_jobs", "Jobs the batch framework holds.", nil, nil),
		runs: prometheus.NewDesc("agora_chronos_runs_active", "Runs not ended, by status (INITIAL, STARTING, ACTIVE).", []string{"status"}, nil),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agora_chronos_cron_lag_seconds",
			Help:    "Scheduled runs: from the scheduled time to the launch of the run's task.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agora_chronos_runs_finished_total", Help: "Runs ended, by status (SUCCESS, FAILED)."}, []string{"status"}),
		missed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "agora_chronos_runs_missed_total", Help: "Scheduled times recorded missed (downtime, startingDeadlineSeconds, concurrencyPolicy FORBID)."}),
	}
	m.collectors = []prometheus.Collector{m.lag, m.finished, m.missed}
	return m
}

func (c *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.runs
	for _, col := range c.collectors {
		col.Describe(ch)
	}
}

func (c *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, col := range c.collectors {
		col.Collect(ch)
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.st
	if st == nil {
		return
	}
	byStatus := map[string]int{}
	for r := range st.active {
		byStatus[r.Status]++
	}
	ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(len(st.jobs)))
	for _, status := range []string{RunInitial, RunStarting, RunActive} {
		ch <- prometheus.MustNewConstMetric(c.runs, prometheus.GaugeValue, float64(byStatus[status]), status)
	}
}
