package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// A cluster's own CA, for operators without one (`agora tls ca create`, `agora tls cert create`):
// ECDSA P-256 keys, random 128-bit serial numbers, and node certificates good for both ends of a
// link (server and client auth), since every node is both in mutual TLS.

// CA signs node certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// backdate lets a certificate be valid on machines whose clocks are a little behind.
const backdate = 5 * time.Minute

// CreateCA makes a new CA valid for validFor, and returns its certificate and key in PEM.
func CreateCA(commonName string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, errors.New("a CA must be valid for some time")
	}
	now := time.Now()
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-backdate), NotAfter: now.Add(validFor),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	return create(tmpl, nil, nil)
}

// create makes a new key and the certificate of tmpl for it, signed by parent's key (nil
// parent: by the new key itself), both in PEM.
func create(tmpl, parent *x509.Certificate, parentKey crypto.Signer) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// ParseCA reads a CA's certificate and key (PEM) and checks that they belong together and that
// the certificate may sign others.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the CA certificate is not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("the certificate of %q is not a CA's: it may not sign certificates", cert.Subject.CommonName)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("the CA key is not PEM")
	}
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("the CA key is a PEM %q, not a private key", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the CA key cannot sign")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("the CA key does not belong to the certificate of %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// LoadCA reads ParseCA's input from files.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	return ParseCA(certPEM, keyPEM)
}

// Issue makes a node certificate for the names and IP addresses in hosts (its subject alternative
// names: what others dial the node by), valid for validFor but never past the CA's end (Until says
// when), for servers and clients alike. It returns the certificate and a new key in PEM.
func (ca *CA) Issue(commonName string, hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	now := time.Now()
	notAfter := now.Add(validFor)
	switch {
	case validFor <= 0:
		return nil, nil, errors.New("a certificate must be valid for some time")
	case len(hosts) == 0:
		return nil, nil, errors.New("a node certificate names at least one host or IP address")
	case now.After(ca.Cert.NotAfter):
		return nil, nil, fmt.Errorf("the CA expired on %s", ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter // a certificate is worth nothing past its CA
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: commonName},
		NotBefore: now.Add(-backdate), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return create(tmpl, ca.Cert, ca.Key)
}

// Until is when a certificate Issue makes for validFor from now ends.
func (ca *CA) Until(validFor time.Duration) time.Time {
	if end := time.Now().Add(validFor); end.Before(ca.Cert.NotAfter) {
		return end
	}
	return ca.Cert.NotAfter
}

// WriteNew writes a file that must not exist yet: certificates and keys are never overwritten by
// accident. Keys get mode 0600.
func WriteNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; move it away or choose another name", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
