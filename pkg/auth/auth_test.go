package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseTokensNamesTheBadLine(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"admin alice 0123456789abcdef\nroot bob 0123456789abcdeg\n", "line 2: unknown role"},
		{"admin alice short\n", "line 1: the token of alice is shorter than 16"},
		{"admin alice 0123456789abcdef extra\n", "line 1: want ROLE NAME TOKEN"},
		{"admin alice 0123456789abcdef\nviewer bob 0123456789abcdef\n", "line 2: the token of bob is used twice"},
		{"admin alice 0123456789abcdef\nviewer alice 0123456789abcdeX\n", "line 2: the name alice is used twice"},
		{"admin agora:embedded 0123456789abcdef\n", "line 1: the name agora:embedded contains ':'"},
		{"operator team:ci 0123456789abcdef\n", "line 1: the name team:ci contains ':'"},
		{"admin anonymous 0123456789abcdef\n", "line 1: the name anonymous is reserved"},
		{"viewer cluster 0123456789abcdef\n", "line 1: the name cluster is reserved"},
	} {
		if _, err := ParseTokens(strings.NewReader(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.file, err, tc.want)
		}
	}
	tok, err := ParseTokens(strings.NewReader("# comment\n\nadmin alice 0123456789abcdef # trailing\nviewer bob fedcba9876543210\n"))
	if err != nil || tok.Len() != 2 {
		t.Fatalf("%v %d", err, tok.Len())
	}
}

// TestGuard: each role may do what its need allows and no more; the cluster secret is its own.
func TestGuard(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader("admin a admin-0123456789abcdef\noperator o operator-0123456789abc\nviewer v viewer-0123456789abcdef\n"))
	if err != nil {
		t.Fatal(err)
	}
	needs := map[string]Role{"/open": Open, "/read": Viewer, "/write": Operator, "/admin": Admin, "/cluster": Cluster}
	g := &Guard{ClusterSecret: "cluster-secret-0123456789", Need: func(r *http.Request) Role { return needs[r.URL.Path] }}
	g.SetTokens(tokens)
	want := map[string][5]int{ // status for /open, /read, /write, /admin, /cluster
		"":                          {0, 401, 401, 401, 401},
		"nope-0123456789abcdef":     {0, 401, 401, 401, 403},
		"viewer-0123456789abcdef":   {0, 0, 403, 403, 403},
		"operator-0123456789abc":    {0, 0, 0, 403, 403},
		"admin-0123456789abcdef":    {0, 0, 0, 0, 403},
		"cluster-secret-0123456789": {0, 0, 0, 0, 0},
	}
	for tok, codes := range want {
		for i, path := range []string{"/open", "/read", "/write", "/admin", "/cluster"} {
			r := httptest.NewRequest("POST", path, nil)
			if tok != "" {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
			if _, code, _ := g.Check(r); code != codes[i] {
				t.Errorf("token %q on %s: %d, want %d", tok, path, code, codes[i])
			}
		}
	}
	// A token in the query only on the GETs QueryToken names; elsewhere a 401 naming the header.
	g.QueryToken = func(r *http.Request) bool { return r.URL.Path == "/stream" }
	g.QueryTokenWhere = "/stream"
	needs["/stream"] = Viewer
	for _, tc := range []struct {
		method, target, header string
		want                   int
	}{
		{"GET", "/stream?access_token=viewer-0123456789abcdef", "", 0},
		{"GET", "/stream?access_token=nope-0123456789abcdef", "", 401},
		{"GET", "/read?access_token=viewer-0123456789abcdef", "", 401},
		{"POST", "/stream?access_token=operator-0123456789abc", "", 401},
		{"GET", "/read?access_token=nope", "viewer-0123456789abcdef", 0}, // the header counts
		{"GET", "/open?access_token=nope", "", 0},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", "Bearer "+tc.header)
		}
		_, code, err := g.Check(r)
		if code != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.target, code, err, tc.want)
		}
		if code == 401 && tc.header == "" && strings.Contains(tc.target, "/read") && (!errors.Is(err, ErrQueryToken) || !strings.Contains(err.Error(), "only on /stream")) {
			t.Errorf("%s %s: %v, want the header named and where a query token goes", tc.method, tc.target, err)
		}
	}
	// A role too small hears the hint.
	g.Hint = func(r *http.Request) string { return "--let-viewers-write" }
	r := httptest.NewRequest("POST", "/write", nil)
	r.Header.Set("Authorization", "Bearer viewer-0123456789abcdef")
	if _, code, err := g.Check(r); code != 403 || !strings.Contains(err.Error(), "--let-viewers-write") {
		t.Errorf("a viewer writing: %d %v, want 403 with the hint", code, err)
	}
	// No tokens configured: people are let in, the cluster secret is still needed.
	open := &Guard{ClusterSecret: "cluster-secret-0123456789", Need: g.Need}
	if p, code, _ := open.Check(httptest.NewRequest("POST", "/admin", nil)); code != 0 || p.Name != Anonymous {
		t.Errorf("open API: %d %+v, want the anonymous principal", code, p)
	}
	if _, code, _ := open.Check(httptest.NewRequest("POST", "/cluster", nil)); code != 401 {
		t.Errorf("open API, cluster call without the secret: %d, want 401", code)
	}
	// New tokens (a reload) count from the next request: the old viewer is unknown, the new one in.
	reloaded, err := ParseTokens(strings.NewReader("admin a admin-0123456789abcdef\nviewer w new-viewer-0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	g.SetTokens(reloaded)
	for tok, want := range map[string]int{"viewer-0123456789abcdef": 401, "new-viewer-0123456789": 0, "admin-0123456789abcdef": 0} {
		r := httptest.NewRequest("GET", "/read", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if _, code, _ := g.Check(r); code != want {
			t.Errorf("after the reload, %s: %d, want %d", tok, code, want)
		}
	}
}

// TestOpenClusterIsThisMachineOnly: without a cluster secret, cluster calls (agents registering
// and reporting) come from loopback, or with a certificate the cluster's CA signed; from
// anywhere else they are a 403 that says why and what lets other machines in.
func TestOpenClusterIsThisMachineOnly(t *testing.T) {
	g := &Guard{Need: func(*http.Request) Role { return Cluster }}
	for _, tc := range []struct {
		from     string
		verified bool
		want     int
	}{
		{"127.0.0.1:40000", false, 0},
		{"127.0.0.9:40000", false, 0},
		{"[::1]:40000", false, 0},
		{"192.0.2.7:40000", false, http.StatusForbidden},
		{"[2001:db8::7]:40000", false, http.StatusForbidden},
		{"[::ffff:192.0.2.7]:40000", false, http.StatusForbidden},
		{"192.0.2.7:40000", true, 0}, // mutual TLS vouches for it
	} {
		r := httptest.NewRequest("POST", "/v1/agents/register", nil)
		r.RemoteAddr = tc.from
		if tc.verified {
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
		}
		p, code, err := g.Check(r)
		if code != tc.want {
			t.Errorf("from %s (verified %t): %d %v, want %d", tc.from, tc.verified, code, err, tc.want)
			continue
		}
		if code == 0 && p.Name != ClusterPrincipal {
			t.Errorf("from %s: principal %+v", tc.from, p)
		}
		if code != 0 && (!errors.Is(err, ErrOpenCluster) || !strings.Contains(err.Error(), "--cluster-secret-file") || !strings.Contains(err.Error(), tc.from) ||
			!strings.Contains(err.Error(), "POST /v1/agents/register")) {
			t.Errorf("from %s: %v, want the call, the caller, why and the flag that opens it", tc.from, err)
		}
	}
	// With a secret, the secret decides, wherever the call comes from.
	g.ClusterSecret = "cluster-secret-0123456789"
	r := httptest.NewRequest("POST", "/v1/agents/register", nil)
	r.Header.Set("Authorization", "Bearer cluster-secret-0123456789")
	if _, code, err := g.Check(r); code != 0 {
		t.Errorf("the secret from %s: %d %v", r.RemoteAddr, code, err)
	}
	r = httptest.NewRequest("POST", "/v1/agents/register", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	if _, code, _ := g.Check(r); code != http.StatusUnauthorized {
		t.Errorf("no secret from loopback to a node that has one: %d, want 401", code)
	}
}

// TestMiddlewarePassesThePrincipal: a handler behind the guard knows who called.
func TestMiddlewarePassesThePrincipal(t *testing.T) {
	tokens, err := ParseTokens(strings.NewReader("operator alice operator-0123456789abc\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{Need: func(*http.Request) Role { return Operator }}
	g.SetTokens(tokens)
	var got Principal
	mux := http.NewServeMux()
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) { got, _ = PrincipalOf(r.Context()) })
	r := httptest.NewRequest("POST", "/write", nil)
	r.Header.Set("Authorization", "Bearer operator-0123456789abc")
	g.Middleware(mux).ServeHTTP(httptest.NewRecorder(), r)
	if got != (Principal{Name: "alice", Role: Operator}) {
		t.Fatalf("principal %+v, want alice the operator", got)
	}
	if r.Pattern != "POST /write" {
		t.Fatalf("the route the mux chose is %q outside the guard (request metrics read it there)", r.Pattern)
	}
	if _, ok := PrincipalOf(httptest.NewRequest("GET", "/", nil).Context()); ok {
		t.Fatal("a request that passed no guard has a principal")
	}
}
