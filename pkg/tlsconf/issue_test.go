package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T, validFor time.Duration) (*CA, []byte, []byte) {
	t.Helper()
	certPEM, keyPEM, err := CreateCA("test CA", validFor)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca, certPEM, keyPEM
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestIssuedCertificatesVerifyForTheirHostsOnly: a node certificate verifies against its CA, as a
// server by each name and address it was made for and as a client, and for no other name; a
// certificate of another CA does not verify.
func TestIssuedCertificatesVerifyForTheirHostsOnly(t *testing.T) {
	ca, caPEM, _ := newCA(t, 365*24*time.Hour)
	certPEM, keyPEM, err := ca.Issue("m1", []string{"m1.example.org", "10.0.0.1", "localhost", "127.0.0.1"}, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("the certificate and its key do not go together: %v", err)
	}
	cert := parseCert(t, certPEM)
	if d := time.Until(cert.NotAfter); d < 89*24*time.Hour || d > 90*24*time.Hour {
		t.Errorf("valid for %v more, want 90 days", d)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"m1.example.org", "10.0.0.1", "localhost", "127.0.0.1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("as %s for usage %v: %v", name, usage, err)
			}
		}
	}
	for _, name := range []string{"m2.example.org", "10.0.0.2"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err == nil {
			t.Errorf("verified as %s, which it was not made for", name)
		}
	}
	other, _, _ := newCA(t, time.Hour)
	otherPEM, _, err := other.Issue("m1", []string{"m1.example.org"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseCert(t, otherPEM).Verify(x509.VerifyOptions{Roots: pool, DNSName: "m1.example.org"}); err == nil {
		t.Error("a certificate of another CA verified")
	}
}

// TestIssuedCertificatesMakeMutualTLS: two nodes with certificates of one CA, configured as Agora
// configures them (Load, Server requiring a client certificate, Client), shake hands.
func TestIssuedCertificatesMakeMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caPEM, _ := newCA(t, time.Hour)
	files := func(name string) Files {
		certPEM, keyPEM, err := ca.Issue(name, []string{"127.0.0.1"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
		os.WriteFile(f.CA, caPEM, 0o644)
		if err := WriteNew(f.Cert, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteNew(f.Key, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	serverTLS, err := Load(files("master"))
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := Load(files("agent"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	server := tls.Server(a, serverTLS.Server(true))
	cc := clientTLS.Client()
	cc.ServerName = "127.0.0.1"
	client := tls.Client(b, cc)
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
	if peer := server.ConnectionState().PeerCertificates; len(peer) == 0 || peer[0].Subject.CommonName != "agent" {
		t.Fatalf("the server saw client certificate %v, want the agent's", peer)
	}
}

// TestCARefusesWhatItCannotDo names the problem: a key of another CA, a certificate that is not a
// CA's, a node certificate naming no host (one asked for past its CA ends with it), an existing file.
func TestCARefusesWhatItCannotDo(t *testing.T) {
	ca, caPEM, _ := newCA(t, time.Hour)
	_, _, otherKey := newCA(t, time.Hour)
	if _, err := ParseCA(caPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("another CA's key: %v", err)
	}
	leafPEM, leafKey, err := ca.Issue("node", []string{"localhost"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(leafPEM, leafKey); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("a node certificate as CA: %v", err)
	}
	if _, err := ParseCA(leafKey, leafKey); err == nil {
		t.Error("a key as a certificate was taken")
	}
	long, _, err := ca.Issue("node", []string{"localhost"}, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if end := parseCert(t, long).NotAfter; !end.Equal(ca.Cert.NotAfter) || !ca.Until(2*time.Hour).Equal(end) {
		t.Errorf("a certificate asked for past its CA ends %v (Until says %v), want the CA's end %v", end, ca.Until(2*time.Hour), ca.Cert.NotAfter)
	}
	if _, _, err := ca.Issue("node", nil, time.Minute); err == nil || !strings.Contains(err.Error(), "at least one host") {
		t.Errorf("no host: %v", err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := WriteNew(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(path, []byte("second"), 0o600); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("overwrite: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "first" {
		t.Errorf("the file holds %q after a refused write", data)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
}
