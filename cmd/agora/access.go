package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/pkg/tlsconf"
)

// accessFlags are the access control flags of masters and dev nodes (pkg/auth).
func accessFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tokens-file", Usage: "API tokens with roles, one 'ROLE NAME TOKEN' per line (admin, operator, viewer), read again on SIGHUP; without it the API is open and may listen on loopback only", EnvVars: []string{"AGORA_TOKENS_FILE"}},
		clusterSecretFlag,
		&cli.StringFlag{Name: "secrets-keyring", Usage: "a file (mode 0600) of 'ID BASE64-32-BYTE-KEY' lines that secrets' values are encrypted with before they reach raft: the first key encrypts, every key decrypts; read again on SIGHUP. Every master needs the same file. Without it the key is derived from --cluster-secret-file, or else made in the data dir", EnvVars: []string{"AGORA_SECRETS_KEYRING"}},
		&cli.BoolFlag{Name: "insecure-open-api", Usage: "let an API without tokens listen beyond loopback (anyone who reaches it may do anything)"},
		&cli.BoolFlag{Name: "viewers-read-logs", Usage: "let viewer tokens read task logs (GET /v1/tasks/{id}/logs); without it logs need an operator token and viewers see tasks' state only", EnvVars: []string{"AGORA_VIEWERS_READ_LOGS"}},
	}
}

var clusterSecretFlag = &cli.StringFlag{Name: "cluster-secret-file", Usage: "a file whose first line (16+ characters) masters and agents share: agents need it to register, masters to reach agents, and gossip is encrypted with it", EnvVars: []string{"AGORA_CLUSTER_SECRET_FILE"}}

// clusterSecret reads --cluster-secret-file, "" when not given.
func clusterSecret(c *cli.Context) (string, error) {
	if c.String("cluster-secret-file") == "" {
		return "", nil
	}
	s, err := auth.ReadSecretFile(c.String("cluster-secret-file"))
	if err != nil {
		return "", usageError{"--cluster-secret-file: " + err.Error()}
	}
	return s, nil
}

// noSecretLine is what the access line says of agents without --cluster-secret-file.
const noSecretLine = "agents need no secret, and register from this machine only (no --cluster-secret-file)"

// access reads a master's tokens and cluster secret and refuses an open API beyond loopback.
// It answers the line that says at start who may use the API.
func access(c *cli.Context, httpAddr string) (*auth.Tokens, string, string, error) {
	secret, err := clusterSecret(c)
	if err != nil {
		return nil, "", "", err
	}
	var tokens *auth.Tokens
	if path := c.String("tokens-file"); path != "" {
		if tokens, err = auth.LoadTokens(path); err != nil {
			return nil, "", "", usageError{"--tokens-file: " + err.Error()}
		}
		if tokens.Len() == 0 {
			return nil, "", "", usageError{"--tokens-file: " + path + " holds no token"}
		}
	}
	cluster := noSecretLine
	if secret != "" {
		cluster = "agents and masters show the cluster secret; gossip is encrypted"
	}
	if tokens.Len() > 0 {
		return tokens, secret, fmt.Sprintf("API tokens required (%d in %s); %s", tokens.Len(), c.String("tokens-file"), cluster), nil
	}
	if !auth.Loopback(httpAddr) && !c.Bool("insecure-open-api") {
		return nil, "", "", usageError{fmt.Sprintf("--http %s is reachable beyond this machine and there is no --tokens-file: anyone could change the cluster. "+
			"Give --tokens-file (see 'agora master --help'), or --insecure-open-api to run open anyway", httpAddr)}
	}
	open := "OPEN: no --tokens-file, anyone who reaches the API may do anything"
	if auth.Loopback(httpAddr) {
		open += " (it listens on loopback only)"
	}
	return nil, secret, open + "; " + cluster, nil
}

// reloadOnHangup reads --tokens-file and --secrets-keyring again whenever the process gets
// SIGHUP (systemctl reload). New tokens: added ones work and removed ones stop working from the
// next request, without a restart. A new keyring: secrets are sealed with its first key from
// then on, and the leader seals the stored ones again with it. A file that does not load, or a
// tokens file that holds no token (which would open the API), changes nothing, and the log says
// why. Without either flag, SIGHUP keeps its usual meaning (a closed terminal stops the process).
func reloadOnHangup(c *cli.Context, m *master.Master, logger *slog.Logger) {
	tokensPath, keysPath := c.String("tokens-file"), c.String("secrets-keyring")
	if tokensPath == "" && keysPath == "" {
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-c.Context.Done():
				return
			case <-sigs:
			}
			if tokensPath != "" {
				reloadTokens(m, tokensPath, logger)
			}
			if keysPath != "" {
				keys, err := keyring.Load(keysPath)
				if err != nil {
					logger.Error("SIGHUP: secrets keyring not reloaded; the one in use stays", "err", err)
					continue
				}
				m.SetSecretsKeyring(keys)
				logger.Info("secrets keyring reloaded", "file", keysPath, "primary", keys.Primary(), "keys", len(keys.IDs()))
			}
		}
	}()
}

func reloadTokens(m *master.Master, path string, logger *slog.Logger) {
	tokens, err := auth.LoadTokens(path)
	if err == nil && tokens.Len() == 0 {
		err = fmt.Errorf("%s holds no token (that would open the API)", path)
	}
	if err != nil {
		logger.Error("SIGHUP: tokens not reloaded; the ones in use stay", "err", err)
		return
	}
	m.SetTokens(tokens)
	logger.Info("tokens reloaded", "file", path, "tokens", tokens.Len())
}

// secretsKeyring is what a master encrypts secrets with: --secrets-keyring; else a key derived
// from --cluster-secret-file (the file's secret, never one a dev node makes up for its agent,
// which would change at every start); else nil, and the master keeps a key of its own in its
// data dir. The line says which, for the start banner.
func secretsKeyring(c *cli.Context) (*keyring.Keyring, string, error) {
	if path := c.String("secrets-keyring"); path != "" {
		keys, err := keyring.Load(path)
		if err != nil {
			return nil, "", usageError{"--secrets-keyring: " + err.Error()}
		}
		return keys, fmt.Sprintf("encrypted with key %s of %s (%d keys)", keys.Primary(), path, len(keys.IDs())), nil
	}
	secret, err := clusterSecret(c)
	if err != nil || secret == "" {
		return nil, "", err
	}
	keys, err := keyring.FromClusterSecret(secret)
	if err != nil {
		return nil, "", usageError{"--cluster-secret-file: " + err.Error()}
	}
	return keys, "encrypted with key " + keys.Primary() + ", derived from --cluster-secret-file", nil
}

// localKeyringLine is the banner's secrets line for a master that keeps its own key.
func localKeyringLine(m *master.Master, dataDir string) string {
	return fmt.Sprintf("encrypted with key %s, made for this master in %s", m.SecretsKeyring().Primary(), filepath.Join(dataDir, master.LocalKeyringFile))
}

// tlsFlags are the TLS flags of masters, agents and dev nodes (pkg/tlsconf).
func tlsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tls-cert", Usage: "this node's certificate (PEM): the APIs serve HTTPS, raft runs over TLS, and links to other nodes show it", EnvVars: []string{"AGORA_TLS_CERT"}},
		&cli.StringFlag{Name: "tls-key", Usage: "the certificate's private key (PEM)", EnvVars: []string{"AGORA_TLS_KEY"}},
		&cli.StringFlag{Name: "tls-ca", Usage: "the CA (PEM) that signs the cluster's certificates: nodes verify each other against it (mutual TLS)", EnvVars: []string{"AGORA_TLS_CA"}},
	}
}

// loadTLS reads --tls-cert, --tls-key and --tls-ca; nil when none is given.
func loadTLS(c *cli.Context) (*tlsconf.TLS, error) {
	t, err := tlsconf.Load(tlsconf.Files{Cert: c.String("tls-cert"), Key: c.String("tls-key"), CA: c.String("tls-ca")})
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return t, nil
}

// security is what a master or dev node runs with: its tokens, cluster secret, TLS, the keyring
// of secrets (nil: the master's own), and the access and secrets lines it prints at start.
type security struct {
	tokens          *auth.Tokens
	secret          string
	line            string
	tls             *tlsconf.TLS
	viewersReadLogs bool
	keys            *keyring.Keyring
	secretsLine     string
}

// nodeSecurity reads the access and TLS flags of a master or dev node serving httpAddr. With
// tokens, agents need the cluster secret to reach the API at all: a master then requires one,
// and a dev node makes one of its own for its agent.
func nodeSecurity(c *cli.Context, httpAddr string, dev bool) (security, error) {
	tokens, secret, line, err := access(c, httpAddr)
	if err != nil {
		return security{}, err
	}
	keys, secretsLine, err := secretsKeyring(c)
	if err != nil {
		return security{}, err
	}
	if tokens.Len() > 0 && secret == "" {
		if !dev {
			return security{}, usageError{"--tokens-file needs --cluster-secret-file too: with tokens, agents reach the masters with the cluster secret"}
		}
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return security{}, err
		}
		secret = hex.EncodeToString(b)
		line = strings.Replace(line, noSecretLine, "the dev agent shows a cluster secret of its own", 1)
	}
	t, err := loadTLS(c)
	if err != nil {
		return security{}, err
	}
	if tokens.Len() > 0 && c.Bool("viewers-read-logs") {
		line += "; viewers may read task logs"
	}
	return security{tokens: tokens, secret: secret, line: line, tls: t, viewersReadLogs: c.Bool("viewers-read-logs"), keys: keys, secretsLine: secretsLine}, nil
}
