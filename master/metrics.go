package master

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/agora-sched/agora/pkg/httpmetrics"
)

// newRegistry makes the master's metrics registry: Go's and the process's own, raft's, the
// HTTP API's, the scheduler's, and whatever embedded frameworks add (Master.Metrics); New adds
// the clock guard's once it is made. It runs before the store opens: the store feeds
// raftCommit through raft.Config.ObserveCommit, and raftCollector reads the store only when
// scraped.
func (m *Master) newRegistry() {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.raftCommit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agora_raft_commit_seconds",
		Help:    "How long writes to the replicated store took on the leader, from the proposal until committed and applied.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}) // 0.5 ms to 4 s
	m.httpMetrics = httpmetrics.New()
	reg.MustRegister(m.raftCommit, newRaftCollector(m), m.httpMetrics)
	m.registry = reg
}

// observeCommit is the store's raft.Config.ObserveCommit.
func (m *Master) observeCommit(d time.Duration) { m.raftCommit.Observe(d.Seconds()) }

// raftStates are the values of agora_raft_state's label, as raft.Stats names them.
var raftStates = []string{"follower", "candidate", "leader", "shutdown"}

// raftCollector reports the store's raft numbers (raft.Stats) when scraped.
type raftCollector struct {
	m                                   *Master
	state, term, commit, applied, since *prometheus.Desc
}

func newRaftCollector(m *Master) *raftCollector {
	return &raftCollector{
		m:       m,
		state:   prometheus.NewDesc("agora_raft_state", "This master's raft state: 1 for the current one, 0 for the others.", []string{"state"}, nil),
		term:    prometheus.NewDesc("agora_raft_term", "This master's raft term.", nil, nil),
		commit:  prometheus.NewDesc("agora_raft_commit_index", "The last raft index this master knows to be committed.", nil, nil),
		applied: prometheus.NewDesc("agora_raft_applied_index", "The last raft index this master applied.", nil, nil),
		since: prometheus.NewDesc("agora_raft_last_contact_seconds",
			"Seconds since this master last heard from the leader: 0 on the leader, absent while it never has.", nil, nil),
	}
}

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.term
	ch <- c.commit
	ch <- c.applied
	ch <- c.since
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.store.Stats()
	for _, s := range raftStates {
		v := 0.0
		if s == st.State {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(st.Term))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(st.AppliedIndex))
	if st.LastContact >= 0 { // -1: never heard from a leader
		ch <- prometheus.MustNewConstMetric(c.since, prometheus.GaugeValue, st.LastContact.Seconds())
	}
}

// Metrics is the master's Prometheus registry, served at /metrics; embedded frameworks add
// their own metrics to it.
func (m *Master) Metrics() *prometheus.Registry { return m.registry }
