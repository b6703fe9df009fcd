package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/chaos/netem"
)

// TestNetworkCutsOneWay: in network mode, hosts reach each other and the harness reaches
// them; a cut drops one direction only, its heal restores it; the namespaces are gone after
// the test.
func TestNetworkCutsOneWay(t *testing.T) {
	requireNetwork(t)
	var prefix string
	t.Run("network", func(t *testing.T) {
		nw := newNetwork(t, 2, 0)
		prefix = nw.prefix
		m1, m2 := listenUDP(t, nw, "m1"), listenUDP(t, nw, "m2")
		send := func(from, token string, to net.PacketConn) {
			t.Helper()
			if err := netem.InNamespace(nw.ns(from), func() error {
				c, err := net.Dial("udp", to.LocalAddr().String())
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte(token))
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		// arrives says whether a packet of from reaches to within d (sent every 50 ms, each
		// check's packets told apart from earlier ones').
		seq := 0
		arrives := func(from string, to net.PacketConn, d time.Duration) bool {
			t.Helper()
			seq++
			token := fmt.Sprintf("%s-%d", from, seq)
			got := make(chan bool, 1)
			go func() {
				buf := make([]byte, 16)
				to.SetReadDeadline(time.Now().Add(d))
				for {
					n, _, err := to.ReadFrom(buf)
					if err != nil {
						got <- false
						return
					}
					if string(buf[:n]) == token {
						got <- true
						return
					}
				}
			}()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case ok := <-got:
					return ok
				case <-tick.C:
					send(from, token, to)
				}
			}
		}
		if !arrives("m1", m2, 5*time.Second) || !arrives("m2", m1, 5*time.Second) {
			t.Fatal("m1 and m2 do not reach each other before any fault")
		}
		heal, err := nw.drop([]string{"m1"}, []string{"m2"}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if arrives("m1", m2, time.Second) {
			t.Error("m1's packets reach m2 through the cut m1 → m2")
		}
		if !arrives("m2", m1, 5*time.Second) {
			t.Error("m2's packets do not reach m1, though only m1 → m2 is cut")
		}
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		if !arrives("m1", m2, 5*time.Second) {
			t.Error("m1's packets do not reach m2 after the healing")
		}
		// The harness's client reaches a host's TCP listener.
		var ln net.Listener
		if err := netem.InNamespace(nw.ns("m1"), func() (err error) { ln, err = net.Listen("tcp", nw.hosts["m1"].String()+":0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := nw.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("the client's namespace does not reach m1: %v", err)
		}
		c.Close()
		// Nothing of this exists in the host's network.
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s is reachable from the host's network", ln.Addr())
		}
	})
	entries, _ := os.ReadDir(netem.NetnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			t.Errorf("network namespace %s left after the test", e.Name())
		}
	}
}

func listenUDP(t *testing.T, nw *network, h string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := netem.InNamespace(nw.ns(h), func() (err error) { pc, err = net.ListenPacket("udp", nw.hosts[h].String()+":0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}
