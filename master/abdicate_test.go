package master

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func deleteURL(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestAbdicateToANamedMaster: DELETE /v2/leader?to=ID, sent to any master, makes that master
// lead; a name that is no voting master is a 400 naming the parameter; the leader itself is
// no change.
func TestAbdicateToANamedMaster(t *testing.T) {
	ms, lead, _ := threeMasters(t)
	for _, bad := range []string{"?to=nobody", "?to="} {
		code, body := deleteURL(t, lead.url("/v2/leader"+bad))
		if code != http.StatusBadRequest || !strings.Contains(body, "to: no voting master") {
			t.Fatalf("DELETE /v2/leader%s = %d %s, want 400 naming to", bad, code, body)
		}
	}
	if code, body := deleteURL(t, lead.url("/v2/leader?to="+lead.m.id)); code != http.StatusOK || !strings.Contains(body, "leads already") {
		t.Fatalf("to the leader itself: %d %s", code, body)
	}
	if l := leaderOf(t, ms...); l != lead {
		t.Fatalf("the leader changed to %s although it was asked to stay", l.m.id)
	}
	// Twice round: each time to a follower, asked through the other follower (forwarded).
	for range 2 {
		var target, via *running
		for _, r := range ms {
			switch {
			case r == lead:
			case target == nil:
				target = r
			default:
				via = r
			}
		}
		code, body := deleteURL(t, via.url("/v2/leader?to="+target.m.id))
		if code != http.StatusOK {
			t.Fatalf("DELETE /v2/leader?to=%s = %d %s", target.m.id, code, body)
		}
		if l := leaderOf(t, ms...); l != target {
			t.Fatalf("%s leads, want %s", l.m.id, target.m.id)
		}
		lead = target
	}
}
