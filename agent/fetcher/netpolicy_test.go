package fetcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/agora-sched/agora/agent/fetcher/fetchertest"
	"github.com/agora-sched/agora/pkg/api"
)

// TestDownloadsKeepToThePublicInternet: an agent's fetcher, as it comes, connects to no
// loopback, link-local (cloud metadata), private or other non-public address — not by IP, not
// by a name that resolves to one, not through a redirect from a network it was allowed — and
// its error names the flag that allows the address; an allowed network is fetched from.
func TestDownloadsKeepToThePublicInternet(t *testing.T) {
	secret := fetchertest.NewServer(t, map[string][]byte{"/token": []byte("the agent's secret")})
	ctx := context.Background()

	f, err := New(Config{}) // no AllowNets: what an agent started without --fetch-allow-net has
	if err != nil {
		t.Fatal(err)
	}
	port := secret.Listener.Addr().(*net.TCPAddr).Port
	for _, uri := range []string{secret.URL + "/token", fmt.Sprintf("http://localhost:%d/token", port)} {
		err := f.Fetch(ctx, t.TempDir(), []api.Artifact{{URI: uri}})
		if err == nil || !strings.Contains(err.Error(), "is a loopback address") || !strings.Contains(err.Error(), "--fetch-allow-net 127.0.0.1/32") && !strings.Contains(err.Error(), "--fetch-allow-net ::1/128") {
			t.Errorf("fetch %s by default: %v, want a refusal naming --fetch-allow-net", uri, err)
		}
	}

	// A server on another loopback address, allowed, that redirects to the one not allowed.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	redirector := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fine" {
			w.Write([]byte("allowed"))
			return
		}
		http.Redirect(w, r, secret.URL+"/token", http.StatusFound)
	}))
	redirector.Listener.Close()
	redirector.Listener = l
	redirector.Start()
	t.Cleanup(redirector.Close)
	g, err := New(Config{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := g.Fetch(ctx, dir, []api.Artifact{{URI: redirector.URL + "/fine"}}); err != nil {
		t.Fatalf("fetch from an allowed network: %v", err)
	}
	if got := read(t, dir+"/fine"); got != "allowed" {
		t.Errorf("fetched %q from the allowed network", got)
	}
	err = g.Fetch(ctx, t.TempDir(), []api.Artifact{{URI: redirector.URL + "/go-elsewhere"}})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
		t.Errorf("redirect to a network not allowed: %v, want refused", err)
	}
	if n := secret.Count("/token"); n != 0 {
		t.Errorf("the server nobody allowed was asked %d times", n)
	}
}

// TestWhatIsNotThePublicInternet: the ranges refused by default, IPv4-mapped forms included,
// and public addresses let through.
func TestWhatIsNotThePublicInternet(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1", "10.1.2.3", "172.16.0.1",
		"192.168.1.1", "fd00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "240.0.0.1", "198.18.0.1"} {
		if notPublic(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s taken for a public address", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.4.4", "172.32.0.1", "100.128.0.1"} {
		if what := notPublic(netip.MustParseAddr(s)); what != "" {
			t.Errorf("%s taken for %s", s, what)
		}
	}
	got, err := ParseNets([]string{"10.0.0.0/8", "10.1.2.3", "fd00::/8", "::ffff:192.168.0.0/112"})
	if err != nil || len(got) != 4 || got[1].String() != "10.1.2.3/32" || got[3].String() != "192.168.0.0/16" {
		t.Errorf("ParseNets: %v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.1/8", "intranet", ""} {
		if _, err := ParseNets([]string{bad}); err == nil {
			t.Errorf("ParseNets(%q) accepted", bad)
		}
	}
}
