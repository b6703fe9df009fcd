package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/agent"
	agentcontainerd "github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/master/dnsserver"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/faultnet"
	"github.com/agora-sched/agora/pkg/resources"
)

const defaultContainerdSock = "/run/containerd/containerd.sock"

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a one-node cluster in this process: a master, an agent on the local containerd, and the frameworks",
		Description: "Starts the embedded default cluster on this machine. State lives under --data-dir, the\n" +
			"HTTP API on --http (Marathon's port by default). `make run` starts a containerd first and then this." + "\n\n" +
			examples("agora dev", "agora dev --data-dir /tmp/agora --http 127.0.0.1:9090"),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: ".agora", Usage: "where the node keeps its state"},
			&cli.StringFlag{Name: "containerd", Value: defaultContainerdSock, Usage: "containerd socket", EnvVars: []string{"AGORA_CONTAINERD_SOCK"}},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:8080", Usage: "HTTP API address"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1:5050", Usage: "raft address of the one master (gossip uses the next port)"},
			&cli.StringFlag{Name: "agent-http", Value: "127.0.0.1:5151", Usage: "the agent's API address"},
			&cli.StringFlag{Name: "resources", Usage: "what the agent offers, e.g. 'cpus:2;mem:2048;disk:10000;ports:[31000-32000]' (default: detected)"},
			&cli.StringFlag{Name: "containerd-namespace", Value: agentcontainerd.DefaultNamespace, Usage: "containerd namespace of the agent's containers"},
		}, append(append(append(append(accessFlags(), tlsFlags()...), schedulerFlags()...), taskFlags()...), dnsFlags(dnsserver.DevAddr)...)...),
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Sprintf("dev takes no arguments, got %q", c.Args().Slice())}
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	dataDir := c.String("data-dir")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	sched, err := schedulerConfig(c)
	if err != nil {
		return err
	}
	sec, err := nodeSecurity(c, c.String("http"), true)
	if err != nil {
		return err
	}
	tokens, secret, accessLine, tlsc := sec.tokens, sec.secret, sec.line, sec.tls
	agentAccessLine, err := agentAccess("--agent-http", c.String("agent-http"), secret, tlsc)
	if err != nil {
		return err
	}
	policy, err := readTaskPolicy(c, dataDir)
	if err != nil {
		return err
	}
	dnsc, err := dnsConfig(c)
	if err != nil {
		return err
	}
	if dnsc.Addr != "" && !auth.Loopback(dnsc.Addr) {
		return usageError{fmt.Sprintf("--dns %s is reachable beyond this machine: agora dev answers DNS on loopback only (agora master --dns serves a network)", dnsc.Addr)}
	}
	ctrd, err := askContainerd(c, "dev")
	if err != nil {
		return err
	}
	m, err := master.New(master.Config{
		Tokens:          tokens,
		ClusterSecret:   secret,
		ViewersReadLogs: sec.viewersReadLogs,
		SecretsKeyring:  sec.keys,
		TLS:             tlsc,
		DataDir:         filepath.Join(dataDir, "master"),
		RaftAddr:        c.String("bind"),
		HTTPAddr:        c.String("http"),
		Role:            "dev",
		Logger:          logger,
		Info:            master.Info{Containerd: ctrd},
		Scheduler:       sched,
		DNS:             dnsc,
		Appliers:        frameworkAppliers(),
	})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := startFrameworks(c, m, logger); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	reloadOnHangup(c, m, logger)
	if sec.keys == nil {
		sec.secretsLine = localKeyringLine(m, filepath.Join(dataDir, "master"))
	}
	res, err := parseResources(c.String("resources"))
	if err != nil {
		return err
	}
	client, exec, err := newExecutor(c, logger, filepath.Join(dataDir, "agent"), policy)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer client.Close()
	a, err := agent.New(policy.agentConfig(agent.Config{
		DataDir:    filepath.Join(dataDir, "agent"),
		Join:       []string{m.GossipAddr()},
		GossipAddr: "127.0.0.1:0",
		HTTPAddr:   c.String("agent-http"),
		Hostname:   devHostname(),
		Resources:  res,
		Logger:     logger.With("component", "agent"),
		Executor:   exec,
		// The dev agent listens on loopback; with a secret, it asks it of callers as any agent.
		ClusterSecret: secret,
		TLS:           tlsc,
	}))
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	sc := tlsc.Scheme()
	fmt.Fprintf(c.App.Writer, "agora dev is up\n  UI:         "+sc+"://%s/ui/\n  API:        "+sc+"://%s  (try: curl "+sc+"://%s/v1/cluster, or agora app add examples/apps/hello.json --wait)\n"+
		"  metrics:    "+sc+"://%s/metrics, agent "+sc+"://%s/metrics\n  DNS:        %s\n  agent API:  "+sc+"://%s\n  containerd: %s (%s), namespace %s\n  data dir:   %s\n  access:     %s\n  secrets:    %s\n  agent:      %s\n  tasks:      %s\nStop it with Ctrl-C; the state stays in the data dir for the next start.\n",
		m.HTTPAddr(), m.HTTPAddr(), m.HTTPAddr(), m.HTTPAddr(), a.HTTPAddr(), dnsLine(m, dnsc.Domain), a.HTTPAddr(), ctrd.Address, ctrd.Version, c.String("containerd-namespace"), dataDir, accessLine, sec.secretsLine, agentAccessLine, policy.summary())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(c.Context) }()
	err = m.Run(c.Context)
	if aerr := <-agentDone; aerr != nil && err == nil {
		err = aerr
	}
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logger.Info("dev node stopped")
	return nil
}

// devHostname is the name the dev agent goes by: the machine's, when it resolves (tasks are
// reached at host:port, by frameworks' readiness checks and by people), else localhost.
func devHostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, h); err != nil {
		return "localhost"
	}
	return h
}

func parseResources(s string) (resources.Resources, error) {
	if s == "" {
		return resources.Resources{}, nil // detected
	}
	res, err := resources.Parse(s)
	if err != nil {
		return res, usageError{fmt.Sprintf("--resources: %v", err)}
	}
	return res, nil
}

// newExecutor connects to the --containerd socket and makes the agent's executor, with its
// sandboxes under dataDir, and what the policy lets tasks do.
func newExecutor(c *cli.Context, logger *slog.Logger, dataDir string, policy taskPolicy) (*containerd.Client, *agentcontainerd.Executor, error) {
	client, err := containerd.New(c.String("containerd"), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("containerd: %w", err)
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	exec, err := agentcontainerd.New(policy.executorConfig(agentcontainerd.Config{
		Client:      client,
		Namespace:   c.String("containerd-namespace"),
		Address:     c.String("containerd"),
		SandboxRoot: filepath.Join(dataDir, "sandboxes"),
		LogMaxBytes: c.Int64("log-max-bytes"),
		LogKeep:     c.Int("log-keep"),
		Logger:      logger.With("component", "executor"),
	}))
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, exec, nil
}

// askContainerd asks the containerd of --containerd for its version, or says how to start one.
func askContainerd(c *cli.Context, role string) (*master.ContainerdInfo, error) {
	info, err := containerdVersion(c.Context, c.String("containerd"))
	if err != nil {
		return nil, fmt.Errorf("%s: containerd at %s does not answer (start one with 'scripts/containerd.sh start', or pass --containerd SOCK): %w", role, c.String("containerd"), err)
	}
	return info, nil
}

// containerdVersion asks the containerd at sock for its version, within five seconds.
func containerdVersion(ctx context.Context, sock string) (*master.ContainerdInfo, error) {
	if _, err := os.Stat(sock); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := containerd.New(sock, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	v, err := client.Version(ctx)
	if err != nil {
		return nil, err
	}
	return &master.ContainerdInfo{Address: sock, Version: v.Version}, nil
}

func masterCommand() *cli.Command {
	return &cli.Command{
		Name:  "master",
		Usage: "run a replicated master: 1, 3 or 5 per cluster",
		Description: "Masters keep the cluster's state in raft (log and snapshots in bbolt under --data-dir) and\n" +
			"find each other through gossip. Ports: --bind is raft (TCP), --gossip is memberlist (TCP and UDP,\n" +
			"default: the raft port + 1), --http is the API. Beyond loopback the API needs --tokens-file\n" +
			"(ROLE NAME TOKEN lines: admin, operator, viewer); --cluster-secret-file is shared with agents.\n\n" +
			"  one master:    agora master --data-dir /var/lib/agora --bind 10.0.0.1:5050\n" +
			"  three masters: agora master --data-dir D --bind 10.0.0.N:5050 --http 10.0.0.N:8080 \\\n" +
			"                   --join 10.0.0.1:5051 --bootstrap-expect 3      (on each of the three)\n" +
			"  add a master:  agora master --data-dir D --bind 10.0.0.4:5050 --join 10.0.0.1:5051" + "\n\n" +
			examples("agora master --data-dir /var/lib/agora --bind 10.0.0.1:5050 --http 10.0.0.1:8080 --join 10.0.0.2:5051 --bootstrap-expect 3 \\\n"+
				"     --tokens-file /etc/agora/tokens --cluster-secret-file /etc/agora/cluster-secret"),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Usage: "where this master keeps its state (required)"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1:5050", Usage: "raft address, host:port, that the other masters can reach"},
			&cli.StringFlag{Name: "gossip", Usage: "gossip address, host:port (default: the raft port + 1)"},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:8080", Usage: "HTTP API address"},
			&cli.StringSliceFlag{Name: "join", Usage: "gossip address of a running master or agent (repeatable)"},
			&cli.IntFlag{Name: "bootstrap-expect", Usage: "found a new cluster once this many masters are present (0: join an existing one; one master alone bootstraps itself)"},
			&cli.DurationFlag{Name: "max-clock-skew", Value: master.DefaultMaxClockSkew, Usage: "how far this master's clock may be off a majority of the masters' (measured over their APIs) before, leading, it fires no cron run and hands leadership over"},
			&cli.BoolFlag{Name: "chaos-faults", Hidden: true, Usage: "for the chaos harness: SIGUSR1 cuts this master off the other nodes (raft, gossip, its calls to them), SIGUSR2 heals it"},
			&cli.DurationFlag{Name: "chaos-clock-offset", Hidden: true, Usage: "for the chaos harness, with --chaos-faults: this master's wall clock runs this far off the system's"},
			&cli.StringFlag{Name: "chaos-clock-file", Hidden: true, Usage: "for the chaos harness, with --chaos-faults: a file holding the clock offset (a Go duration), read again every 200 ms"},
		}, append(append(append(accessFlags(), tlsFlags()...), schedulerFlags()...), dnsFlags("")...)...),
		Action: runMaster,
	}
}

func runMaster(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Sprintf("master takes no arguments, got %q", c.Args().Slice())}
	}
	if c.String("data-dir") == "" {
		return usageError{"master: --data-dir is required"}
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	sched, err := schedulerConfig(c)
	if err != nil {
		return err
	}
	sec, err := nodeSecurity(c, c.String("http"), false)
	if err != nil {
		return err
	}
	tokens, secret, accessLine, tlsc := sec.tokens, sec.secret, sec.line, sec.tls
	if c.Duration("max-clock-skew") <= 0 {
		return usageError{fmt.Sprintf("--max-clock-skew must be positive, got %s", c.Duration("max-clock-skew"))}
	}
	clk, err := masterClock(c, logger)
	if err != nil {
		return err
	}
	dnsc, err := dnsConfig(c)
	if err != nil {
		return err
	}
	m, err := master.New(master.Config{
		Tokens:          tokens,
		ClusterSecret:   secret,
		ViewersReadLogs: sec.viewersReadLogs,
		SecretsKeyring:  sec.keys,
		TLS:             tlsc,
		Clock:           clk,
		MaxClockSkew:    c.Duration("max-clock-skew"),
		Faults:          faultSwitch(c, logger),
		Scheduler:       sched,
		DataDir:         c.String("data-dir"),
		RaftAddr:        c.String("bind"),
		GossipAddr:      c.String("gossip"),
		HTTPAddr:        c.String("http"),
		Join:            c.StringSlice("join"),
		BootstrapExpect: c.Int("bootstrap-expect"),
		DNS:             dnsc,
		Logger:          logger,
		Appliers:        frameworkAppliers(),
	})
	if err != nil {
		return err
	}
	if err := startFrameworks(c, m, logger); err != nil {
		return err
	}
	reloadOnHangup(c, m, logger)
	if sec.keys == nil {
		sec.secretsLine = localKeyringLine(m, c.String("data-dir"))
		logger.Warn("secrets are encrypted with a key of this master's own; a cluster of several masters needs --secrets-keyring or --cluster-secret-file, so that every master has the same key",
			"file", filepath.Join(c.String("data-dir"), master.LocalKeyringFile))
	}
	fmt.Fprintf(c.App.Writer, "agora master %s\n  API:     "+tlsc.Scheme()+"://%s\n  raft:    %s\n  gossip:  %s\n  DNS:     %s\n  access:  %s\n  secrets: %s\n", m.ID(), m.HTTPAddr(), m.RaftAddr(), m.GossipAddr(), dnsLine(m, dnsc.Domain), accessLine, sec.secretsLine)
	return m.Run(c.Context)
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run an agent, or list the agents (agora agent list)",
		Description: "Runs the agent daemon: it joins the cluster's gossip, registers with the leading master\n" +
			"(keeping its agent id in --data-dir) and registers again with every new leader, and runs the\n" +
			"tasks it is given as containerd containers in the namespace --containerd-namespace. Its tasks\n" +
			"and unacknowledged status updates are checkpointed in --data-dir: stopped (even with kill -9) and\n" +
			"started again, it re-attaches to the containers that kept running. SIGTERM leaves tasks running\n" +
			"unless --drain is given.\n\n" +
			"  agora agent --join 10.0.0.1:5051 --data-dir /var/lib/agora-agent --http 10.0.0.7:5151 \\\n" +
			"    --gossip 10.0.0.7:5152 --resources 'cpus:4;mem:8192;disk:20000;ports:[31000-32000]' --attributes 'rack:r1'" + "\n\n" +
			examples("agora agent --join 10.0.0.1:5051 --data-dir /var/lib/agora-agent --http 10.0.0.7:5151 --gossip 10.0.0.7:5152", "agora agent list", "agora agent drain AGENT"),
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "join", Usage: "gossip address of a master (repeatable; required)"},
			&cli.StringFlag{Name: "data-dir", Usage: "where the agent keeps its id and checkpoints (required)"},
			&cli.StringFlag{Name: "containerd", Value: defaultContainerdSock, Usage: "containerd socket", EnvVars: []string{"AGORA_CONTAINERD_SOCK"}},
			&cli.StringFlag{Name: "resources", Usage: "what to offer, e.g. 'cpus:4;mem:8192;disk:20000;ports:[31000-32000]' (default: detected)"},
			&cli.StringFlag{Name: "attributes", Usage: "e.g. 'rack:r1;zone:a'"},
			&cli.StringFlag{Name: "hostname", Usage: "the name masters and frameworks see (default: the machine's)"},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:5151", Usage: "the agent's API address, reachable by masters"},
			&cli.StringFlag{Name: "gossip", Value: "127.0.0.1:5152", Usage: "gossip address (TCP and UDP)"},
			&cli.StringFlag{Name: "containerd-namespace", Value: agentcontainerd.DefaultNamespace, Usage: "containerd namespace of the agent's containers; containers in it that the agent does not know are removed"},
			&cli.BoolFlag{Name: "drain", Usage: "on SIGTERM, kill every task (each with its grace period) and report them before stopping"},
			&cli.DurationFlag{Name: "drain-timeout", Value: 2 * time.Minute, Usage: "the longest --drain waits"},
			&cli.BoolFlag{Name: "chaos-faults", Hidden: true, Usage: "for the chaos harness: SIGUSR1 cuts this agent off the masters (gossip, its calls to them, theirs to it), SIGUSR2 heals it"},
			&cli.Int64Flag{Name: "log-max-bytes", Value: 10 << 20, Usage: "rotate a task's stdout and stderr at this size"},
			&cli.IntFlag{Name: "log-keep", Value: 5, Usage: "rotated stdout and stderr files kept per task"},
			clusterSecretFlag,
			&cli.BoolFlag{Name: "allow-privileged", Usage: "run tasks that ask for privileged containers (Marathon's container.docker.privileged); the agent gets the attribute agora.privileged:true"},
		}, append(tlsFlags(), taskFlags()...)...),
		Action:      runAgent,
		Subcommands: agentSubcommands(),
	}
}

func runAgent(c *cli.Context) error {
	if c.NArg() > 0 {
		return noSuchVerb(c, c.Command, c.Args().First(), "'agora agent' alone runs an agent")
	}
	if c.String("data-dir") == "" {
		return usageError{"agent: --data-dir is required"}
	}
	if len(c.StringSlice("join")) == 0 {
		return usageError{"agent: --join is required (a master's gossip address)"}
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	secret, err := clusterSecret(c)
	if err != nil {
		return err
	}
	tlsc, err := loadTLS(c)
	if err != nil {
		return err
	}
	accessLine, err := agentAccess("--http", c.String("http"), secret, tlsc)
	if err != nil {
		return err
	}
	res, err := parseResources(c.String("resources"))
	if err != nil {
		return err
	}
	attrs, err := agent.ParseAttributes(c.String("attributes"))
	if err != nil {
		return usageError{fmt.Sprintf("--attributes: %v", err)}
	}
	dataDir, err := filepath.Abs(c.String("data-dir"))
	if err != nil {
		return err
	}
	policy, err := readTaskPolicy(c, dataDir)
	if err != nil {
		return err
	}
	ctrd, err := askContainerd(c, "agent")
	if err != nil {
		return err
	}
	client, exec, err := newExecutor(c, logger, dataDir, policy)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer client.Close()
	a, err := agent.New(policy.agentConfig(agent.Config{
		DataDir:         dataDir,
		Join:            c.StringSlice("join"),
		GossipAddr:      c.String("gossip"),
		HTTPAddr:        c.String("http"),
		Hostname:        c.String("hostname"),
		Resources:       res,
		Attributes:      attrs,
		Logger:          logger,
		Executor:        exec,
		Drain:           c.Bool("drain"),
		ClusterSecret:   secret,
		TLS:             tlsc,
		AllowPrivileged: c.Bool("allow-privileged"),
		DrainTimeout:    c.Duration("drain-timeout"),
		Faults:          faultSwitch(c, logger),
	}))
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "agora agent\n  API:        "+tlsc.Scheme()+"://%s\n  access:     %s\n  gossip:     %s\n  containerd: %s (%s), namespace %s\n  resources:  %s\n  tasks:      %s\n",
		a.HTTPAddr(), accessLine, a.GossipAddr(), ctrd.Address, ctrd.Version, c.String("containerd-namespace"), a.Resources(), policy.summary())
	return a.Run(c.Context)
}

// faultSwitch is a master's or an agent's network switch when --chaos-faults is given (nil
// otherwise): SIGUSR1 cuts the node off the others, SIGUSR2 heals it.
func faultSwitch(c *cli.Context, logger *slog.Logger) *faultnet.Switch {
	if !c.Bool("chaos-faults") {
		return nil
	}
	sw := &faultnet.Switch{}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for {
			select {
			case <-c.Context.Done():
				signal.Stop(sigs)
				return
			case sig := <-sigs:
				sw.Cut(sig == syscall.SIGUSR1)
				logger.Warn("fault injection", "cut_off", sw.IsCut())
			}
		}
	}()
	return sw
}
