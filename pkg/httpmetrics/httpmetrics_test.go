package httpmetrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agora-sched/agora/pkg/promtext"
)

// samples scrapes reg as /metrics would and returns every sample by its series, as the text
// format writes it: `name{label="value",...}`, labels sorted by name.
func samples(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	s, err := promtext.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRequestsAreCountedByPatternAndCode(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no such item", http.StatusNotFound)
			return
		}
		io.WriteString(w, "item")
	})
	mux.HandleFunc("POST /items", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints) // informational: the final code follows
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Error("the wrapped writer is not an http.Flusher")
			return
		}
		io.WriteString(w, "first\n")
		f.Flush()
	})
	mux.HandleFunc("GET /empty", func(w http.ResponseWriter, r *http.Request) {})
	m := New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	srv := httptest.NewServer(m.Wrap(mux))
	defer srv.Close()

	for _, req := range []struct{ method, path string }{
		{"GET", "/items/1"}, {"GET", "/items/2"}, {"GET", "/items/missing"}, {"POST", "/items"},
		{"GET", "/stream"}, {"GET", "/empty"}, {"GET", "/no/such/path"}, {"DELETE", "/items/1"},
	} {
		r, err := http.NewRequest(req.method, srv.URL+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	got := samples(t, reg)
	want := map[string]float64{
		`agora_http_request_duration_seconds_count{code="200",route="GET /items/{id}"}`: 2,
		`agora_http_request_duration_seconds_count{code="404",route="GET /items/{id}"}`: 1,
		`agora_http_request_duration_seconds_count{code="201",route="POST /items"}`:     1,
		`agora_http_request_duration_seconds_count{code="200",route="GET /stream"}`:     1,
		`agora_http_request_duration_seconds_count{code="200",route="GET /empty"}`:      1,
		`agora_http_request_duration_seconds_count{code="404",route="unmatched"}`:       1,
		`agora_http_request_duration_seconds_count{code="405",route="unmatched"}`:       1,
	}
	counts := 0
	for series, v := range got {
		if !strings.HasPrefix(series, "agora_http_request_duration_seconds_count") {
			continue
		}
		counts++
		if want[series] != v {
			t.Errorf("%s = %g, want %g", series, v, want[series])
		}
	}
	if counts != len(want) {
		t.Errorf("%d series of counts, want %d: %v", counts, len(want), got)
	}
}
