package containerd

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/containerd/containerd/metrics/types/v1"
	v2 "github.com/containerd/containerd/metrics/types/v2"
	"github.com/containerd/typeurl/v2"
)

// Stats is a task's resource usage, named as Mesos's ResourceStatistics so that tools written
// for /monitor/statistics read it unchanged.
type Stats struct {
	Timestamp          float64 `json:"timestamp"` // seconds since the epoch
	CPUsLimit          float64 `json:"cpus_limit"`
	CPUsUserTimeSecs   float64 `json:"cpus_user_time_secs"`
	CPUsSystemTimeSecs float64 `json:"cpus_system_time_secs"`
	CPUsNrPeriods      uint64  `json:"cpus_nr_periods"`
	CPUsNrThrottled    uint64  `json:"cpus_nr_throttled"`
	CPUsThrottledSecs  float64 `json:"cpus_throttled_time_secs"`
	MemTotalBytes      uint64  `json:"mem_total_bytes"` // usage, cache included
	MemRSSBytes        uint64  `json:"mem_rss_bytes"`
	MemCacheBytes      uint64  `json:"mem_cache_bytes"`
	MemLimitBytes      uint64  `json:"mem_limit_bytes"`
	Processes          uint64  `json:"processes"`
}

// Stats reads a running task's cgroup usage through containerd's task metrics (cgroup v1 or v2).
func (e *Executor) Stats(ctx context.Context, taskID string) (Stats, error) {
	e.mu.Lock()
	r, ok := e.tasks[taskID]
	e.mu.Unlock()
	if !ok {
		return Stats{}, fmt.Errorf("%w: %q", ErrNoTask, taskID)
	}
	m, err := r.task.Metrics(e.ctx(ctx))
	if err != nil {
		return Stats{}, fmt.Errorf("containerd: metrics of %s: %w", taskID, err)
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return Stats{}, fmt.Errorf("containerd: metrics of %s: %w", taskID, err)
	}
	s := Stats{Timestamp: float64(time.Now().UnixNano()) / 1e9}
	if ts := m.Timestamp; ts != nil {
		s.Timestamp = float64(ts.AsTime().UnixNano()) / 1e9
	}
	switch d := data.(type) {
	case *v1.Metrics:
		if c := d.CPU; c != nil {
			if u := c.Usage; u != nil {
				s.CPUsUserTimeSecs = float64(u.User) / 1e9
				s.CPUsSystemTimeSecs = float64(u.Kernel) / 1e9
			}
			if t := c.Throttling; t != nil {
				s.CPUsNrPeriods, s.CPUsNrThrottled = t.Periods, t.ThrottledPeriods
				s.CPUsThrottledSecs = float64(t.ThrottledTime) / 1e9
			}
		}
		if mem := d.Memory; mem != nil {
			s.MemRSSBytes, s.MemCacheBytes = mem.RSS, mem.Cache
			if u := mem.Usage; u != nil {
				s.MemTotalBytes, s.MemLimitBytes = u.Usage, u.Limit
			}
		}
		if p := d.Pids; p != nil {
			s.Processes = p.Current
		}
	case *v2.Metrics:
		if c := d.CPU; c != nil {
			s.CPUsUserTimeSecs = float64(c.UserUsec) / 1e6
			s.CPUsSystemTimeSecs = float64(c.SystemUsec) / 1e6
			s.CPUsNrPeriods, s.CPUsNrThrottled = c.NrPeriods, c.NrThrottled
			s.CPUsThrottledSecs = float64(c.ThrottledUsec) / 1e6
		}
		if mem := d.Memory; mem != nil {
			s.MemTotalBytes, s.MemLimitBytes = mem.Usage, mem.UsageLimit
			s.MemRSSBytes = mem.Anon
			s.MemCacheBytes = mem.File
		}
		if p := d.Pids; p != nil {
			s.Processes = p.Current
		}
	default:
		return Stats{}, fmt.Errorf("containerd: metrics of %s: unknown kind %T", taskID, data)
	}
	return s, nil
}
