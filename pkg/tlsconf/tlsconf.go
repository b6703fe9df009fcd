// Package tlsconf is Agora's TLS: a node's certificate and key (--tls-cert, --tls-key) and the
// CA that signs the cluster's certificates (--tls-ca). With them, masters and agents serve their
// HTTP APIs over TLS, masters speak raft over TLS, and every link between nodes verifies the
// other side against the CA: mutual TLS. Agents ask every caller for a certificate (only masters
// call them); masters ask for one but take clients without (the CLI, browsers), whom tokens
// admit. Every node of a cluster runs with TLS or none does.
//
// Operators without a CA of their own make one and the nodes' certificates with CreateCA and
// CA.Issue (`agora tls ca create`, `agora tls cert create`).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files name a node's certificate, key and CA, in PEM.
type Files struct {
	Cert, Key, CA string
}

// TLS is a node's loaded certificate and the cluster's CA.
type TLS struct {
	cert tls.Certificate
	pool *x509.CertPool // nil: no CA given (peers are verified against the system's roots)
}

// Load reads the files; all empty is no TLS (nil). A certificate needs its key.
func Load(f Files) (*TLS, error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together (and --tls-ca with them)")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	t := &TLS{cert: cert}
	if f.CA != "" {
		if t.pool, err = Pool(f.CA); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Pool reads a CA file.
func Pool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tls-ca: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// Server is the configuration of a TLS server (nil without TLS: t is nil). requireClient: every
// client must show a certificate the CA signed (agents, raft); otherwise one is checked when
// shown.
func (t *TLS) Server(requireClient bool) *tls.Config {
	if t == nil {
		return nil
	}
	c := &tls.Config{Certificates: []tls.Certificate{t.cert}, MinVersion: tls.VersionTLS12}
	if t.pool != nil {
		c.ClientCAs = t.pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if requireClient {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return c
}

// Client is the configuration of a link to another node (nil without TLS: t is nil): it
// verifies the server against the CA and shows this node's certificate.
func (t *TLS) Client() *tls.Config {
	if t == nil {
		return nil
	}
	return &tls.Config{Certificates: []tls.Certificate{t.cert}, RootCAs: t.pool, MinVersion: tls.VersionTLS12}
}

// Mutual says whether peers are asked for a certificate the cluster's CA signed (--tls-ca).
func (t *TLS) Mutual() bool { return t != nil && t.pool != nil }

// Scheme is "https" with TLS, "http" without.
func (t *TLS) Scheme() string {
	if t == nil {
		return "http"
	}
	return "https"
}
