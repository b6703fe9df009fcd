package auth

import (
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
