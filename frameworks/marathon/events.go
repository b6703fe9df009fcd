package marathon

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
)

// Marathon's event types, as /v2/events streams them.
const (
	EventStreamAttached    = "event_stream_attached"
	EventStreamDetached    = "event_stream_detached"
	EventAPIPost           = "api_post_event"
	EventStatusUpdate      = "status_update_event"
	EventInstanceChanged   = "instance_changed_event"
	EventHealthChanged     = "health_status_changed_event"
	EventDeploymentInfo    = "deployment_info"
	EventDeploymentStepOK  = "deployment_step_success"
	EventDeploymentSuccess = "deployment_success"
	EventDeploymentFailed  = "deployment_failed"
	EventAppTerminated     = "app_terminated_event"
)

// subscriberBuffer is how many events a slow /v2/events reader may fall behind before it is
// cut off (it reconnects and reads the state from the API).
const subscriberBuffer = 4096

// eventBus fans events out to /v2/events streams. Publishing never blocks.
type eventBus struct {
	mu   sync.Mutex // guards subs
	subs map[*eventSub]struct{}
}

type eventSub struct {
	ch    chan eventMsg
	types map[string]bool // empty: all
	light bool            // ?plan-format=light: plans without original and target
	gone  chan struct{}   // closed when the bus dropped it for being slow
	once  sync.Once
}

type eventMsg struct {
	typ   string
	data  []byte
	light []byte // data with a light plan (no original, no target)
}

func newEventBus() *eventBus { return &eventBus{subs: map[*eventSub]struct{}{}} }

// publish sends one event: fields plus eventType and timestamp (now).
func (b *eventBus) publish(typ string, fields map[string]any) {
	b.publishAt(typ, fields, time.Time{})
}

// publishAt is publish with the event's timestamp at, when the framework decided what it
// tells (zero: now). A decision's events go out once it is committed, which under load can be
// seconds later; their stamps still say when it happened, as Marathon's say when it handled
// the update.
func (b *eventBus) publishAt(typ string, fields map[string]any, at time.Time) {
	if at.IsZero() {
		at = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 {
		return
	}
	body := map[string]any{"eventType": typ, "timestamp": formatTime(at)}
	for k, v := range fields {
		body[k] = v
	}
	data, err := json.Marshal(body)
	if err != nil {
		return
	}
	light := data
	if plan, ok := fields["plan"].(map[string]any); ok && plan["original"] != nil {
		lp := maps.Clone(plan)
		delete(lp, "original")
		delete(lp, "target")
		body["plan"] = lp
		if light, err = json.Marshal(body); err != nil {
			return
		}
	}
	for s := range b.subs {
		if len(s.types) > 0 && !s.types[typ] {
			continue
		}
		select {
		case s.ch <- eventMsg{typ: typ, data: data, light: light}:
		default:
			delete(b.subs, s)
			s.once.Do(func() { close(s.gone) })
		}
	}
}

func (b *eventBus) subscribe(types map[string]bool, light bool) *eventSub {
	s := &eventSub{ch: make(chan eventMsg, subscriberBuffer), types: types, light: light, gone: make(chan struct{})}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *eventBus) unsubscribe(s *eventSub) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// events is GET /v2/events: Server-Sent Events, each "event: TYPE" and "data: JSON", filtered by
// ?event_type= (repeatable). It starts with event_stream_attached. Deployment events' plans
// carry original and target unless ?plan-format=light (Marathon 1.5-1.7's parameter; 1.8 and
// later send only the light plan).
func (s *Service) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpjson.Error(w, http.StatusInternalServerError, "this server cannot stream")
		return
	}
	types := map[string]bool{}
	for _, v := range r.URL.Query()["event_type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				types[t] = true
			}
		}
	}
	light := false
	switch f := r.URL.Query().Get("plan-format"); f {
	case "", "full":
	case "light":
		light = true
	default:
		marathonError(w, http.StatusBadRequest, fmt.Sprintf("plan-format: %q is not one of full, light", f))
		return
	}
	sub := s.bus.subscribe(types, light)
	defer s.bus.unsubscribe(sub)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush() // the headers now: a filtered stream may have nothing to say for a while
	write := func(typ string, data []byte) bool {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if len(types) == 0 || types[EventStreamAttached] {
		attached, _ := json.Marshal(map[string]any{"eventType": EventStreamAttached, "remoteAddress": r.RemoteAddr, "timestamp": formatTime(time.Now())})
		if !write(EventStreamAttached, attached) {
			return
		}
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.gone:
			return
		case m := <-sub.ch:
			data := m.data
			if sub.light {
				data = m.light
			}
			if !write(m.typ, data) {
				return
			}
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}
