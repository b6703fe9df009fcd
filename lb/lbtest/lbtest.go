// Package lbtest helps the tests of agora lb (lb, and cmd/agora's end-to-end test): it finds
// HAProxy and asks it as a client would. Only tests import it.
package lbtest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// HAProxy is the haproxy program (Debian's haproxy; scripts/netdeps.sh installs it): a test
// without it skips, and fails where CI=true.
func HAProxy(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("haproxy")
	if err == nil {
		return p
	}
	msg := "needs haproxy (scripts/netdeps.sh installs Debian's haproxy): " + err.Error()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Get asks 127.0.0.1:port for / with Host host, on a new connection as curl does: the status
// and the body, or an error.
func Get(port int, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
