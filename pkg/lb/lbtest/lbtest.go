// Package lbtest helps the tests of agora lb (lb, and cmd/agora's end-to-end test): it finds
// HAProxy and asks it as a client would. Only tests import it.
package lbtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
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

// Loop is a bounded loop of requests through HAProxy, run while something changes behind it.
type Loop struct {
	total, failed atomic.Int32
	stop, done    chan struct{}
}

// loopEvery paces a Loop: a request every 5 ms at the most (200 a second), dense enough to meet
// any moment HAProxy has no live server, light enough to leave the machine's cores to the tests
// and scenarios that run beside (an unpaced loop took a core of two).
const loopEvery = 5 * time.Millisecond

// StartLoop asks Get(port, host) again and again, every loopEvery at the most — at most n
// times, for at most d, until Stop — and fails t for each answer ok refuses.
func StartLoop(t testing.TB, port int, host string, n int32, d time.Duration, ok func(code int, body string, err error) bool) *Loop {
	l := &Loop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(loopEvery)
		defer tick.Stop()
		for deadline := time.Now().Add(d); time.Now().Before(deadline) && l.total.Load() < n; {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			code, body, err := Get(port, host)
			l.total.Add(1)
			if !ok(code, body, err) {
				l.failed.Add(1)
				t.Errorf("request %d: %d %q %v", l.total.Load(), code, body, err)
			}
		}
	}()
	return l
}

// Total is how many requests the loop has made so far.
func (l *Loop) Total() int32 { return l.total.Load() }

// Stop ends the loop and answers how many requests it made and how many failed.
func (l *Loop) Stop() (total, failed int32) {
	close(l.stop)
	<-l.done
	return l.total.Load(), l.failed.Load()
}

// FreePort is a loopback port no one listens on now (from the kernel's ephemeral range): for
// HAProxy's frontends, which tests must never put on a fixed port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
