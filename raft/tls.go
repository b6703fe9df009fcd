package raft

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/agora-sched/agora/pkg/faultnet"
)

// netLayer is raft's stream layer when it needs more than hashicorp/raft's TCP transport: TLS
// (the listener's connections are TLS servers, dials are TLS clients) and, for the chaos
// harness, a faultnet.Switch that can cut the master off.
type netLayer struct {
	net.Listener
	adv    net.Addr
	client *tls.Config      // nil: plain TCP
	faults *faultnet.Switch // nil: no fault injection
}

func newNetLayer(bind string, adv net.Addr, server, client *tls.Config, faults *faultnet.Switch) (*netLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if adv == nil { // port 0: advertise what the listener got
		adv = ln.Addr()
	}
	ln = faults.Listener(ln)
	if server != nil {
		ln = tls.NewListener(ln, server)
	}
	return &netLayer{Listener: ln, adv: adv, client: client, faults: faults}, nil
}

// Addr is the address other masters dial.
func (l *netLayer) Addr() net.Addr { return l.adv }

// Dial opens a connection to another master, the TLS handshake included, within timeout.
func (l *netLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.faults.DialContext(ctx, "tcp", string(address)) // a nil switch just dials
	if err != nil || l.client == nil {
		return c, err
	}
	conf := l.client.Clone()
	if host, _, err := net.SplitHostPort(string(address)); err == nil && conf.ServerName == "" {
		conf.ServerName = host
	}
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
