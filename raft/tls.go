package raft

import (
	"crypto/tls"
	"net"
	"time"

	hraft "github.com/hashicorp/raft"
)

// tlsLayer is raft's stream layer over TLS: a TCP listener whose connections are TLS servers,
// and TLS dials to the other masters.
type tlsLayer struct {
	net.Listener
	adv    net.Addr
	client *tls.Config
}

func newTLSLayer(bind string, adv net.Addr, server, client *tls.Config) (*tlsLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if adv == nil { // port 0: advertise what the listener got
		adv = ln.Addr()
	}
	return &tlsLayer{Listener: tls.NewListener(ln, server), adv: adv, client: client}, nil
}

// Addr is the address other masters dial.
func (l *tlsLayer) Addr() net.Addr { return l.adv }

// Dial opens a TLS connection to another master, handshake included, within timeout.
func (l *tlsLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), l.client)
}
