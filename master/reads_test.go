package master

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/faultnet"
)

// secretNames is GET url: the status, and the names when it answered 200.
func secretNames(t *testing.T, url string) (int, []string) {
	t.Helper()
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var list struct {
		Secrets []string `json:"secrets"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return resp.StatusCode, list.Secrets
}

// TestReadsNeverAnswerAnOldState: a read reaching a master cut off from the others — a
// follower, or a leader that lost its seat — answers an error rather than a state without a
// write acknowledged before the read; ?stale answers that old state, as asked.
func TestReadsNeverAnswerAnOldState(t *testing.T) {
	switches := map[*running]*faultnet.Switch{}
	start := func(join ...string) *running {
		sw := &faultnet.Switch{}
		r := startMasterConfig(t, Config{DataDir: t.TempDir(), BootstrapExpect: 3, Join: join, Faults: sw})
		switches[r] = sw
		return r
	}
	first := start()
	ms := []*running{first, start(first.m.GossipAddr()), start(first.m.GossipAddr())}
	lead := leaderOf(t, ms...)
	var f *running
	for _, r := range ms {
		if r != lead {
			f = r
		}
	}
	putSecret(t, lead.url("/v1/secrets/before"), "v")
	if code, names := secretNames(t, f.url("/v1/secrets")); code != http.StatusOK || !slices.Contains(names, "before") {
		t.Fatalf("a follower's read: %d %v, want 200 with the acknowledged write", code, names)
	}

	// A follower's read went to the leader; its own copy may still be catching up: wait until
	// that copy has the write too, so that "its own old state" below is known to hold it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, names := secretNames(t, f.url("/v1/secrets?stale")); code == http.StatusOK && slices.Contains(names, "before") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower's own copy never got the acknowledged write")
		}
	}
	switches[f].Cut(true)
	putSecret(t, lead.url("/v1/secrets/while-cut"), "v")
	code, names := secretNames(t, f.url("/v1/secrets"))
	if code == http.StatusOK && !slices.Contains(names, "while-cut") {
		t.Errorf("a follower cut off answered a read from its old state: %v", names)
	}
	if code, names := secretNames(t, f.url("/v1/secrets?stale")); code != http.StatusOK || !slices.Contains(names, "before") || slices.Contains(names, "while-cut") {
		t.Errorf("?stale on the cut-off follower: %d %v, want 200 with its own old state", code, names)
	}
	if code, _ := secretNames(t, f.url("/v1/secrets?stale=maybe")); code != http.StatusBadRequest {
		t.Errorf("?stale=maybe: %d, want 400", code)
	}
	switches[f].Cut(false)

	// The leader cut off: the others elect another, which acknowledges a write the old one
	// cannot have; the old one must not answer without it.
	switches[lead].Cut(true)
	var rest []*running
	for _, r := range ms {
		if r != lead {
			rest = append(rest, r)
		}
	}
	var next *running
	waitUntil(t, "another master leads", 20*time.Second, func() bool {
		for _, r := range rest {
			if r.m.store.IsLeader() {
				next = r
				return true
			}
		}
		return false
	})
	putSecret(t, next.url("/v1/secrets/after-failover"), "v")
	for _, path := range []string{"/v1/secrets", "/v1/agents"} {
		code, names := secretNames(t, lead.url(path))
		if code == http.StatusOK && path == "/v1/secrets" && !slices.Contains(names, "after-failover") {
			t.Errorf("the deposed leader answered a read from its old state: %v", names)
		}
		if code == http.StatusOK && path == "/v1/agents" {
			t.Errorf("the deposed leader answered GET /v1/agents, which it cannot know is current")
		}
	}
	code, names = secretNames(t, next.url("/v1/secrets"))
	if code != http.StatusOK || !slices.Contains(names, "after-failover") || !slices.Contains(names, "while-cut") {
		t.Errorf("the new leader's read: %d %v", code, names)
	}
	if resp, err := http.Get(lead.url("/v1/secrets")); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && !strings.Contains(string(body), "retry") {
			t.Errorf("the refusal does not say to retry: %d %s", resp.StatusCode, body)
		}
	}
	switches[lead].Cut(false)
	leaderOf(t, ms...) // back together before the masters stop, as a rolling restart would find them
}
