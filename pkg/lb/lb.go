package lb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agora-sched/agora/pkg/api"
)

// Settings are what an LB is made with: its flags, in agora lb.
type Settings struct {
	Masters []Master // followed in turn; at least one
	Options Options  // the config's groups, addresses and admin socket

	// ConfigPath is where the HAProxy config is written (atomically: a temp file validated
	// with haproxy -c, then renamed over it).
	ConfigPath string
	// HAProxy is the haproxy program (default "haproxy", from PATH).
	HAProxy string
	// ReloadCommand, when set, is run after each new config instead of running HAProxy as a
	// child: for an HAProxy under a unit of its own (systemctl reload haproxy).
	ReloadCommand []string
	// HAProxyOutput gets the child HAProxy's stdout and stderr (its log); nil: discarded.
	HAProxyOutput io.Writer

	Logger *slog.Logger

	// IdleTimeout ends a stream that sent nothing, keepalives included (default 45 s).
	IdleTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before the next master (default 500 ms, 10 s).
	MinBackoff, MaxBackoff time.Duration
}

// LB keeps an HAProxy's config in step with the masters' services.
type LB struct {
	s       Settings
	log     *slog.Logger
	reload  reloader
	child   *childHAProxy // nil with a ReloadCommand
	metrics *metrics

	latest chan api.Services // the newest document, one deep: an older one unapplied is dropped

	mu          sync.Mutex
	applied     string // the text HAProxy was last given (and the file holds)
	refused     string // the last text HAProxy refused: not tried again
	connected   bool
	lastIndex   uint64
	lastApplied time.Time
}

// New makes an LB; Run runs it.
func New(s Settings) (*LB, error) {
	if len(s.Masters) == 0 {
		return nil, errors.New("lb: no master to follow")
	}
	if s.ConfigPath == "" {
		return nil, errors.New("lb: no config path")
	}
	if s.HAProxy == "" {
		s.HAProxy = "haproxy"
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.HAProxyOutput == nil {
		s.HAProxyOutput = io.Discard
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 45 * time.Second
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = 500 * time.Millisecond
	}
	if s.MaxBackoff < s.MinBackoff {
		s.MaxBackoff = max(10*time.Second, s.MinBackoff)
	}
	l := &LB{s: s, log: s.Logger, metrics: newMetrics(), latest: make(chan api.Services, 1)}
	if len(s.ReloadCommand) > 0 {
		l.reload = &commandReloader{argv: s.ReloadCommand}
	} else {
		l.child = &childHAProxy{haproxy: s.HAProxy, config: s.ConfigPath, socket: s.Options.StatsSocket, out: s.HAProxyOutput, log: s.Logger}
		l.reload = l.child
	}
	return l, nil
}

// Registry is the LB's metrics, for /metrics.
func (l *LB) Registry() *prometheus.Registry { return l.metrics.registry }

// Run follows the masters and applies each new config until ctx is done; then it stops the
// HAProxy it runs. While no master answers, HAProxy goes on with the config it has. A config
// from an earlier run is served at once, before any master answers.
func (l *LB) Run(ctx context.Context) error {
	if s := l.s.Options.StatsSocket; s != "" {
		if err := os.MkdirAll(filepath.Dir(s), 0o700); err != nil {
			return fmt.Errorf("lb: the admin socket's directory: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(l.s.ConfigPath), 0o755); err != nil {
		return fmt.Errorf("lb: the config's directory: %w", err)
	}
	defer l.reload.stop()
	l.resume(ctx)

	f := &follower{
		masters: l.s.Masters, idle: l.s.IdleTimeout, minBackoff: l.s.MinBackoff, maxBackoff: l.s.MaxBackoff,
		log: l.log, connected: l.setConnected,
		doc: func(doc api.Services) {
			select { // keep only the newest
			case <-l.latest:
			default:
			}
			l.latest <- doc
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() { f.run(ctx) })
	defer wg.Wait()

	restart := time.NewTicker(time.Second)
	defer restart.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case doc := <-l.latest:
			l.apply(ctx, doc)
		case <-restart.C:
			l.restartChild(ctx)
		}
	}
}

// resume serves the config a previous run left, if HAProxy accepts it: the routes go on
// while the masters are out of reach.
func (l *LB) resume(ctx context.Context) {
	text, err := os.ReadFile(l.s.ConfigPath)
	if err != nil {
		return
	}
	if err := validate(ctx, l.s.HAProxy, l.s.ConfigPath); err != nil {
		l.log.Warn("the config left by an earlier run is not served", "config", l.s.ConfigPath, "err", err)
		return
	}
	l.mu.Lock()
	l.applied = string(text)
	l.mu.Unlock()
	if l.child == nil {
		return // HAProxy runs under its own unit, with this file already
	}
	if err := l.child.reload(ctx); err != nil {
		l.log.Error("start haproxy with the earlier config", "err", err)
		return
	}
	l.log.Info("serving the config of an earlier run until a master answers", "config", l.s.ConfigPath)
}

// restartChild starts the child HAProxy again when it exited on its own (with the config
// file, which holds the last config it accepted).
func (l *LB) restartChild(ctx context.Context) {
	if l.child == nil || l.child.running() {
		return
	}
	l.mu.Lock()
	applied := l.applied
	l.mu.Unlock()
	if applied == "" {
		return // nothing to serve yet
	}
	if err := l.child.reload(ctx); err != nil {
		l.log.Error("restart haproxy", "err", err)
		l.metrics.reloads.WithLabelValues(resultFailed).Inc()
	}
}

// apply makes HAProxy serve the config of doc, if it differs from what it serves: written to a
// temp file, validated with haproxy -c, renamed over the config, and HAProxy reloaded. A config
// HAProxy refuses is logged with its message and not applied.
func (l *LB) apply(ctx context.Context, doc api.Services) {
	start := time.Now()
	cfg := Generate(doc, l.s.Options)
	l.metrics.generation.Observe(time.Since(start).Seconds())
	l.metrics.services.Set(float64(cfg.Services))
	l.metrics.backends.Set(float64(cfg.Backends))
	l.metrics.servers.Set(float64(cfg.Servers))
	l.mu.Lock()
	l.lastIndex = doc.Index
	same := cfg.Text == l.applied || cfg.Text == l.refused
	l.mu.Unlock()
	if same {
		return
	}
	for _, sk := range cfg.Skipped {
		l.log.Warn("service port not served", "service", sk.Service, "port_index", sk.Port, "reason", sk.Reason)
	}
	tmp, err := writeTemp(l.s.ConfigPath, cfg.Text)
	if err != nil {
		l.log.Error("write the config", "err", err)
		l.metrics.reloads.WithLabelValues(resultFailed).Inc()
		return
	}
	defer os.Remove(tmp) // after the rename, nothing is left to remove
	if err := validate(ctx, l.s.HAProxy, tmp); err != nil {
		if errors.Is(err, ErrInvalid) {
			l.log.Error("haproxy refused the new config; it keeps the one it has", "index", doc.Index, "err", err)
			l.metrics.reloads.WithLabelValues(resultInvalid).Inc()
			l.mu.Lock()
			l.refused = cfg.Text
			l.mu.Unlock()
			return
		}
		l.log.Error("validate the config", "err", err)
		l.metrics.reloads.WithLabelValues(resultFailed).Inc()
		return
	}
	if err := os.Rename(tmp, l.s.ConfigPath); err != nil {
		l.log.Error("put the config in place", "err", err)
		l.metrics.reloads.WithLabelValues(resultFailed).Inc()
		return
	}
	l.mu.Lock()
	l.applied = cfg.Text
	l.mu.Unlock()
	if err := l.reload.reload(ctx); err != nil {
		l.log.Error("reload haproxy", "err", err)
		l.metrics.reloads.WithLabelValues(resultFailed).Inc()
		return
	}
	now := time.Now()
	l.mu.Lock()
	l.lastApplied = now
	l.mu.Unlock()
	l.metrics.reloads.WithLabelValues(resultOK).Inc()
	l.metrics.lastReload.Set(float64(now.UnixNano()) / 1e9)
	l.log.Info("haproxy serves a new config", "index", doc.Index, "services", cfg.Services, "backends", cfg.Backends, "servers", cfg.Servers)
}

// writeTemp writes text to a new file beside path (so a rename replaces path atomically).
func writeTemp(path, text string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

func (l *LB) setConnected(c bool) {
	l.mu.Lock()
	l.connected = c
	l.mu.Unlock()
	l.metrics.connected.Set(map[bool]float64{false: 0, true: 1}[c])
}

// Status is what /health answers.
type Status struct {
	HAProxy    string    `json:"haproxy"`   // running, not running, or "reload command" (its own unit)
	Connected  bool      `json:"connected"` // following a master's stream now
	Index      uint64    `json:"index"`     // the raft index of the last document
	LastReload time.Time `json:"last_reload,omitzero"`
}

// Status is the LB's state now.
func (l *LB) Status() Status {
	st := Status{HAProxy: "reload command"}
	if l.child != nil {
		st.HAProxy = "not running"
		if l.child.running() {
			st.HAProxy = "running"
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st.Connected, st.Index, st.LastReload = l.connected, l.lastIndex, l.lastApplied
	return st
}

// Handler serves /metrics (Prometheus) and /health: 200 while HAProxy runs (or is another
// unit's), 503 while it does not; a load balancer cut off from the masters is healthy, it
// serves the last config.
func (l *LB) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(l.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		st := l.Status()
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(st)
		w.Header().Set("Content-Type", "application/json")
		if st.HAProxy == "not running" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write(b.Bytes())
	})
	return mux
}

// The results of agora_lb_reloads_total.
const (
	resultOK      = "ok"      // HAProxy serves the new config
	resultInvalid = "invalid" // haproxy -c refused it: not applied
	resultFailed  = "failed"  // writing it, or reloading HAProxy, failed
)

type metrics struct {
	registry   *prometheus.Registry
	reloads    *prometheus.CounterVec
	generation prometheus.Histogram
	services   prometheus.Gauge
	backends   prometheus.Gauge
	servers    prometheus.Gauge
	lastReload prometheus.Gauge
	connected  prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agora_lb_reloads_total",
			Help: "New HAProxy configs by result: ok (HAProxy serves it), invalid (haproxy -c refused it; not applied), failed (writing it or reloading HAProxy failed).",
		}, []string{"result"}),
		generation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agora_lb_config_generation_seconds",
			Help:    "How long generating the HAProxy config from a services document took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100 µs to 6.5 s
		}),
		services:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "agora_lb_services", Help: "Apps with at least one frontend in the last config generated."}),
		backends:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "agora_lb_backends", Help: "Backends (served service ports) in the last config generated."}),
		servers:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "agora_lb_servers", Help: "Server lines (healthy instances) in the last config generated."}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{Name: "agora_lb_last_reload_success_timestamp_seconds", Help: "When HAProxy last took a new config (Unix time)."}),
		connected:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "agora_lb_master_connected", Help: "1 while agora lb follows a master's services stream, 0 while it looks for one."}),
	}
	for _, r := range []string{resultOK, resultInvalid, resultFailed} {
		m.reloads.WithLabelValues(r)
	}
	m.registry.MustRegister(m.reloads, m.generation, m.services, m.backends, m.servers, m.lastReload, m.connected)
	return m
}
