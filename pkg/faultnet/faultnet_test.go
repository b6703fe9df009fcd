package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
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
