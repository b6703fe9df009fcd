package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/agora-sched/agora/agent/fetcher"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/faultnet"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/tlsconf"
)

// The agent's configuration, and what New checks of it: who may call its API (AccessLine), the
// attributes by which frameworks place (what it allows tasks, its host volumes), its resources.

// Config configures an Agent.
type Config struct {
	DataDir    string
	Join       []string // gossip addresses of masters (or other agents)
	GossipAddr string   // this agent's gossip address
	HTTPAddr   string   // this agent's API address, as masters should reach it
	Hostname   string
	Resources  resources.Resources // zero: detected
	Attributes map[string]string
	Logger     *slog.Logger
	// GossipTiming defaults to the LAN profile; tests on loopback use the local one.
	GossipTiming gossip.Timing
	// RetryEvery is how often registration is retried and the leader checked (default 1 s).
	RetryEvery time.Duration
	// Executor runs the tasks (agent/containerd's, in production).
	Executor Executor
	// Drain: when Run's context ends, kill every task (each with its grace period) and wait
	// until their last updates are acknowledged, up to DrainTimeout, before stopping. Without
	// it tasks keep running while the agent is away, and it re-attaches when it is back.
	Drain        bool
	DrainTimeout time.Duration // default 2 minutes
	Clock        clock.Clock   // default clock.Real
	// ClusterSecret, when set, is what this agent shows masters and what it asks of every
	// caller of its API (but /ping, /health and /metrics), and the key of gossip's encryption.
	ClusterSecret string
	// AllowPrivileged lets tasks run privileged containers; the agent then has the attribute
	// api.PrivilegedAttribute, by which frameworks place them.
	AllowPrivileged bool
	// AllowRootTasks lets tasks run as uid 0 (the executor must allow it too); the agent then
	// has the attribute hostaccess.RootAttribute, by which frameworks place them.
	AllowRootTasks bool
	// HostVolumes are the host directories tasks may mount (nothing else of the host is); each
	// is an attribute (hostaccess.AttributePrefix + name) by which frameworks place them.
	HostVolumes []hostaccess.Volume
	// Protected are host paths that may never be a host volume, besides the data dir and
	// hostaccess.AlwaysProtected: key and secret files, a master's data dir on the same host.
	Protected []string
	// TLS, when set, serves the agent's API over TLS, asking every caller for a certificate the
	// CA signed (only masters call it), and reaches masters over TLS with its own.
	TLS *tlsconf.TLS
	// Faults, when set, can cut this agent off the masters (the chaos harness's partitions):
	// gossip, its calls to masters and masters' calls to it.
	Faults *faultnet.Switch
	// Fetch configures the fetching of tasks' artifacts; its cache defaults to
	// DataDir/fetch-cache.
	Fetch fetcher.Config
	// RuntimeCheckEvery is how often the agent asks an executor that can say so (Available)
	// whether it can run tasks (default 500 ms).
	RuntimeCheckEvery time.Duration
}

// complete fills in the defaults of what is not set and refuses what is missing, New's first
// step: the data dir (made here), the executor, the masters to join, the hostname, the resources
// (detected unless given), and where fetched artifacts are cached.
func (cfg *Config) complete() error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryEvery == 0 {
		cfg.RetryEvery = time.Second
	}
	if cfg.DataDir == "" {
		return errors.New("agent: --data-dir is required")
	}
	if cfg.Executor == nil {
		return errors.New("agent: no executor")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 2 * time.Minute
	}
	if cfg.RuntimeCheckEvery == 0 {
		cfg.RuntimeCheckEvery = 500 * time.Millisecond
	}
	if len(cfg.Join) == 0 {
		return errors.New("agent: --join is required (a master's gossip address)")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("agent: hostname: %w", err)
		}
		cfg.Hostname = h
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	if cfg.Resources.IsEmpty() {
		r, err := DetectResources(cfg.DataDir)
		if err != nil {
			return err
		}
		cfg.Resources = r
	}
	if err := cfg.Resources.Validate(); err != nil {
		return fmt.Errorf("agent: --resources: %w", err)
	}
	if cfg.Fetch.CacheDir == "" {
		cfg.Fetch.CacheDir = filepath.Join(cfg.DataDir, "fetch-cache")
	}
	if cfg.Fetch.Logger == nil {
		cfg.Fetch.Logger = cfg.Logger.With("component", "fetcher")
	}
	return nil
}

// checkAccess refuses an API open beyond loopback to anyone (AccessLine), and sets the
// attributes that tell frameworks what the agent allows tasks (attributes).
func (cfg *Config) checkAccess() error {
	if _, err := AccessLine(cfg.HTTPAddr, cfg.ClusterSecret, cfg.TLS); err != nil {
		return err
	}
	attrs, err := cfg.attributes()
	if err != nil {
		return err
	}
	cfg.Attributes = attrs
	return nil
}

// ParseAttributes reads "rack:r1;zone:a".
func ParseAttributes(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("agent: attribute %q: want name:value", part)
		}
		if strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("agent: attribute name %q has a space (masters refuse it)", k)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("agent: attribute %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// DetectResources reads the machine: every cpu, memory less what the system keeps (1 GiB, or
// half of a small machine), the data dir's disk less 5 GiB (or half), and ports 31000-32000.
func DetectResources(dataDir string) (resources.Resources, error) {
	r := resources.Resources{CPUs: float64(runtime.NumCPU()), Ports: resources.Ranges{{Begin: 31000, End: 32000}}}
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return r, fmt.Errorf("agent: memory: %w", err)
	}
	memMiB := float64(si.Totalram) * float64(si.Unit) / (1 << 20)
	r.Mem = memMiB - min(1024, memMiB/2)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dataDir, &fs); err != nil {
		return r, fmt.Errorf("agent: disk of %s: %w", dataDir, err)
	}
	diskMiB := float64(fs.Blocks) * float64(fs.Bsize) / (1 << 20)
	r.Disk = diskMiB - min(5120, diskMiB/2)
	return r.Add(resources.Resources{}), nil // rounds to Mesos's precision
}

// ErrOpenAPI: the agent's API would listen beyond loopback with nobody asked who calls it.
var ErrOpenAPI = errors.New("agent: an API open to the network")

// AccessLine says who may call an agent's API on httpAddr, for the line the agent prints at
// start; beyond loopback it refuses to run without the cluster secret or mutual TLS, since
// whoever reaches the API may launch tasks.
func AccessLine(httpAddr, secret string, t *tlsconf.TLS) (string, error) {
	switch {
	case secret != "" && t.Mutual():
		return "masters only: callers show the cluster secret and a certificate the cluster's CA signed", nil
	case secret != "":
		return "masters only: callers show the cluster secret", nil
	case t.Mutual():
		return "masters only: callers show a certificate the cluster's CA signed", nil
	case auth.Loopback(httpAddr):
		return "OPEN to this machine: no --cluster-secret-file, anyone on this host may launch tasks (it listens on loopback only)", nil
	}
	return "", fmt.Errorf("%w: --http %s is reachable beyond this machine, and whoever reaches it could run tasks on it: give --cluster-secret-file (the masters' too) or --tls-cert, --tls-key and --tls-ca", ErrOpenAPI, httpAddr)
}

// attributes are the agent's own attributes and those that tell frameworks what it allows:
// privileged containers, root tasks, its host volumes (each checked against the paths tasks
// must never see).
func (cfg Config) attributes() (map[string]string, error) {
	attrs := make(map[string]string, len(cfg.Attributes)+len(cfg.HostVolumes)+2)
	for k, v := range cfg.Attributes {
		if k == api.PrivilegedAttribute || k == hostaccess.RootAttribute || strings.HasPrefix(k, hostaccess.AttributePrefix) {
			return nil, fmt.Errorf("agent: attribute %s is the agent's own: use --allow-privileged, --allow-root-tasks or --host-volume", k)
		}
		attrs[k] = v
	}
	if cfg.AllowPrivileged {
		attrs[api.PrivilegedAttribute] = "true"
	}
	if cfg.AllowRootTasks {
		attrs[hostaccess.RootAttribute] = "true"
	}
	if err := CheckHostVolumes(cfg.HostVolumes, append([]string{cfg.DataDir}, cfg.Protected...)); err != nil {
		return nil, err
	}
	for _, v := range cfg.HostVolumes {
		k, val := v.Attribute()
		attrs[k] = val
	}
	return attrs, nil
}

// CheckHostVolumes refuses host volumes an agent may not declare: a name given twice, a path
// that does not exist, or one that is, holds or lies in a protected path (the agent's data dir,
// its key and secret files, hostaccess.AlwaysProtected) or is a system dir asked read-write.
func CheckHostVolumes(vols []hostaccess.Volume, protected []string) error {
	never := append(slices.Clone(protected), hostaccess.AlwaysProtected...)
	names := map[string]bool{}
	for _, v := range vols {
		if names[v.Name] {
			return fmt.Errorf("agent: --host-volume %s given twice", v.Name)
		}
		names[v.Name] = true
		if err := hostaccess.Protected(v.Path, v.ReadOnly, never); err != nil {
			return fmt.Errorf("agent: --host-volume %s: %w", v, err)
		}
		if _, err := os.Stat(v.Path); err != nil {
			return fmt.Errorf("agent: --host-volume %s: %w", v, err)
		}
	}
	return nil
}
