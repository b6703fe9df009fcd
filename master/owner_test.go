package master

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// The tokens of the access tests: two operators, an admin and a viewer.
const (
	aliceToken = "alice-token-0123456789"
	bobToken   = "bob-token-0123456789"
	rootToken  = "root-token-0123456789"
	eveToken   = "eve-token-0123456789"
)

func testTokens(t *testing.T) *auth.Tokens {
	t.Helper()
	tokens, err := auth.ParseTokens(strings.NewReader(fmt.Sprintf("operator alice %s\noperator bob %s\nadmin root %s\nviewer eve %s\n", aliceToken, bobToken, rootToken, eveToken)))
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// send makes a request with a token ("" for none) and returns its status and body.
func send(t *testing.T, method, url, token string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// refusedSubscribe sends a SUBSCRIBE that must be refused and returns its status and body; an
// accepted one (a stream) fails the test at once.
func refusedSubscribe(t *testing.T, base, token string, info api.FrameworkInfo, header ...string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(api.Call{Type: api.CallSubscribe, Subscribe: &api.Subscribe{FrameworkInfo: info}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/scheduler", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("SUBSCRIBE %+v with %q was accepted", info, token)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// ownerRefusal is the body of a 403 for another principal's framework.
type ownerRefusal struct {
	Message     string `json:"message"`
	FrameworkID string `json:"framework_id"`
	Owner       string `json:"owner"`
	Principal   string `json:"principal"`
}

// wantOwnerRefusal checks a 403 that names the framework and both principals.
func wantOwnerRefusal(t *testing.T, what string, code int, body, fwID, owner, caller string) {
	t.Helper()
	var r ownerRefusal
	if code != http.StatusForbidden || json.Unmarshal([]byte(body), &r) != nil || r.FrameworkID != fwID || r.Owner != owner || r.Principal != caller ||
		!strings.Contains(r.Message, fwID) || !strings.Contains(r.Message, owner) || !strings.Contains(r.Message, caller) {
		t.Fatalf("%s: %d %s; want 403 naming framework %s, its owner %s and the caller %s", what, code, body, fwID, owner, caller)
	}
}

// principals is who registered each framework, as GET /v1/frameworks shows a viewer.
func principals(t *testing.T, base string) map[string]string {
	t.Helper()
	code, body := send(t, "GET", base+"/v1/frameworks", eveToken, nil)
	var fws []api.FrameworkState
	if code != http.StatusOK || json.Unmarshal([]byte(body), &fws) != nil {
		t.Fatalf("GET /v1/frameworks as a viewer: %d %s", code, body)
	}
	out := map[string]string{}
	for _, fw := range fws {
		out[fw.Info.ID] = fw.Info.Principal
	}
	return out
}

// TestFrameworksBelongToTheirPrincipal: a framework is its registering token's. Another
// operator cannot subscribe as it or call for it, not even with its stream id; no token, not
// even an admin's, can subscribe as an embedded framework; a body cannot name a principal; the
// owner's framework, task and stream and the embedded framework's session are untouched.
func TestFrameworksBelongToTheirPrincipal(t *testing.T) {
	e := newSchedEnvWith(t, Config{Tokens: testTokens(t)}, nil)
	e.sim.register(t, "", "host-a", agentRes)
	base := "http://" + e.r.m.HTTPAddr()

	alice := subscribeHTTPAs(t, base, aliceToken, api.FrameworkInfo{Name: "ext", FailoverTimeout: 60}, "")
	o := alice.next(api.EventOffers).Offers.Offers[0]
	if code, body := alice.call(api.Call{Type: api.CallAccept, Accept: &api.Accept{OfferIDs: []string{o.ID}, Operations: launch(sleepTask("a1", 1, 64))}}, alice.streamID); code != http.StatusAccepted {
		t.Fatalf("accept: %d %s", code, body)
	}
	var st api.TaskStatus
	for st.State != task.Running {
		st = alice.next(api.EventUpdate).Update.Status
	}
	embedded := e.subscribe(api.FrameworkInfo{Name: "marathon", FailoverTimeout: 3600})

	// Bob, an operator too, with Alice's id: in the SUBSCRIBE, in the call, with her stream id.
	code, body := refusedSubscribe(t, base, bobToken, api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 60})
	wantOwnerRefusal(t, "bob subscribing as alice's framework", code, body, alice.fwID, "alice", "bob")
	bob := &httpFramework{t: t, url: alice.url, token: bobToken, fwID: alice.fwID}
	for _, c := range []api.Call{
		{Type: api.CallKill, Kill: &api.KillTask{TaskID: "a1"}},
		{Type: api.CallTeardown},
		{Type: api.CallAcknowledge, Acknowledge: &api.AckUpdate{AgentID: st.AgentID, TaskID: st.TaskID, UUID: st.UUID}},
	} {
		code, body := bob.call(c, alice.streamID)
		wantOwnerRefusal(t, fmt.Sprintf("bob's %s on alice's stream", c.Type), code, body, alice.fwID, "alice", "bob")
	}
	// An admin with the embedded framework's id.
	code, body = refusedSubscribe(t, base, rootToken, api.FrameworkInfo{ID: embedded.FrameworkID(), Name: "marathon", FailoverTimeout: 3600})
	wantOwnerRefusal(t, "an admin subscribing as the embedded framework", code, body, embedded.FrameworkID(), auth.Embedded, "root")
	// A body that names a principal other than the caller's.
	for _, p := range []string{"alice", auth.Embedded} {
		code, body = refusedSubscribe(t, base, bobToken, api.FrameworkInfo{Name: "mine", Principal: p})
		if code != http.StatusForbidden || !strings.Contains(body, `"field": "subscribe.framework_info.principal"`) {
			t.Fatalf("bob naming principal %s: %d %s, want 403 naming subscribe.framework_info.principal", p, code, body)
		}
	}

	// Nothing changed hands: Alice's stream still takes her calls, her task was not killed, the
	// embedded framework's session is still the open one.
	if code, body := alice.call(api.Call{Type: api.CallRevive}, alice.streamID); code != http.StatusAccepted {
		t.Fatalf("alice's own call after the refusals: %d %s", code, body)
	}
	if e.sim.killed("a1") {
		t.Fatal("bob's KILL reached the agent")
	}
	if err := embedded.Call(api.Call{Type: api.CallRevive}); err != nil {
		t.Fatalf("the embedded framework's session: %v", err)
	}
	if got := principals(t, base); got[alice.fwID] != "alice" || got[embedded.FrameworkID()] != auth.Embedded {
		t.Fatalf("principals %v, want alice's and %s", got, auth.Embedded)
	}
	// Alice may name herself, and subscribe again with her id.
	alice.cancel()
	again := subscribeHTTPAs(t, base, aliceToken, api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 60, Principal: "alice"}, "")
	if again.fwID != alice.fwID {
		t.Fatalf("alice re-subscribed as %s, want %s", again.fwID, alice.fwID)
	}

	// The replicated registry refuses a change of principal itself; an entry of an older build
	// (no principal) keeps the one there.
	register := func(info api.FrameworkInfo) (api.FrameworkInfo, error) {
		data, _ := json.Marshal(info)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := e.r.m.store.Apply(ctx, raft.Command{Namespace: registry.NamespaceFrameworks, Type: "framework.register", Data: data})
		if err != nil {
			return api.FrameworkInfo{}, err
		}
		return res.Value.(api.FrameworkInfo), nil
	}
	if _, err := register(api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 60, Principal: "bob"}); !errors.Is(err, registry.ErrNotOwner) {
		t.Fatalf("framework.register of alice's framework as bob: %v, want ErrNotOwner", err)
	}
	if fw, err := register(api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 60}); err != nil || fw.Principal != "alice" {
		t.Fatalf("framework.register without a principal: %+v %v, want alice kept", fw, err)
	}
}

// TestOpenAPIFrameworksAreAnonymous: without tokens every HTTP framework is anonymous's, so
// they may subscribe as each other (there is no one to tell apart), but never as an embedded
// framework.
func TestOpenAPIFrameworksAreAnonymous(t *testing.T) {
	e := newSchedEnv(t, nil)
	base := "http://" + e.r.m.HTTPAddr()
	first := subscribeHTTP(t, base, api.FrameworkInfo{Name: "ext", FailoverTimeout: 60}, "")
	first.cancel()
	second := subscribeHTTP(t, base, api.FrameworkInfo{ID: first.fwID, Name: "ext", FailoverTimeout: 60}, "")
	if second.fwID != first.fwID {
		t.Fatalf("re-subscribed as %s, want %s", second.fwID, first.fwID)
	}
	embedded := e.subscribe(api.FrameworkInfo{Name: "chronos", FailoverTimeout: 3600})
	code, body := refusedSubscribe(t, base, "", api.FrameworkInfo{ID: embedded.FrameworkID(), Name: "chronos", FailoverTimeout: 3600})
	wantOwnerRefusal(t, "an open API's caller subscribing as the embedded framework", code, body, embedded.FrameworkID(), auth.Embedded, auth.Anonymous)
	if got := principals(t, base); got[first.fwID] != auth.Anonymous {
		t.Fatalf("principals %v, want %s for the HTTP framework", got, auth.Anonymous)
	}
}

// TestFrameworksOfAnOlderBuild: frameworks registered before principals have none. One named
// as an embedded framework is the embedded one's (it subscribes again in-process after the
// upgrade; no token may take it first); any other is its first re-subscriber's.
func TestFrameworksOfAnOlderBuild(t *testing.T) {
	e := newSchedEnvWith(t, Config{Tokens: testTokens(t)}, nil)
	for _, old := range []api.FrameworkInfo{
		{ID: "older-build-0000", Name: "marathon", Role: api.DefaultRole, FailoverTimeout: 3600},
		{ID: "older-build-0001", Name: "ext", Role: api.DefaultRole, FailoverTimeout: 3600},
	} {
		data, _ := json.Marshal(old) // what an older build wrote: no principal
		if _, err := e.r.m.store.Apply(context.Background(), raft.Command{Namespace: registry.NamespaceFrameworks, Type: "framework.register", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	e.restart() // the new term loads them from the registry
	e.r.m.RegisterEmbedded("marathon")
	base := "http://" + e.r.m.HTTPAddr()

	code, body := refusedSubscribe(t, base, rootToken, api.FrameworkInfo{ID: "older-build-0000", Name: "marathon", FailoverTimeout: 3600})
	wantOwnerRefusal(t, "an admin taking an older build's marathon", code, body, "older-build-0000", auth.Embedded, "root")
	embedded := e.subscribe(api.FrameworkInfo{ID: "older-build-0000", Name: "marathon", FailoverTimeout: 3600})
	if embedded.FrameworkID() != "older-build-0000" {
		t.Fatalf("the embedded framework subscribed as %s", embedded.FrameworkID())
	}

	alice := subscribeHTTPAs(t, base, aliceToken, api.FrameworkInfo{ID: "older-build-0001", Name: "ext", Role: api.DefaultRole, FailoverTimeout: 3600}, "")
	code, body = refusedSubscribe(t, base, bobToken, api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 3600})
	wantOwnerRefusal(t, "bob after alice claimed an older build's framework", code, body, alice.fwID, "alice", "bob")
	if got := principals(t, base); got["older-build-0000"] != auth.Embedded || got["older-build-0001"] != "alice" {
		t.Fatalf("principals %v", got)
	}
}

// TestFollowerForwardsTheCallersPrincipal: a follower passes a scheduler call on to the leader
// with the caller's Authorization header, so the leader knows the caller; the forwarding header
// from outside names no one.
func TestFollowerForwardsTheCallersPrincipal(t *testing.T) {
	tokens := testTokens(t)
	first := startMasterConfig(t, Config{DataDir: t.TempDir(), BootstrapExpect: 3, Tokens: tokens})
	seed := first.m.GossipAddr()
	ms := []*running{first,
		startMasterConfig(t, Config{DataDir: t.TempDir(), BootstrapExpect: 3, Join: []string{seed}, Tokens: tokens}),
		startMasterConfig(t, Config{DataDir: t.TempDir(), BootstrapExpect: 3, Join: []string{seed}, Tokens: tokens})}
	lead := leaderOf(t, ms...)
	var follower *running
	for _, r := range ms {
		if r != lead {
			follower = r
		}
	}
	waitUntil(t, "the follower to know the leader's HTTP address and the scheduler to start", 15*time.Second, func() bool {
		return schedulerReady(lead.m) && knowsLeaderHTTP(follower)
	})

	alice := subscribeHTTPAs(t, follower.url(""), aliceToken, api.FrameworkInfo{Name: "ext", FailoverTimeout: 60}, "")
	if got := principals(t, lead.url("")); got[alice.fwID] != "alice" {
		t.Fatalf("the leader recorded %v, want alice", got)
	}
	code, body := refusedSubscribe(t, follower.url(""), bobToken, api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 60})
	wantOwnerRefusal(t, "bob through the follower", code, body, alice.fwID, "alice", "bob")
	// The forwarding header sent from outside: still the caller's own token that counts.
	code, _ = refusedSubscribe(t, lead.url(""), "", api.FrameworkInfo{ID: alice.fwID, Name: "ext"}, httpapi.HeaderForwardedBy, follower.m.id)
	if code != http.StatusUnauthorized {
		t.Fatalf("a forged %s without a token: %d, want 401", httpapi.HeaderForwardedBy, code)
	}
	code, body = refusedSubscribe(t, lead.url(""), bobToken, api.FrameworkInfo{ID: alice.fwID, Name: "ext", FailoverTimeout: 60}, httpapi.HeaderForwardedBy, follower.m.id)
	wantOwnerRefusal(t, "bob with a forged "+httpapi.HeaderForwardedBy, code, body, alice.fwID, "alice", "bob")
}
