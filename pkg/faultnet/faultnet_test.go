package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestSwitchCutsConnections: cut, dials fail, accepted connections are closed at once, and the
// connections open before the cut are closed; healed, all works again.
func TestSwitchCutsConnections(t *testing.T) {
	var s Switch
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := s.Listener(raw)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	ctx := context.Background()
	before, err := s.DialContext(ctx, "tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted

	s.Cut(true)
	if _, err := s.DialContext(ctx, "tcp", raw.Addr().String()); !errors.Is(err, ErrCut) {
		t.Fatalf("dial while cut: %v, want ErrCut", err)
	}
	before.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := before.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection opened before the cut still reads")
	}
	server.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Fatal("the accepted side of that connection still reads")
	}
	plain, err := net.Dial("tcp", raw.Addr().String()) // from outside the switch
	if err != nil {
		t.Fatal(err)
	}
	plain.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := plain.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection accepted while cut: %v, want it closed (EOF)", err)
	}

	s.Cut(false)
	after, err := s.DialContext(ctx, "tcp", raw.Addr().String())
	if err != nil {
		t.Fatalf("dial after healing: %v", err)
	}
	defer after.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("a connection after healing was not accepted")
	}
}

// TestShutdownWhilePacketsArrive: a gossip transport shut down while packets and streams keep
// arriving returns promptly. The wrapped transport's listeners block handing over what arrives
// until someone takes it, so the wrapper must keep taking it until they have stopped.
func TestShutdownWhilePacketsArrive(t *testing.T) {
	for round := range 20 {
		inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		var s Switch
		tr := s.Transport(inner)
		addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: inner.GetAutoBindPort()}
		stop := make(chan struct{})
		flooded := make(chan struct{})
		go func() {
			defer close(flooded)
			c, err := net.DialUDP("udp", nil, addr)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Write([]byte("ping"))
				if tc, err := net.Dial("tcp", addr.String()); err == nil {
					tc.Close()
				}
			}
		}()
		// Nobody reads tr's channels, as when memberlist has stopped listening: what arrives
		// queues up in the wrapped transport's listeners.
		time.Sleep(20 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- tr.Shutdown() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Shutdown did not return in 10 s with packets arriving", round)
		}
		close(stop)
		<-flooded
	}
}
