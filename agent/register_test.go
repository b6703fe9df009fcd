package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/client"
)

// TestAskLeaderIsCheapAndWorksWithOlderMasters: an agent asks GET /v1/cluster/leader (never the
// whole cluster view, which lists every member); a master without that call (404) is asked GET
// /v1/cluster; "no leader" is an error that says so, from either.
func TestAskLeaderIsCheapAndWorksWithOlderMasters(t *testing.T) {
	var clusterCalls atomic.Int32
	leader := &api.LeaderInfo{ID: "m-1", Address: "10.0.0.1:7000", HTTP: "10.0.0.1:8080"}
	serve := func(newer bool, elected bool) *client.Client {
		mux := http.NewServeMux()
		if newer {
			mux.HandleFunc("GET /v1/cluster/leader", func(w http.ResponseWriter, r *http.Request) {
				if !elected {
					http.Error(w, `{"message": "no leader elected yet"}`, http.StatusServiceUnavailable)
					return
				}
				w.Write([]byte(`{"id": "m-1", "address": "10.0.0.1:7000", "http": "10.0.0.1:8080"}`))
			})
		}
		mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
			clusterCalls.Add(1)
			if !elected {
				w.Write([]byte(`{"cluster_id": "c", "masters": [], "members": []}`))
				return
			}
			w.Write([]byte(`{"cluster_id": "c", "leader": {"id": "m-1", "address": "10.0.0.1:7000", "http": "10.0.0.1:8080"}, "masters": [], "members": []}`))
		})
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		c, err := client.New(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	if got, err := askLeader(ctx, serve(true, true)); err != nil || got != *leader || clusterCalls.Load() != 0 {
		t.Fatalf("a master of this version: %+v %v, %d calls of GET /v1/cluster", got, err, clusterCalls.Load())
	}
	if got, err := askLeader(ctx, serve(false, true)); err != nil || got != *leader || clusterCalls.Load() != 1 {
		t.Fatalf("an older master: %+v %v, %d calls of GET /v1/cluster", got, err, clusterCalls.Load())
	}
	for _, newer := range []bool{true, false} {
		if _, err := askLeader(ctx, serve(newer, false)); !errors.Is(err, errNoLeader) {
			t.Fatalf("no leader (newer %v): %v", newer, err)
		}
	}
}
