package master

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/promtext"
)

// scrape reads a /metrics page over HTTP and returns every sample by its series as the text
// format writes it: `name{label="value",...}`, labels sorted by name.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	s, err := promtext.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitForSamples scrapes until cond holds of the samples, for up to 10 s: a request is
// observed once its handler returns, which may be just after its client got the answer.
func waitForSamples(t *testing.T, url, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := scrape(t, url)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; metrics:\n%v", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func putSecret(t *testing.T, url, value string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(fmt.Sprintf(`{"value": %q}`, value)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT %s = %d, want 204", url, resp.StatusCode)
	}
}

func TestMetricsShowRaftAndTheAPI(t *testing.T) {
	r := startMaster(t, t.TempDir(), 0)
	leaderOf(t, r)
	for i := range 3 {
		putSecret(t, r.url(fmt.Sprintf("/v1/secrets/db/password-%d", i)), "s3cret")
	}
	var ignored any
	getJSON(t, r.url("/v1/cluster"), &ignored)
	if code, _ := send(t, http.MethodGet, r.url("/no/such/path/42"), "", nil); code != http.StatusNotFound {
		t.Fatalf("GET /no/such/path/42 = %d, want 404", code)
	}

	const (
		cluster  = `agora_http_request_duration_seconds_count{code="200",route="GET /v1/cluster"}`
		secrets  = `agora_http_request_duration_seconds_count{code="204",route="PUT /v1/secrets/{name...}"}`
		notFound = `agora_http_request_duration_seconds_count{code="404",route="/"}`
	)
	s := waitForSamples(t, r.url("/metrics"), "the API's requests observed", func(s map[string]float64) bool {
		return s[cluster] >= 1 && s[secrets] >= 3 && s[notFound] >= 1
	})
	if s[`agora_raft_state{state="leader"}`] != 1 || s[`agora_raft_state{state="follower"}`] != 0 {
		t.Errorf("agora_raft_state: leader %g, follower %g; want 1 and 0", s[`agora_raft_state{state="leader"}`], s[`agora_raft_state{state="follower"}`])
	}
	if n := s["agora_raft_commit_seconds_count"]; n < 3 {
		t.Errorf("agora_raft_commit_seconds_count = %g, want at least the 3 writes", n)
	}
	if s["agora_raft_term"] < 1 || s["agora_raft_commit_index"] < 4 || s["agora_raft_applied_index"] < s["agora_raft_commit_index"]-1 {
		t.Errorf("term %g, commit index %g, applied index %g", s["agora_raft_term"], s["agora_raft_commit_index"], s["agora_raft_applied_index"])
	}
	if v, ok := s["agora_raft_last_contact_seconds"]; !ok || v != 0 {
		t.Errorf("agora_raft_last_contact_seconds = %g (present %t), want 0 on the leader", v, ok)
	}
	// Routes are patterns: no path a client sent is a label.
	for series := range s {
		if strings.Contains(series, "password-") || strings.Contains(series, "/no/such") {
			t.Errorf("a raw path became a label: %s", series)
		}
	}
}

// TestFollowerNamesTheRouteOfWhatItForwards: a write sent to a follower never reaches its mux,
// yet its metrics name the route.
func TestFollowerNamesTheRouteOfWhatItForwards(t *testing.T) {
	_, lead, follower := threeMasters(t)
	waitUntil(t, "the follower to know the leader's HTTP address", 10*time.Second, func() bool {
		return knowsLeaderHTTP(follower)
	})
	putSecret(t, follower.url("/v1/secrets/forwarded"), "v")

	const forwarded = `agora_http_request_duration_seconds_count{code="204",route="PUT /v1/secrets/{name...}"}`
	s := waitForSamples(t, follower.url("/metrics"), "the forwarded write observed", func(s map[string]float64) bool {
		return s[forwarded] == 1
	})
	if s[`agora_raft_state{state="follower"}`] != 1 || s[`agora_raft_state{state="leader"}`] != 0 {
		t.Errorf("the follower's agora_raft_state: %v", s)
	}
	if v, ok := s["agora_raft_last_contact_seconds"]; !ok || v < 0 || v > 5 {
		t.Errorf("the follower's agora_raft_last_contact_seconds = %g (present %t)", v, ok)
	}
	leadSamples := waitForSamples(t, lead.url("/metrics"), "the leader to observe the forwarded write", func(s map[string]float64) bool {
		return s[forwarded] == 1
	})
	if leadSamples["agora_raft_commit_seconds_count"] < 1 {
		t.Errorf("the leader observed no commit")
	}
}
