package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/agent"
	agentcontainerd "github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/fetcher"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/tlsconf"
)

// taskFlags are what an agent (and the dev node's agent) lets its tasks do and see. Every
// default is the strictest that runs ordinary tasks; each opening is a flag of its own.
func taskFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "default-task-user", Value: agentcontainerd.DefaultUser, Usage: "whom tasks run as when neither they (Marathon's user, Metronome's run.user) nor their image name a user other than root: a user of this host, a uid, or uid:gid"},
		&cli.BoolFlag{Name: "allow-root-tasks", Usage: "let tasks run as root (uid 0, with containerd's default capabilities); the agent gets the attribute agora.root:true, by which frameworks place them"},
		&cli.StringSliceFlag{Name: "task-host-dirs", Value: cli.NewStringSlice(agentcontainerd.DefaultHostDirs...), Usage: "the host directories tasks without an image see, read-only (they also get a copy of /etc without shadow, gshadow, sudoers, agora/ and files not readable by all)"},
		&cli.StringFlag{Name: "task-netns", Usage: "run tasks in this network namespace (/var/run/netns/NAME, as 'ip netns add NAME' makes, or /proc/PID/ns/net) instead of the host's network; their ports and health checks are then on that namespace's addresses, the agent's own when it runs there too"},
		&cli.Int64Flag{Name: "fetch-max-bytes", Value: fetcher.DefaultMaxBytes, Usage: "the largest artifact (Marathon's fetch and uris, Metronome's artifacts) a task may fetch, and the most an archive of them may unpack to, in bytes"},
		&cli.DurationFlag{Name: "fetch-timeout", Value: fetcher.DefaultTimeout, Usage: "how long fetching all of a task's artifacts may take before its launch fails"},
		&cli.Int64Flag{Name: "fetch-cache-bytes", Value: fetcher.DefaultCacheBytes, Usage: "the most the cache of artifacts fetched with cache: true holds (under the data dir, by URI; the least recently used go first), in bytes; negative: no cache"},
		&cli.StringSliceFlag{Name: "fetch-allow-net", Usage: "a network (CIDR, or one address) other than the public internet that tasks may fetch http(s) artifacts from (repeatable), e.g. an artifact server at 10.0.0.5: by default loopback, link-local (cloud metadata), private and other non-public addresses are refused, also after DNS and redirects"},
		&cli.StringSliceFlag{Name: "fetch-file-dir", Usage: "a directory of this host whose files tasks may fetch as file:// artifacts (repeatable); none by default"},
		&cli.StringSliceFlag{Name: "host-volume", Usage: "a host directory tasks may mount, NAME=PATH (read-only) or NAME=PATH:rw (repeatable); apps and jobs name it by NAME or by a path in it. Nothing else of the host can be mounted; never /, a data dir, key or secret files, /root or containerd's state"},
	}
}

// taskPolicy is what taskFlags say, read and checked.
type taskPolicy struct {
	defaultUser string
	allowRoot   bool
	hostDirs    []string
	netns       string // the tasks' network namespace; empty: the host's
	volumes     []hostaccess.Volume
	fetch       fetcher.Config
	// protected are this node's own paths that tasks must never see: data dirs, key, secret,
	// keyring and tokens files, the containerd socket's directory.
	protected []string
}

// readTaskPolicy reads the task flags of an agent whose data dir is given (no task may see it,
// nor the node's key, secret, keyring and tokens files).
func readTaskPolicy(c *cli.Context, dataDir string) (taskPolicy, error) {
	p := taskPolicy{defaultUser: c.String("default-task-user"), allowRoot: c.Bool("allow-root-tasks"), hostDirs: c.StringSlice("task-host-dirs"), netns: c.String("task-netns")}
	p.fetch = fetcher.Config{MaxBytes: c.Int64("fetch-max-bytes"), Timeout: c.Duration("fetch-timeout"), CacheBytes: c.Int64("fetch-cache-bytes"), FileDirs: c.StringSlice("fetch-file-dir")}
	if p.fetch.MaxBytes <= 0 || p.fetch.Timeout <= 0 {
		return p, usageError{"--fetch-max-bytes and --fetch-timeout must be positive"}
	}
	nets, err := fetcher.ParseNets(c.StringSlice("fetch-allow-net"))
	if err != nil {
		return p, usageError{"--fetch-allow-net " + err.Error()}
	}
	p.fetch.AllowNets = nets
	if p.fetch.CacheBytes == 0 {
		p.fetch.CacheBytes = -1 // 0 means none here, not the default
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return p, err
	}
	protected := []string{dataDir}
	for _, path := range []string{c.String("cluster-secret-file"), c.String("secrets-keyring"), c.String("tls-key"), c.String("tokens-file"), filepath.Dir(c.String("containerd"))} {
		if path != "" && path != "." {
			protected = append(protected, path)
		}
	}
	for _, path := range protected {
		abs, err := filepath.Abs(path)
		if err != nil {
			return p, err
		}
		p.protected = append(p.protected, abs)
	}
	if err := agentcontainerd.CheckHostDirs(p.hostDirs, dataDir); err != nil {
		return p, usageError{"--task-host-dirs: " + strings.TrimPrefix(err.Error(), "containerd: ")}
	}
	for _, s := range c.StringSlice("host-volume") {
		v, err := hostaccess.Parse(s)
		if err != nil {
			return p, usageError{"--host-volume " + err.Error()}
		}
		p.volumes = append(p.volumes, v)
	}
	if err := agent.CheckHostVolumes(p.volumes, p.protected); err != nil {
		return p, usageError{strings.TrimPrefix(err.Error(), "agent: ")}
	}
	never := append(slices.Clone(p.protected), hostaccess.AlwaysProtected...)
	for i, d := range p.fetch.FileDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return p, err
		}
		p.fetch.FileDirs[i] = abs
		if err := hostaccess.Protected(abs, true, never); err != nil {
			return p, usageError{fmt.Sprintf("--fetch-file-dir %s: %v", d, strings.TrimPrefix(err.Error(), "hostaccess: "))}
		}
	}
	if p.netns != "" {
		if err := agentcontainerd.CheckNetNS(p.netns); err != nil {
			return p, usageError{"--task-netns: " + strings.TrimPrefix(err.Error(), "containerd: ")}
		}
	}
	if hostaccess.IsRoot(p.defaultUser) && !p.allowRoot {
		return p, usageError{fmt.Sprintf("--default-task-user %s is root: give --allow-root-tasks too, or a user other than root", p.defaultUser)}
	}
	return p, nil
}

// executorConfig fills in what the policy says of an executor's config.
func (p taskPolicy) executorConfig(cfg agentcontainerd.Config) agentcontainerd.Config {
	cfg.DefaultUser, cfg.AllowRoot, cfg.HostDirs, cfg.Hidden, cfg.NetNS = p.defaultUser, p.allowRoot, p.hostDirs, p.protected, p.netns
	return cfg
}

// agentConfig fills in what the policy says of an agent's config.
func (p taskPolicy) agentConfig(cfg agent.Config) agent.Config {
	cfg.AllowRootTasks, cfg.HostVolumes, cfg.Protected = p.allowRoot, p.volumes, p.protected
	cfg.Fetch = p.fetch
	return cfg
}

// summary is the policy in one line, for what an agent prints at start.
func (p taskPolicy) summary() string {
	root := "never as root"
	if p.allowRoot {
		root = "as root when they ask (--allow-root-tasks)"
	}
	vols := "none"
	if len(p.volumes) > 0 {
		var names []string
		for _, v := range p.volumes {
			names = append(names, v.String())
		}
		vols = strings.Join(names, ", ")
	}
	network := "the host's network"
	if p.netns != "" {
		network = "network namespace " + p.netns
	}
	return fmt.Sprintf("run as %s unless they name a user, %s; host volumes: %s; %s", p.defaultUser, root, vols, network)
}

// agentAccess is the access line of an agent's API, or the usage error that refuses to start
// an agent whose API would be open beyond loopback.
func agentAccess(flag, httpAddr, secret string, t *tlsconf.TLS) (string, error) {
	line, err := agent.AccessLine(httpAddr, secret, t)
	if err != nil {
		return "", usageError{strings.Replace(strings.TrimPrefix(err.Error(), agent.ErrOpenAPI.Error()+": "), "--http", flag, 1)}
	}
	return line, nil
}
