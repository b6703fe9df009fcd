package marathon

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics reports the service framework's state at /metrics (on the leader; empty elsewhere).
type metrics struct {
	s                                        *Service
	apps, instances, deployments, waiting, f *prometheus.Desc
}

func newMetrics(s *Service) *metrics {
	return &metrics{
		s:           s,
		apps:        prometheus.NewDesc("agora_marathon_apps", "Apps the service framework runs.", nil, nil),
		instances:   prometheus.NewDesc("agora_marathon_instances", "Instances of apps, by task state.", []string{"state"}, nil),
		deployments: prometheus.NewDesc("agora_marathon_deployments", "Deployments in progress.", nil, nil),
		waiting:     prometheus.NewDesc("agora_marathon_launch_queue", "Instances waiting to be launched.", nil, nil),
		f:           prometheus.NewDesc("agora_marathon_failures", "Apps' instance failures in a row, summed (launch backoff).", nil, nil),
	}
}

func (c *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.apps, c.instances, c.deployments, c.waiting, c.f} {
		ch <- d
	}
}

func (c *metrics) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	st := c.s.st
	if st == nil {
		return
	}
	apps, waiting, failures := 0, 0, 0
	for _, as := range st.apps {
		if !as.deleted {
			apps++
			waiting += as.want
			failures += as.failures
		}
	}
	states := map[string]int{}
	for _, in := range st.instances {
		states[string(in.state)]++
	}
	ch <- prometheus.MustNewConstMetric(c.apps, prometheus.GaugeValue, float64(apps))
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(c.deployments, prometheus.GaugeValue, float64(len(st.deployments)))
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(waiting))
	ch <- prometheus.MustNewConstMetric(c.f, prometheus.GaugeValue, float64(failures))
}
