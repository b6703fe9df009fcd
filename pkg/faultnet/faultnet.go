// Package faultnet cuts a process off its peers on demand, for the chaos harness: raft's stream
// layer, gossip's transport and the HTTP transport to other nodes consult a Switch. Cut, the
// process neither dials nor accepts raft connections (those open are closed), drops gossip
// packets both ways, refuses gossip streams, and fails its own HTTP calls to other nodes;
// clients still reach its API. Only `agora master --chaos-faults` (a hidden flag) turns it on.
package faultnet

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrCut is what a dial or write answers while the switch is cut.
var ErrCut = errors.New("faultnet: cut off the network (fault injection)")

// Switch is on (cut) or off.
type Switch struct {
	cut   atomic.Bool
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Cut cuts the process off (true) or heals it (false). Cutting closes every tracked connection.
func (s *Switch) Cut(on bool) {
	s.cut.Store(on)
	if !on {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// IsCut says whether the process is cut off.
func (s *Switch) IsCut() bool { return s != nil && s.cut.Load() }

func (s *Switch) track(c net.Conn) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return &trackedConn{Conn: c, s: s}
}

type trackedConn struct {
	net.Conn
	s *Switch
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c.Conn)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// Listener closes what it accepts while cut, and tracks the rest; a nil switch (no fault
// injection) leaves ln as it is.
func (s *Switch) Listener(ln net.Listener) net.Listener {
	if s == nil {
		return ln
	}
	return &listener{Listener: ln, s: s}
}

type listener struct {
	net.Listener
	s *Switch
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.IsCut() {
			c.Close()
			continue
		}
		return l.s.track(c), nil
	}
}

// DialContext dials unless cut, and tracks the connection; a nil switch just dials.
func (s *Switch) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.IsCut() {
		return nil, ErrCut
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil || s == nil {
		return c, err
	}
	return s.track(c), nil
}

// Transport wraps a memberlist transport: while cut, packets are dropped both ways and streams
// refused.
func (s *Switch) Transport(t memberlist.Transport) memberlist.Transport {
	w := &transport{Transport: t, s: s, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), stop: make(chan struct{})}
	go w.forward()
	return w
}

type transport struct {
	memberlist.Transport
	s       *Switch
	packets chan *memberlist.Packet
	streams chan net.Conn
	stop    chan struct{}
	once    sync.Once
}

func (t *transport) forward() {
	for {
		select {
		case p := <-t.Transport.PacketCh():
			if t.s.IsCut() {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.stop:
				return
			}
		case c := <-t.Transport.StreamCh():
			if t.s.IsCut() {
				c.Close()
				continue
			}
			select {
			case t.streams <- c:
			case <-t.stop:
				c.Close()
				return
			}
		case <-t.stop:
			return
		}
	}
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *transport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.s.IsCut() {
		return time.Now(), nil // sent into the void, as on a cut network
	}
	return t.Transport.WriteTo(b, addr)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.s.IsCut() {
		return nil, ErrCut
	}
	return t.Transport.DialTimeout(addr, timeout)
}

// Shutdown stops forwarding and shuts the wrapped transport down. Its listeners block handing
// over each packet or stream until someone takes it, and wait for that before they exit, so
// what still arrives is taken and dropped until the wrapped Shutdown has returned.
func (t *transport) Shutdown() error {
	t.once.Do(func() { close(t.stop) })
	stopped := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-t.Transport.PacketCh():
			case c := <-t.Transport.StreamCh():
				c.Close()
			case <-stopped:
				return
			}
		}
	}()
	err := t.Transport.Shutdown()
	close(stopped)
	<-drained
	return err
}
