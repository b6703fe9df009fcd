package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/httpjson"
)

// The scheduler API over HTTP, for frameworks in any language: POST /api/v1/scheduler with a
// JSON api.Call.
//
// SUBSCRIBE answers 200 and keeps the answer open as a stream of api.Event. The stream's id is
// in the Agora-Stream-Id header; every other call (ACCEPT, DECLINE, ...) is a separate POST
// that carries it in the same header and its framework_id in the body, and is answered 202
// (done) or 4xx naming what is wrong. Framing, chosen by the SUBSCRIBE request's Accept header:
//
//	application/recordio (the default, as Mesos): each event is its length in bytes in decimal,
//	    a newline, then that many bytes of JSON
//	application/x-ndjson: each event is one line of JSON
//
// A HEARTBEAT event comes every heartbeat_interval_seconds (from SUBSCRIBED); a framework that
// misses several should subscribe again. Closing the stream disconnects the framework: its
// tasks keep running for its failover_timeout, within which it subscribes again with its
// framework id and loses nothing. Any master takes the calls and forwards them to the leader.
//
// A framework belongs to the principal that registered it (the name of the caller's token;
// "anonymous" on an open API): a SUBSCRIBE with its id, or a call for it, by another principal
// is 403 naming the framework and both principals. The embedded frameworks' principal is
// "agora:embedded", which no token can have, so no API caller can act as them.

// HeaderStreamID carries a subscription's stream id.
const HeaderStreamID = "Agora-Stream-Id"

// Content types of the event stream.
const (
	ContentTypeRecordIO = "application/recordio"
	ContentTypeNDJSON   = "application/x-ndjson"
)

func (a *apiHandler) schedulerCall(w http.ResponseWriter, r *http.Request) {
	var c api.Call
	if err := httpjson.Decode(r, &c); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	principal, ok := auth.PrincipalOf(r.Context())
	if !ok || principal.Name == "" {
		writeError(w, http.StatusForbidden, "the scheduler API needs a caller with a name (a token's, or anonymous on an open API)")
		return
	}
	if c.Type == api.CallSubscribe {
		a.subscribeStream(w, r, c, principal.Name)
		return
	}
	if c.FrameworkID == "" {
		httpjson.FieldError(w, http.StatusBadRequest, "framework_id", "is required for every call but a first SUBSCRIBE")
		return
	}
	streamID := r.Header.Get(HeaderStreamID)
	if streamID == "" {
		httpjson.FieldError(w, http.StatusBadRequest, HeaderStreamID, "header is required: the stream id SUBSCRIBE answered with")
		return
	}
	ss, err := a.m.sched.Session(c.FrameworkID, streamID, principal.Name)
	if err == nil {
		err = ss.Call(c)
	}
	if err != nil {
		writeSchedulerError(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// subscribeStream answers a SUBSCRIBE of principal (whose token the guard checked; a forwarding
// follower passes the Authorization header on, so the leader checks it again itself).
func (a *apiHandler) subscribeStream(w http.ResponseWriter, r *http.Request, c api.Call, principal string) {
	if c.Subscribe == nil {
		httpjson.FieldError(w, http.StatusBadRequest, "subscribe", "is required for a SUBSCRIBE call")
		return
	}
	// The principal is the caller's, never the body's: naming another is refused, as Mesos
	// refuses a FrameworkInfo.principal that differs from the authenticated one.
	if p := c.Subscribe.FrameworkInfo.Principal; p != "" && p != principal {
		httpjson.FieldError(w, http.StatusForbidden, "subscribe.framework_info.principal",
			fmt.Sprintf("%q is not the caller's principal %q: leave it out, the master sets it from the token", p, principal))
		return
	}
	c.Subscribe.FrameworkInfo.Principal = principal
	if c.FrameworkID != "" && c.Subscribe.FrameworkInfo.ID == "" {
		c.Subscribe.FrameworkInfo.ID = c.FrameworkID
	}
	if c.FrameworkID != "" && c.FrameworkID != c.Subscribe.FrameworkInfo.ID {
		httpjson.FieldError(w, http.StatusBadRequest, "framework_id", "differs from subscribe.framework_info.id")
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "this server cannot stream")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	ss, err := a.m.sched.Subscribe(ctx, c.Subscribe.FrameworkInfo)
	cancel()
	if err != nil {
		writeSchedulerError(w, err)
		return
	}
	defer ss.Close()
	ndjson := strings.Contains(r.Header.Get("Accept"), ContentTypeNDJSON)
	ct := ContentTypeRecordIO
	if ndjson {
		ct = ContentTypeNDJSON
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-cache")
	h.Set(HeaderStreamID, ss.StreamID())
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	heartbeat := time.NewTicker(a.m.sched.HeartbeatInterval())
	defer heartbeat.Stop()
	events := make(chan api.Event)
	done := make(chan error, 1)
	go func() {
		for {
			ev, err := ss.Next(r.Context())
			if err != nil {
				done <- err
				return
			}
			select {
			case events <- ev:
			case <-r.Context().Done():
				done <- r.Context().Err()
				return
			}
		}
	}()
	write := func(ev api.Event) error {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if ndjson {
			b = append(b, '\n')
		} else {
			b = append([]byte(strconv.Itoa(len(b))+"\n"), b...)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	for {
		var ev api.Event
		select {
		case ev = <-events:
		case <-heartbeat.C:
			ev = api.Event{Type: api.EventHeartbeat}
		case <-done:
			return
		}
		if err := write(ev); err != nil {
			return
		}
	}
}

// writeSchedulerError maps the scheduler's errors to answers.
func writeSchedulerError(w http.ResponseWriter, err error) {
	var fe *api.FieldError
	var oe *registry.OwnerError
	switch {
	case errors.As(err, &oe):
		writeJSON(w, http.StatusForbidden, struct {
			httpjson.ErrorBody
			FrameworkID string `json:"framework_id"`
			Owner       string `json:"owner"`
			Principal   string `json:"principal"`
		}{httpjson.ErrorBody{Message: oe.Error()}, oe.FrameworkID, oe.Owner, oe.Caller})
	case errors.As(err, &fe):
		httpjson.FieldError(w, http.StatusBadRequest, fe.Field, fe.Msg)
	case errors.Is(err, scheduler.ErrNotReady):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, scheduler.ErrUnknownFramework):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, scheduler.ErrNotSubscribed):
		writeError(w, http.StatusForbidden, err.Error()+": subscribe first, and send the "+HeaderStreamID+" header it answered with")
	default:
		writeStoreError(w, err)
	}
}

// listFrameworks is GET /v1/frameworks: the frameworks the leader knows, connected or not.
func (a *apiHandler) listFrameworks(w http.ResponseWriter, r *http.Request) {
	fws, err := a.m.sched.FrameworksView()
	if err != nil {
		writeSchedulerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, fws)
}
