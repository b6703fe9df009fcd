package lb

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/client"
)

// TestFollowerMovesOn: a master without a view yet (503) and one that accepts the stream and
// then says nothing, not even a keepalive, are left for the next master; an event split over
// several data lines is one document; events of another name and comments are skipped.
func TestFollowerMovesOn(t *testing.T) {
	noView := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message": "this master has no service-discovery view yet"}`, http.StatusServiceUnavailable)
	}))
	defer noView.Close()
	silentDone := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-silentDone:
		}
	}))
	defer silent.Close()
	defer close(silentDone)
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": hello\n\nevent: other\ndata: {\"index\": 1}\n\n")
		fmt.Fprint(w, "event: services\ndata: {\"index\": 7, \"term\": 2,\ndata:  \"leader\": \"m-1\", \"services\": []}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer live.Close()

	var masters []Master
	for _, u := range []string{noView.URL, silent.URL, live.URL} {
		c, err := client.New(u)
		if err != nil {
			t.Fatal(err)
		}
		masters = append(masters, c)
	}
	docs := make(chan api.Services, 10)
	var mu sync.Mutex
	var states []bool
	f := &follower{masters: masters, idle: 300 * time.Millisecond, minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond,
		log:       slog.New(slog.NewTextHandler(testWriter{t, "lb: "}, nil)),
		connected: func(c bool) { mu.Lock(); states = append(states, c); mu.Unlock() },
		doc:       func(d api.Services) { docs <- d }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.run(ctx) }()
	defer func() { cancel(); <-done }()

	select {
	case d := <-docs:
		if d.Index != 7 || d.Term != 2 || d.Leader != "m-1" {
			t.Fatalf("the document: %+v", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no document from the live master after a 503 and a silent one")
	}
	select {
	case d := <-docs:
		t.Fatalf("a second document: %+v (the other event?)", d)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) == 0 || !states[len(states)-1] {
		t.Fatalf("connected states %v, want ending true", states)
	}
}
