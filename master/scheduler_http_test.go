package master

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// httpFramework is a framework on the HTTP scheduler API, as an external one would be.
type httpFramework struct {
	t        *testing.T
	url      string
	token    string // "" for none
	streamID string
	fwID     string
	events   chan api.Event
	cancel   context.CancelFunc
}

// subscribeHTTP opens the event stream with the given framing and reads SUBSCRIBED.
func subscribeHTTP(t *testing.T, base string, info api.FrameworkInfo, accept string) *httpFramework {
	t.Helper()
	return subscribeHTTPAs(t, base, "", info, accept)
}

// subscribeHTTPAs is subscribeHTTP with a token ("" for none).
func subscribeHTTPAs(t *testing.T, base, token string, info api.FrameworkInfo, accept string) *httpFramework {
	t.Helper()
	body, _ := json.Marshal(api.Call{Type: api.CallSubscribe, Subscribe: &api.Subscribe{FrameworkInfo: info}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/scheduler", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("subscribe: %d %s", resp.StatusCode, b)
	}
	want := httpapi.ContentTypeRecordIO
	if accept != "" {
		want = accept
	}
	if ct := resp.Header.Get("Content-Type"); ct != want {
		t.Fatalf("content type %q, want %q", ct, want)
	}
	f := &httpFramework{t: t, url: base + "/api/v1/scheduler", token: token, streamID: resp.Header.Get(httpapi.HeaderStreamID), events: make(chan api.Event, 100), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		defer close(f.events)
		r := bufio.NewReader(resp.Body)
		for {
			var frame []byte
			if want == httpapi.ContentTypeNDJSON {
				line, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				frame = line
			} else {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				n, err := strconv.Atoi(strings.TrimSpace(line))
				if err != nil {
					t.Errorf("recordio: bad length %q", line)
					return
				}
				frame = make([]byte, n)
				if _, err := io.ReadFull(r, frame); err != nil {
					return
				}
			}
			var ev api.Event
			if err := json.Unmarshal(frame, &ev); err != nil {
				t.Errorf("event %q: %v", frame, err)
				return
			}
			f.events <- ev
		}
	}()
	t.Cleanup(cancel)
	ev := f.next(api.EventSubscribed)
	f.fwID = ev.Subscribed.FrameworkID
	return f
}

func (f *httpFramework) next(want api.EventType) api.Event {
	f.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-f.events:
			if !ok {
				f.t.Fatalf("stream ended waiting for %s", want)
			}
			if ev.Type == want {
				return ev
			}
		case <-timeout:
			f.t.Fatalf("no %s within 10s", want)
		}
	}
}

// call posts a call on the stream and returns the status code and body.
func (f *httpFramework) call(c api.Call, streamID string) (int, string) {
	f.t.Helper()
	if c.FrameworkID == "" {
		c.FrameworkID = f.fwID
	}
	body, _ := json.Marshal(c)
	req, _ := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpapi.HeaderStreamID, streamID)
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSchedulerOverHTTP: both framings carry the same events; calls on the stream are answered
// 202, and wrong ones 4xx naming what is wrong.
func TestSchedulerOverHTTP(t *testing.T) {
	for _, framing := range []string{"", httpapi.ContentTypeNDJSON} {
		t.Run(fmt.Sprint("accept=", framing), func(t *testing.T) {
			e := newSchedEnv(t, func(c *SchedulerConfig) { c.HeartbeatInterval = 100 * time.Millisecond })
			e.sim.register(t, "", "host-a", agentRes)
			base := "http://" + e.r.m.HTTPAddr()
			f := subscribeHTTP(t, base, api.FrameworkInfo{Name: "ext", FailoverTimeout: 60}, framing)
			o := f.next(api.EventOffers).Offers.Offers[0]
			code, body := f.call(api.Call{Type: api.CallAccept, Accept: &api.Accept{OfferIDs: []string{o.ID}, Operations: launch(sleepTask("h1", 1, 64))}}, f.streamID)
			if code != http.StatusAccepted {
				t.Fatalf("accept: %d %s", code, body)
			}
			var st api.TaskStatus
			for st.State != task.Running {
				st = f.next(api.EventUpdate).Update.Status
			}
			if code, body := f.call(api.Call{Type: api.CallAcknowledge, Acknowledge: &api.AckUpdate{AgentID: st.AgentID, TaskID: st.TaskID, UUID: st.UUID}}, f.streamID); code != http.StatusAccepted {
				t.Fatalf("acknowledge: %d %s", code, body)
			}
			for _, c := range []struct {
				call     api.Call
				streamID string
				code     int
				names    string
			}{
				{api.Call{Type: api.CallRevive}, "wrong", http.StatusForbidden, "subscribe first"},
				{api.Call{Type: api.CallRevive}, "", http.StatusBadRequest, httpapi.HeaderStreamID},
				{api.Call{Type: api.CallRevive, FrameworkID: "nope"}, f.streamID, http.StatusNotFound, "unknown framework"},
				{api.Call{Type: "EXPLODE"}, f.streamID, http.StatusBadRequest, `"field": "type"`},
				{api.Call{Type: api.CallDecline, Decline: &api.Decline{Filters: refuse(-5)}}, f.streamID, http.StatusBadRequest, "decline.filters.refuse_seconds"},
			} {
				if code, body := f.call(c.call, c.streamID); code != c.code || !strings.Contains(body, c.names) {
					t.Errorf("%+v on stream %q: %d %s, want %d naming %s", c.call, c.streamID, code, body, c.code, c.names)
				}
			}
			// Malformed bodies and subscriptions.
			for body, names := range map[string]string{
				`{"type": "SUBSCRIBE"}`: `"field": "subscribe"`,
				`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": ""}}}`:                         "subscribe.framework_info.name",
				`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x", "role": "a b"}}}`:         "subscribe.framework_info.role",
				`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x", "capabilities": ["Z"]}}}`: "capabilities[0]",
				`{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "x", "id": "no-such"}}}`:       "unknown framework",
				`{"type": 7}`:       "type",
				`{"type": "REVIVE"`: "",
				`{"bogus": 1}`:      "bogus",
				// A misspelt field inside a health check (a type that decodes itself) is named too.
				`{"type": "ACCEPT", "accept": {"offer_ids": ["o"], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"health_checks": [{"protocol": "HTTP", "intervalSecs": 5}]}]}}]}}`: "accept.operations[0].launch.task_infos[0].health_checks[0].intervalSecs",
			} {
				resp, err := http.Post(f.url, "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(string(b), names) {
					t.Errorf("%s: %d %s, want 4xx naming %q", body, resp.StatusCode, b, names)
				}
			}
			f.next(api.EventHeartbeat)
			// A closed stream disconnects the framework; it subscribes again with its id.
			f.cancel()
			waitUntil(t, "the framework to be disconnected", 5*time.Second, func() bool {
				fws, _ := e.r.m.sched.FrameworksView()
				return len(fws) == 1 && !fws[0].Connected
			})
			again := subscribeHTTP(t, base, api.FrameworkInfo{ID: f.fwID, Name: "ext", FailoverTimeout: 60}, framing)
			if again.fwID != f.fwID {
				t.Fatalf("re-subscribed as %s, want %s", again.fwID, f.fwID)
			}
			var frameworks []api.FrameworkState
			getJSON(t, base+"/v1/frameworks", &frameworks)
			if len(frameworks) != 1 || !frameworks[0].Connected || frameworks[0].Tasks != 1 || frameworks[0].Allocated.CPUs < 1 {
				t.Fatalf("GET /v1/frameworks: %+v", frameworks)
			}
		})
	}
}
