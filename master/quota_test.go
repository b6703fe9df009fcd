package master

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
)

// call sends a JSON body (nil: none) and answers the status and the body.
func call(t *testing.T, method, url string, in any) (int, string) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestQuotasAreReplicatedAndChecked: a quota set through a follower is committed through raft
// and read from the leader elected after the old one dies; requests Mesos would refuse are
// refused with the field named, guarantees the agents could not hold with 409 unless forced;
// Mesos's GET /quota shows the guarantee and the limit.
func TestQuotasAreReplicatedAndChecked(t *testing.T) {
	ms, lead, follower := threeMasters(t)
	put := func(r *running, role string, req api.QuotaRequest) (int, string) {
		return call(t, http.MethodPut, r.url("/v1/quota/"+role), req)
	}
	for _, bad := range []struct {
		role  string
		req   api.QuotaRequest
		field string
	}{
		{"*", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 1}}, `"field": "role"`},
		{"a b", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 1}}, `"field": "role"`},
		{"analytics", api.QuotaRequest{Guarantee: map[string]float64{"gpus": 1}}, `"field": "guarantee.gpus"`},
		{"analytics", api.QuotaRequest{Limit: map[string]float64{"mem": -1}}, `"field": "limit.mem"`},
		{"analytics", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 3}, Limit: map[string]float64{"cpus": 2}}, `"field": "guarantee.cpus"`},
	} {
		if code, body := put(follower, bad.role, bad.req); code != http.StatusUnprocessableEntity || !strings.Contains(body, bad.field) {
			t.Fatalf("PUT quota %q %+v: %d %s; want 422 naming %s", bad.role, bad.req, code, body, bad.field)
		}
	}
	// No agent: any guarantee is more than the cluster has, unless forced; a limit alone is fine.
	if code, body := put(follower, "analytics", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 4}}); code != http.StatusConflict || !strings.Contains(body, "cpus 4 of 0") {
		t.Fatalf("an overcommitting guarantee: %d %s", code, body)
	}
	if code, body := put(follower, "analytics", api.QuotaRequest{Guarantee: map[string]float64{"cpus": 4, "mem": 8192}, Limit: map[string]float64{"cpus": 8}, Force: true}); code != http.StatusOK {
		t.Fatalf("a forced quota: %d %s", code, body)
	}
	if code, body := put(lead, "batch", api.QuotaRequest{Limit: map[string]float64{"cpus": 2}}); code != http.StatusOK {
		t.Fatalf("a limit alone: %d %s", code, body)
	}

	lead.m.Kill()
	lead.stop()
	var rest []*running
	for _, r := range ms {
		if r != lead {
			rest = append(rest, r)
		}
	}
	newLead := leaderOf(t, rest...)
	var got struct {
		Quotas []api.QuotaStatus `json:"quotas"`
	}
	getJSON(t, newLead.url("/v1/quota"), &got)
	if len(got.Quotas) != 2 || got.Quotas[0].Role != "analytics" || got.Quotas[0].Guarantee["mem"] != 8192 || got.Quotas[0].Limit["cpus"] != 8 ||
		got.Quotas[1].Role != "batch" || len(got.Quotas[1].Guarantee) != 0 || got.Quotas[1].Limit["cpus"] != 2 || got.Quotas[0].UpdatedAt.IsZero() {
		t.Fatalf("after the leader's death: %+v", got.Quotas)
	}
	var mesos struct {
		Infos []struct {
			Role      string `json:"role"`
			Guarantee []struct {
				Name   string `json:"name"`
				Type   string `json:"type"`
				Scalar struct {
					Value float64 `json:"value"`
				} `json:"scalar"`
			} `json:"guarantee"`
		} `json:"infos"`
		Configs []struct {
			Role       string                        `json:"role"`
			Guarantees map[string]map[string]float64 `json:"guarantees"`
			Limits     map[string]map[string]float64 `json:"limits"`
		} `json:"configs"`
	}
	getJSON(t, newLead.url("/quota"), &mesos)
	if len(mesos.Infos) != 2 || mesos.Infos[0].Guarantee[0].Name != "cpus" || mesos.Infos[0].Guarantee[0].Type != "SCALAR" || mesos.Infos[0].Guarantee[0].Scalar.Value != 4 ||
		mesos.Configs[0].Limits["cpus"]["value"] != 8 || mesos.Configs[1].Guarantees != nil {
		t.Fatalf("GET /quota: %+v", mesos)
	}
	// Mesos's set: the guarantee is the limit too; remove: 200, then 400.
	legacy := map[string]any{"role": "dev", "force": true, "guarantee": []map[string]any{{"name": "cpus", "type": "SCALAR", "scalar": map[string]float64{"value": 1}}}}
	if code, body := call(t, http.MethodPost, newLead.url("/quota"), legacy); code != http.StatusOK {
		t.Fatalf("POST /quota: %d %s", code, body)
	}
	getJSON(t, newLead.url("/v1/quota"), &got)
	if len(got.Quotas) != 3 || got.Quotas[2].Role != "dev" || got.Quotas[2].Limit["cpus"] != 1 {
		t.Fatalf("after POST /quota: %+v", got.Quotas)
	}
	for _, want := range []int{http.StatusOK, http.StatusBadRequest} {
		if code, body := call(t, http.MethodDelete, newLead.url("/quota/dev"), nil); code != want {
			t.Fatalf("DELETE /quota/dev: %d %s, want %d", code, body, want)
		}
	}
	if code, _ := call(t, http.MethodDelete, newLead.url("/v1/quota/batch"), nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /v1/quota/batch: %d", code)
	}
}
