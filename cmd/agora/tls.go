package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/tlsconf"
)

// The file names `agora tls` writes and reads by default.
const (
	caCertFile = "agora-ca.pem"
	caKeyFile  = "agora-ca-key.pem"
)

var certName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// tlsCommand makes a cluster's own CA and its nodes' certificates, for operators without a CA of
// their own: the files --tls-cert, --tls-key and --tls-ca read.
func tlsCommand() *cli.Command {
	dir := &cli.StringFlag{Name: "dir", Value: ".", Usage: "the folder to write the files into"}
	days := func(def int) *cli.IntFlag {
		return &cli.IntFlag{Name: "days", Value: def, Usage: "how many days the certificate is valid"}
	}
	return &cli.Command{
		Name:  "tls",
		Usage: "make a CA for the cluster and certificates for its masters and agents (mutual TLS)",
		Description: "Make the CA once, on a machine outside the cluster, and keep its key there; make one\n" +
			"certificate per node, naming every host name and IP address others reach it by, and copy\n" +
			"the certificate, its key and agora-ca.pem to the node.\n\n" +
			examples("agora tls ca create",
				"agora tls cert create m1 --host m1.example.org --host 10.0.0.11",
				"agora master --tls-cert m1.pem --tls-key m1-key.pem --tls-ca agora-ca.pem ..."),
		Subcommands: []*cli.Command{
			{
				Name:        "ca",
				Usage:       "the cluster's certificate authority",
				Description: examples("agora tls ca create --dir /etc/agora/tls"),
				Subcommands: []*cli.Command{{
					Name:        "create",
					Usage:       "make a new CA: " + caCertFile + " (give it to every node and client) and " + caKeyFile + " (keep it safe)",
					Description: examples("agora tls ca create", "agora tls ca create --dir /etc/agora/tls --days 3650 --name 'ACME cluster CA'"),
					Flags: []cli.Flag{dir, days(5 * 365),
						&cli.StringFlag{Name: "name", Value: "Agora cluster CA", Usage: "the CA's common name"}},
					Action: tlsCACreate,
				}},
			},
			{
				Name:        "cert",
				Usage:       "a node's certificate",
				Description: examples("agora tls cert create m1 --host m1.example.org --host 10.0.0.11"),
				Subcommands: []*cli.Command{{
					Name:      "create",
					Usage:     "make a certificate and key for a master or agent, signed by the CA: NAME.pem and NAME-key.pem",
					ArgsUsage: "NAME",
					Description: "The certificate is good for both ends of a link (server and client), as every node is\n" +
						"both in mutual TLS. It names every --host (a DNS name or an IP address) plus localhost and\n" +
						"127.0.0.1, so the node's own CLI works.\n\n" +
						examples("agora tls cert create m1 --host m1.example.org --host 10.0.0.11",
							"agora tls cert create agent-7 --host 10.0.1.7 --days 90 --dir /etc/agora/tls"),
					Flags: []cli.Flag{dir, days(365),
						&cli.StringSliceFlag{Name: "host", Usage: "a host name or IP address the node is reached by (repeat the flag for each)"},
						&cli.StringFlag{Name: "ca", Value: caCertFile, Usage: "the CA's certificate"},
						&cli.StringFlag{Name: "ca-key", Value: caKeyFile, Usage: "the CA's key"},
					},
					Action: tlsCertCreate,
				}},
			},
		},
	}
}

// tlsCACreate is agora tls ca create.
func tlsCACreate(c *cli.Context) error {
	if len(args(c)) != 0 {
		return usageError{"tls ca create takes no arguments"}
	}
	if c.Int("days") <= 0 {
		return usageError{"--days: want a number of days above 0"}
	}
	certPEM, keyPEM, err := tlsconf.CreateCA(c.String("name"), time.Duration(c.Int("days"))*24*time.Hour)
	if err != nil {
		return fmt.Errorf("tls ca create: %w", err)
	}
	certPath, keyPath := filepath.Join(c.String("dir"), caCertFile), filepath.Join(c.String("dir"), caKeyFile)
	if err := writePair(certPath, certPEM, keyPath, keyPEM); err != nil {
		return fmt.Errorf("tls ca create: %w", err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s: the CA's certificate; every node and client gets it as --tls-ca\n", certPath)
	fmt.Fprintf(w, "wrote %s (mode 0600): the CA's key; keep it off the cluster, it signs certificates\n", keyPath)
	fmt.Fprintf(w, "valid until %s\n", time.Now().AddDate(0, 0, c.Int("days")).UTC().Format(time.DateOnly))
	fmt.Fprintf(w, "next: agora tls cert create NAME --host HOSTNAME --host IP   (one per master and agent)\n")
	return nil
}

// tlsCertCreate is agora tls cert create NAME.
func tlsCertCreate(c *cli.Context) error {
	if len(args(c)) != 1 {
		return usageError{"tls cert create takes one NAME (the files are NAME.pem and NAME-key.pem)"}
	}
	name := args(c)[0]
	if !certName.MatchString(name) {
		return usageError{fmt.Sprintf("NAME %q: use letters, digits, '.', '_' and '-' (it names the files)", name)}
	}
	if c.Int("days") <= 0 {
		return usageError{"--days: want a number of days above 0"}
	}
	hosts, err := certHosts(c.StringSlice("host"))
	if err != nil {
		return err
	}
	ca, err := tlsconf.LoadCA(c.String("ca"), c.String("ca-key"))
	if err != nil {
		return fmt.Errorf("tls cert create: the CA (--ca, --ca-key): %w", err)
	}
	validFor := time.Duration(c.Int("days")) * 24 * time.Hour
	certPEM, keyPEM, err := ca.Issue(name, hosts, validFor)
	if err != nil {
		return fmt.Errorf("tls cert create: %w", err)
	}
	certPath, keyPath := filepath.Join(c.String("dir"), name+".pem"), filepath.Join(c.String("dir"), name+"-key.pem")
	if err := writePair(certPath, certPEM, keyPath, keyPEM); err != nil {
		return fmt.Errorf("tls cert create: %w", err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s and %s (mode 0600) for %s\n", certPath, keyPath, strings.Join(hosts, ", "))
	until := ca.Until(validFor)
	if until.Equal(ca.Cert.NotAfter) {
		fmt.Fprintf(w, "valid until %s, when the CA ends (a certificate is worth nothing past its CA)\n", until.UTC().Format(time.DateOnly))
	} else {
		fmt.Fprintf(w, "valid until %s\n", until.UTC().Format(time.DateOnly))
	}
	fmt.Fprintf(w, "use: --tls-cert %s --tls-key %s --tls-ca %s\n", certPath, keyPath, c.String("ca"))
	return nil
}

// certHosts is the --host values (repeated or comma-separated), checked, with localhost and
// 127.0.0.1 added.
func certHosts(given []string) ([]string, error) {
	var hosts []string
	for _, v := range given {
		for _, h := range strings.Split(v, ",") {
			h = strings.TrimSpace(h)
			if net.ParseIP(h) == nil && !dnsName.MatchString(h) {
				return nil, usageError{fmt.Sprintf("--host %q: want a host name or an IP address (no port, no scheme)", h)}
			}
			if !slices.Contains(hosts, h) {
				hosts = append(hosts, h)
			}
		}
	}
	for _, h := range []string{"localhost", "127.0.0.1"} {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}

var dnsName = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// writePair writes a certificate and its key, neither over an existing file; when the key cannot
// be written the certificate is removed again.
func writePair(certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := tlsconf.WriteNew(certPath, certPEM, 0o644); err != nil {
		return err
	}
	if err := tlsconf.WriteNew(keyPath, keyPEM, 0o600); err != nil {
		os.Remove(certPath)
		return err
	}
	return nil
}
