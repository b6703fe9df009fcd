package httpmetrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Unmatched is the route of a request that no ServeMux pattern served.
const Unmatched = "unmatched"

// Metrics is the request-duration histogram of one API. It is a prometheus.Collector.
type Metrics struct {
	duration *prometheus.HistogramVec
}

// New makes the histogram agora_http_request_duration_seconds{route, code}.
func New() *Metrics {
	return &Metrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "agora_http_request_duration_seconds",
		Help:    "How long HTTP API requests took, by the route (the ServeMux pattern) that served them and the status code.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8), // 1 ms to 16 s
	}, []string{"route", "code"})}
}

// Describe is prometheus.Collector's.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.duration.Describe(ch) }

// Collect is prometheus.Collector's.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.duration.Collect(ch) }

// Wrap returns next measured: each request is observed once next has served it.
func (m *Metrics) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		m.duration.WithLabelValues(route(r), strconv.Itoa(sw.status())).Observe(time.Since(start).Seconds())
	})
}

// route is the pattern that served r. For CONNECT requests net/http may put the path it
// redirects to in Pattern; those count as unmatched, so that no raw path becomes a label.
func route(r *http.Request) string {
	if r.Pattern == "" || r.Method == http.MethodConnect {
		return Unmatched
	}
	return r.Pattern
}

// statusWriter remembers the status code of the answer. It flushes (the scheduler's and the
// logs' streams need http.Flusher) and unwraps for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code int // 0 until the header is written
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers other than 101 are informational: the final code comes later.
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the code the client got: 200 when the handler wrote nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
