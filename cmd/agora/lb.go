package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/client"
	"github.com/agora-sched/agora/pkg/lb"
	"github.com/agora-sched/agora/pkg/tlsconf"
)

// defaultLBMetricsAddr is agora lb's /metrics and /health: on loopback, a port no Agora part
// and no common Prometheus exporter takes by default.
const defaultLBMetricsAddr = "127.0.0.1:9098"

func lbCommand() *cli.Command {
	return &cli.Command{
		Name:  "lb",
		Usage: "keep an HAProxy's config in step with the cluster's services, from marathon-lb's labels",
		Description: "Follows the masters' services (GET /v1/services, a Server-Sent Events stream; the next master when\n" +
			"one stops answering) and writes an HAProxy config from the apps' marathon-lb labels: HAPROXY_GROUP,\n" +
			"HAPROXY_{n}_GROUP, HAPROXY_{n}_VHOST, HAPROXY_{n}_MODE, HAPROXY_{n}_PORT, HAPROXY_{n}_BALANCE,\n" +
			"HAPROXY_{n}_BIND_ADDR, HAPROXY_{n}_BACKEND_WEIGHT, HAPROXY_{n}_PATH, HAPROXY_{n}_ENABLED. Each app port\n" +
			"with a service port gets a frontend on it and a backend of its healthy instances; a vhost also routes\n" +
			"by Host header on --http-port. A new config is validated with haproxy -c and applied only when it\n" +
			"changed: by default agora lb runs HAProxy itself (haproxy -W, reloaded with SIGUSR2: new workers take\n" +
			"over, old ones finish their connections) and stops it when it stops; --reload-command runs a command\n" +
			"instead, for an HAProxy under its own unit. While no master answers, HAProxy keeps its config.\n\n" +
			"Frontends bind 127.0.0.1 unless --bind-addr says otherwise (0.0.0.0 publishes); a HAPROXY_{n}_BIND_ADDR\n" +
			"label may name only --bind-addr or an address --allow-bind-addr allows (an app's author cannot publish\n" +
			"a port wider than the operator did); HAProxy's admin socket is a unix socket of mode 600.\n\n" +
			examples("agora lb --masters http://10.0.0.1:8080,http://10.0.0.2:8080 --group external --bind-addr 0.0.0.0",
				"agora lb --group '*' --http-port 8081 --haproxy-config /tmp/lb/haproxy.cfg --stats-socket /tmp/lb/haproxy.sock",
				"agora lb --group external --haproxy-config /etc/haproxy/haproxy.cfg --reload-command 'systemctl reload haproxy'"),
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "masters", Value: cli.NewStringSlice("http://127.0.0.1:8080"), Usage: "the masters' API addresses (comma-separated or repeated): followed in turn", EnvVars: []string{"AGORA_MASTERS"}},
			&cli.StringFlag{Name: "token", Usage: "an API token of the viewer role or above (when the masters have a --tokens-file)", EnvVars: []string{"AGORA_TOKEN"}},
			&cli.StringFlag{Name: "token-file", Usage: "a file holding the API token (kept out of the command line)"},
			&cli.StringFlag{Name: "tls-ca", Usage: "the CA (PEM) to verify https:// masters with (default: the system's roots)", EnvVars: []string{"AGORA_TLS_CA"}},
			&cli.StringSliceFlag{Name: "group", Usage: "the HAPROXY_GROUPs this lb serves (required; repeated or comma-separated); '*' serves every app, those without the label too"},
			&cli.StringFlag{Name: "bind-addr", Value: "127.0.0.1", Usage: "the address frontends bind (0.0.0.0 publishes them)"},
			&cli.StringSliceFlag{Name: "allow-bind-addr", Usage: "other addresses a HAPROXY_{n}_BIND_ADDR label may bind (repeated or comma-separated; '*': any); default none"},
			&cli.IntFlag{Name: "http-port", Value: 80, Usage: "the port of the frontend that routes by Host header to the apps with a HAPROXY_{n}_VHOST (0: none)"},
			&cli.StringFlag{Name: "haproxy-config", Value: "/var/lib/agora-lb/haproxy.cfg", Usage: "the HAProxy config file agora lb writes"},
			&cli.StringFlag{Name: "stats-socket", Value: "/run/agora-lb/haproxy.sock", Usage: "HAProxy's admin socket (a unix socket, mode 600)"},
			&cli.StringFlag{Name: "haproxy", Value: "haproxy", Usage: "the haproxy program"},
			&cli.StringFlag{Name: "reload-command", Usage: "a command to reload an HAProxy that runs under its own unit (split on spaces), e.g. 'systemctl reload haproxy'; default: agora lb runs HAProxy itself"},
			&cli.StringFlag{Name: "metrics-addr", Value: defaultLBMetricsAddr, Usage: "where /metrics and /health are served (off: nowhere)"},
		},
		Action: runLB,
	}
}

func runLB(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Sprintf("lb takes no arguments, got %q", c.Args().Slice())}
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	groups := splitList(c.StringSlice("group"))
	if len(groups) == 0 {
		return usageError{"lb: --group is required: the HAPROXY_GROUPs this lb serves, or '*' for every app"}
	}
	bind := c.String("bind-addr")
	if bind != "*" && net.ParseIP(bind) == nil {
		return usageError{fmt.Sprintf("--bind-addr: %q is not an IP address", bind)}
	}
	allow := splitList(c.StringSlice("allow-bind-addr"))
	for _, a := range allow {
		if a != "*" && net.ParseIP(a) == nil {
			return usageError{fmt.Sprintf("--allow-bind-addr: %q is not an IP address or *", a)}
		}
	}
	if p := c.Int("http-port"); p < 0 || p > 65535 {
		return usageError{fmt.Sprintf("--http-port: %d is not a port", p)}
	}
	socket := c.String("stats-socket")
	if socket == "" || strings.ContainsAny(socket, " \t\n") {
		return usageError{fmt.Sprintf("--stats-socket: want a path without spaces, got %q", socket)}
	}
	if c.String("haproxy-config") == "" {
		return usageError{"--haproxy-config: want a file path"}
	}
	masters, err := lbMasters(c)
	if err != nil {
		return err
	}
	haproxy, err := exec.LookPath(c.String("haproxy"))
	if err != nil {
		return usageError{fmt.Sprintf("--haproxy: %v (Debian: apt-get install haproxy)", err)}
	}
	l, err := lb.New(lb.Settings{
		Masters:       masters,
		Options:       lb.Options{Groups: groups, BindAddr: bind, AllowBindAddrs: allow, HTTPPort: c.Int("http-port"), StatsSocket: socket},
		ConfigPath:    c.String("haproxy-config"),
		HAProxy:       haproxy,
		ReloadCommand: strings.Fields(c.String("reload-command")),
		HAProxyOutput: c.App.ErrWriter,
		Logger:        logger.With("part", "lb"),
	})
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	metricsLine := "off"
	if addr := c.String("metrics-addr"); addr != "off" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("lb: --metrics-addr: %w", err)
		}
		srv := &http.Server{Handler: l.Handler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("lb: metrics server", "err", err)
			}
		})
		defer srv.Close()
		metricsLine = "http://" + ln.Addr().String() + "/metrics, /health"
	}
	var addrs []string
	for _, m := range masters {
		addrs = append(addrs, m.Addr())
	}
	fmt.Fprintf(c.App.Writer, "agora lb\n  masters: %s\n  groups:  %s\n  config:  %s\n  metrics: %s\n", strings.Join(addrs, ", "), strings.Join(groups, ", "), c.String("haproxy-config"), metricsLine)
	return l.Run(ctx)
}

// lbMasters are the clients of --masters, with the token and CA of --token/--token-file and
// --tls-ca.
func lbMasters(c *cli.Context) ([]lb.Master, error) {
	token := c.String("token")
	if f := c.String("token-file"); f != "" {
		if token != "" {
			return nil, usageError{"--token and --token-file: give one"}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--token-file: %v", err)}
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, usageError{fmt.Sprintf("--token-file: %s is empty", f)}
		}
	}
	var conf *tls.Config
	if ca := c.String("tls-ca"); ca != "" {
		pool, err := tlsconf.Pool(ca)
		if err != nil {
			return nil, usageError{"--tls-ca: " + err.Error()}
		}
		conf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var masters []lb.Master
	for _, addr := range splitList(c.StringSlice("masters")) {
		cl, err := client.New(addr)
		if err != nil {
			return nil, usageError{"--masters: " + err.Error()}
		}
		cl = cl.WithToken(token)
		if conf != nil {
			cl = cl.WithTLS(conf)
		}
		masters = append(masters, cl)
	}
	if len(masters) == 0 {
		return nil, usageError{"--masters: want at least one master's address"}
	}
	return masters, nil
}

// splitList is the items of a repeated, comma-separated flag, trimmed, without empty ones.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}
