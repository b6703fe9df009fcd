package tlsconf

import (
	"path/filepath"
	"time"
)

// WriteTestCA writes a new CA and one certificate it signs, for every name and IP given (as
// subject alternative names; the certificate is good for servers and clients), into dir: for
// tests, and for trying TLS on one machine. Production certificates come from your own CA or
// from `agora tls ca create` and `agora tls cert create`.
func WriteTestCA(dir string, hosts ...string) (Files, error) {
	caPEM, caKeyPEM, err := CreateCA("agora test CA", 24*time.Hour)
	if err != nil {
		return Files{}, err
	}
	ca, err := ParseCA(caPEM, caKeyPEM)
	if err != nil {
		return Files{}, err
	}
	certPEM, keyPEM, err := ca.Issue("agora node", hosts, 12*time.Hour)
	if err != nil {
		return Files{}, err
	}
	f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem")}
	for path, data := range map[string][]byte{f.CA: caPEM, f.Cert: certPEM, f.Key: keyPEM} {
		if err := WriteNew(path, data, 0o600); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}
