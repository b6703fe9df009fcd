// Package auth is Agora's access control: API tokens with roles for people and frameworks, and
// the cluster secret that masters and agents show each other.
//
// Tokens live in a file each master reads at start and again on SIGHUP (--tokens-file), one per
// line:
//
//	# ROLE      NAME    TOKEN
//	admin       alice   3f1c...   (everything)
//	operator    ci      9a7e...   (apps, jobs, tasks, deployments, the scheduler API)
//	viewer      grafana 77b0...   (reads)
//
// A request carries its token as "Authorization: Bearer TOKEN"; only the GETs the guard's
// QueryToken names (streams a browser's EventSource opens, which cannot set headers) may carry
// it as ?access_token=TOKEN instead. Tokens are kept only as SHA-256 digests and compared by
// digest, so their length and content do not show in timing.
//
// The guard puts who a request is (a Principal) into its context; PrincipalOf reads it. A
// token's name is its principal. Callers without a token of their own get a reserved name no
// token may have: Anonymous on an open API, ClusterPrincipal for the cluster secret; Embedded is
// the frameworks built into the master, which subscribe inside the process.
//
// The cluster secret (--cluster-secret-file on masters and agents) is the Cluster role: agents
// register and report with it, masters launch, kill and read logs on agents with it, and gossip
// is encrypted with a key derived from it, so a node without it cannot join. A node without
// one is an open cluster to its own machine only: cluster calls are taken from loopback (or
// with a client certificate the cluster's CA signed), and refused with 403 from anywhere else
// (ErrOpenCluster), since whoever reaches the API could register an agent or report tasks.
package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/agora-sched/agora/pkg/httpjson"
)

// Role is what a token may do. Each role may do what the ones before it may.
type Role int

// Roles, from least to most.
const (
	Open     Role = iota // no token needed
	Viewer               // reads
	Operator             // apps, jobs, tasks, deployments, frameworks
	Admin                // everything: secrets, agents, masters
	Cluster              // masters and agents among themselves (the cluster secret)
)

var roleNames = map[Role]string{Open: "open", Viewer: "viewer", Operator: "operator", Admin: "admin", Cluster: "cluster"}

func (r Role) String() string { return roleNames[r] }

// ParseRole reads a role of the tokens file.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Viewer, nil
	case "operator":
		return Operator, nil
	case "admin":
		return Admin, nil
	}
	return 0, fmt.Errorf("unknown role %q (admin, operator or viewer)", s)
}

// may says whether have is enough for need. The cluster secret may do what an admin may; a
// person's token never does what only the cluster may.
func may(have, need Role) bool {
	if need == Cluster {
		return have == Cluster
	}
	return have >= need
}

// Principal is who a token belongs to.
type Principal struct {
	Name string
	Role Role
}

// Reserved principals: no token may be named so (ParseTokens refuses them and any name with
// ':').
const (
	Anonymous        = "anonymous"      // every caller of an open API (no tokens)
	ClusterPrincipal = "cluster"        // whoever shows the cluster secret
	Embedded         = "agora:embedded" // the embedded frameworks, subscribing inside the master
)

// reservedName says why a tokens file may not name a token name ("" when it may).
func reservedName(name string) string {
	switch {
	case strings.Contains(name, ":"):
		return "contains ':' (names with ':' are Agora's own)"
	case name == Anonymous:
		return "is reserved: it is every caller of an open API"
	case name == ClusterPrincipal:
		return "is reserved: it is whoever shows the cluster secret"
	}
	return ""
}

type principalKey struct{}

// WithPrincipal is ctx carrying who the request is.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalOf is who the guard found a request to be (false: it did not pass a guard).
func PrincipalOf(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Tokens are the known tokens by their digest.
type Tokens struct {
	byDigest map[[sha256.Size]byte]Principal
}

// Len is how many tokens there are.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.byDigest)
}

// LoadTokens reads a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads lines of ROLE NAME TOKEN; # starts a comment. A token shorter than 16
// characters, a repeated token or name, a reserved name (one with ':', "anonymous", "cluster")
// or an unknown role is an error naming its line.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{byDigest: map[[sha256.Size]byte]Principal{}}
	names := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want ROLE NAME TOKEN, got %d fields", n, len(fields))
		}
		role, err := ParseRole(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		name, token := fields[1], fields[2]
		if why := reservedName(name); why != "" {
			return nil, fmt.Errorf("line %d: the name %s %s", n, name, why)
		}
		if len(token) < 16 {
			return nil, fmt.Errorf("line %d: the token of %s is shorter than 16 characters", n, name)
		}
		d := sha256.Sum256([]byte(token))
		if _, dup := t.byDigest[d]; dup {
			return nil, fmt.Errorf("line %d: the token of %s is used twice", n, name)
		}
		if names[name] {
			return nil, fmt.Errorf("line %d: the name %s is used twice", n, name)
		}
		names[name] = true
		t.byDigest[d] = Principal{Name: name, Role: role}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// ReadSecretFile reads a cluster secret: the file's first line, at least 16 characters.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cluster secret: %w", err)
	}
	secret, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(strings.TrimSpace(secret)) < 16 {
		return "", fmt.Errorf("cluster secret %s: shorter than 16 characters", path)
	}
	return strings.TrimSpace(secret), nil
}

// GossipKey is the memberlist encryption key (AES-256) derived from the cluster secret; nil
// (gossip unencrypted) without a secret.
func GossipKey(secret string) []byte {
	if secret == "" {
		return nil
	}
	k := sha256.Sum256([]byte("agora gossip key\x00" + secret))
	return k[:]
}

// TokenOf is the token of a request's "Authorization: Bearer T" header ("" without one).
func TokenOf(r *http.Request) string {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(tok)
}

// queryToken is a request's ?access_token= when it has no Authorization header, and whether it
// has one.
func queryToken(r *http.Request) (string, bool) {
	if r.Header.Get("Authorization") != "" {
		return "", false
	}
	q := r.URL.Query()
	return q.Get("access_token"), q.Has("access_token")
}

// Guard checks requests against tokens and the cluster secret.
type Guard struct {
	// ClusterSecret, when set, is needed for what only the cluster may do.
	ClusterSecret string
	// Need says what role a request needs.
	Need func(r *http.Request) Role
	// QueryToken says which GET requests may carry their token as ?access_token= (streams a
	// browser's EventSource opens: it cannot set headers); nil: none. QueryTokenWhere names
	// them in the 401 that refuses a query token anywhere else.
	QueryToken      func(r *http.Request) bool
	QueryTokenWhere string
	// Hint, when set, adds to a 403 what would let the caller in (a flag of the node, say); ""
	// adds nothing.
	Hint func(r *http.Request) string

	tokens atomic.Pointer[Tokens] // nil or empty: people need no token (the API is open)
}

// SetTokens makes t the tokens the guard admits from the next request on (a reload of the tokens
// file: requests under way keep the answer they had).
func (g *Guard) SetTokens(t *Tokens) { g.tokens.Store(t) }

// ErrNoToken, ErrBadToken, ErrQueryToken and ErrOpenCluster are the reasons a request is not
// let in.
var (
	// ErrOpenCluster: a cluster call (an agent's registration or status update) from beyond
	// this machine to a node without a cluster secret, where whoever reaches the API could
	// register an agent that takes tasks and never runs them, or report tasks' states.
	ErrOpenCluster = errors.New("this cluster has no cluster secret, so agents may register and report from this machine (loopback) only; " +
		"give the masters and agents the same --cluster-secret-file (or mutual TLS: --tls-cert, --tls-key, --tls-ca) to take agents of other machines")
	ErrNoToken    = errors.New("this API needs a token: send 'Authorization: Bearer TOKEN' (agora --token or AGORA_TOKEN)")
	ErrBadToken   = errors.New("the token is not known")
	ErrQueryToken = errors.New("send 'Authorization: Bearer TOKEN'")
)

// Check says who the request is, or why it may not do what it asks: 401 for a missing or
// unknown token or a query token where none is taken, 403 for a role too small.
func (g *Guard) Check(r *http.Request) (Principal, int, error) {
	need := g.Need(r)
	if need == Open {
		return Principal{Role: Open}, 0, nil
	}
	tok := TokenOf(r)
	if qt, ok := queryToken(r); ok {
		if r.Method != http.MethodGet || g.QueryToken == nil || !g.QueryToken(r) {
			where := "nowhere on this node"
			if g.QueryTokenWhere != "" {
				where = "only on " + g.QueryTokenWhere
			}
			return Principal{}, http.StatusUnauthorized, fmt.Errorf("%w; ?access_token= is accepted %s", ErrQueryToken, where)
		}
		tok = qt
	}
	if g.ClusterSecret != "" && tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(g.ClusterSecret)) == 1 {
		return Principal{Name: ClusterPrincipal, Role: Cluster}, 0, nil
	}
	if need == Cluster {
		if g.ClusterSecret == "" {
			// No secret configured: the cluster is open, to this machine (or to the peers
			// mutual TLS vouches for).
			if !FromLoopback(r) && !verifiedPeer(r) {
				return Principal{}, http.StatusForbidden, fmt.Errorf("%s %s from %s: %w", r.Method, r.URL.Path, r.RemoteAddr, ErrOpenCluster)
			}
			return Principal{Name: ClusterPrincipal, Role: Cluster}, 0, nil
		}
		what := r.Method + " " + r.URL.Path + " needs the cluster secret (--cluster-secret-file): only masters and agents may call it"
		if tok == "" {
			return Principal{}, http.StatusUnauthorized, errors.New(what)
		}
		return Principal{}, http.StatusForbidden, errors.New(what)
	}
	tokens := g.tokens.Load()
	if tokens.Len() == 0 {
		return Principal{Name: Anonymous, Role: Admin}, 0, nil // open: no tokens configured
	}
	if tok == "" {
		return Principal{}, http.StatusUnauthorized, ErrNoToken
	}
	p, ok := tokens.byDigest[sha256.Sum256([]byte(tok))]
	if !ok {
		return Principal{}, http.StatusUnauthorized, ErrBadToken
	}
	if !may(p.Role, need) {
		msg := fmt.Sprintf("%s's token is %s; %s %s needs %s", p.Name, p.Role, r.Method, r.URL.Path, need)
		if g.Hint != nil {
			if h := g.Hint(r); h != "" {
				msg += " (" + h + ")"
			}
		}
		return p, http.StatusForbidden, errors.New(msg)
	}
	return p, 0, nil
}

// Middleware answers 401 or 403 (JSON, naming what is needed) for a request the guard refuses,
// and passes the others on with their principal in the context (PrincipalOf).
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, code, err := g.Check(r)
		if err != nil {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="agora"`)
			}
			httpjson.Error(w, code, err.Error())
			return
		}
		withP := r.WithContext(WithPrincipal(r.Context(), p))
		next.ServeHTTP(w, withP)
		r.Pattern = withP.Pattern // the mux names the route on the copy; wrappers outside read it here
	})
}

// FromLoopback says whether a request came from a loopback address (this machine).
func FromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// verifiedPeer says whether a request came with a client certificate the node's CA signed.
func verifiedPeer(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// Loopback says whether a host:port listens on loopback only.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}
