// The master's API for the frameworks embedded in it, and the types and errors they name: thin
// forwards to the parts that do the work. FrameworkHost is that API as the frameworks take it
// (frameworks.Host): they import no master package.

package master

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/agora-sched/agora/master/clockcheck"
	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/keyring"
	"github.com/agora-sched/agora/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// SchedulerConfig tunes the leader's two-level scheduling: scheduler.Config.
type SchedulerConfig = scheduler.Config

// Session is one subscription of a framework: scheduler.Session.
type Session = scheduler.Session

// Errors of the scheduler API (master/scheduler says when each comes).
var (
	ErrNotReady          = scheduler.ErrNotReady
	ErrUnknownFramework  = scheduler.ErrUnknownFramework
	ErrNotSubscribed     = scheduler.ErrNotSubscribed
	ErrSubscriptionEnded = scheduler.ErrSubscriptionEnded
)

// Subscribe registers an embedded framework with the scheduler, or re-registers it with
// info.ID: the in-process twin of SUBSCRIBE on POST /api/v1/scheduler. It works on the leader
// only (embedded frameworks run as leader services); elsewhere it fails with ErrNotReady. The
// framework's principal is auth.Embedded, which no token can have: no API caller can subscribe
// or call as it.
func (m *Master) Subscribe(ctx context.Context, info api.FrameworkInfo) (*Session, error) {
	if info.Principal != "" && info.Principal != auth.Embedded {
		return nil, &api.FieldError{Field: "subscribe.framework_info.principal", Msg: fmt.Sprintf("%q: an embedded framework's principal is %s", info.Principal, auth.Embedded)}
	}
	info.Principal = auth.Embedded
	return m.sched.Subscribe(ctx, info)
}

// RegisterEmbedded names a framework embedded in the masters (by the name it subscribes with).
// A framework of that name that an older build registered, with no principal, is then the
// embedded one's: no API caller can take its id before it subscribes again. Call it before Run.
func (m *Master) RegisterEmbedded(name string) { m.sched.RegisterEmbedded(name) }

// HandleLeader adds an endpoint that the leader answers (an embedded framework's API, which
// reads the leader's memory): any other master forwards the request to it, as it does writes.
// Patterns are net/http's ("GET /v2/apps/{id...}"). Call it before Run.
func (m *Master) HandleLeader(pattern string, h http.Handler) { m.http.HandleLeader(pattern, h) }

// Agents lists the agents of the registry that have not been removed, from this master's copy:
// frameworks check with it that some agent could ever run what they accept.
func (m *Master) Agents(ctx context.Context) ([]api.Agent, error) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	agents, err := registry.Agents(v)
	var out []api.Agent
	for _, ag := range agents {
		if ag.RemovedAt == nil {
			out = append(out, ag)
		}
	}
	return out, err
}

// AgentViews is Agents with where each stands with this master while it leads (its state, why
// it is unavailable, its use; elsewhere the registry's records only): frameworks say with it
// which agents make no offers, and why.
func (m *Master) AgentViews(ctx context.Context) ([]api.AgentView, error) {
	agents, err := m.Agents(ctx)
	if err != nil {
		return nil, err
	}
	return m.sched.AgentViews(agents), nil
}

// Info is what GET /v1/info answers about this node: httpapi.Info.
type Info = httpapi.Info

// ContainerdInfo names the containerd a dev node runs its tasks on: httpapi.ContainerdInfo.
type ContainerdInfo = httpapi.ContainerdInfo

// LocalKeyringFile is the keyring a master makes in its data dir, and uses from then on, when
// it is given none (Config.SecretsKeyring).
const LocalKeyringFile = secrets.LocalKeyringFile

// SecretKeyError says why this master cannot decrypt a stored secret: secrets.KeyError.
type SecretKeyError = secrets.KeyError

// SecretsKeyring is the keyring this master seals and opens secrets with.
func (m *Master) SecretsKeyring() *keyring.Keyring { return m.secrets.Keyring() }

// SetSecretsKeyring replaces the keys secrets are sealed and opened with (a reload of
// --secrets-keyring). On the leader, secrets sealed with another key than the new primary, and
// any still in plain text, are sealed again with it.
func (m *Master) SetSecretsKeyring(k *keyring.Keyring) { m.secrets.SetKeyring(k) }

// Secret reads a secret's value from this master's copy of the store (frameworks resolve their
// tasks' secret references with it on the leader). It fails with api.ErrNoSecret when there is none,
// and with a *SecretKeyError when this master's keys do not open it.
func (m *Master) Secret(ctx context.Context, name string) (string, error) {
	return m.secrets.Get(ctx, name)
}

// DefaultMaxClockSkew is --max-clock-skew's default (clockcheck.DefaultMaxSkew says why).
const DefaultMaxClockSkew = clockcheck.DefaultMaxSkew

// CheckClock says whether this master's wall clock may be used now for decisions that depend
// on it (when cron runs are due), as master/clockcheck judges it.
func (m *Master) CheckClock() clock.Verdict { return m.clockGuard.Verdict() }

// Clock is the wall clock this master and the frameworks it hosts decide with (Config.Clock).
func (m *Master) Clock() clock.Clock { return m.cfg.Clock }

// MaxClockSkew is how far this master's clock may be off the others' (Config.MaxClockSkew).
func (m *Master) MaxClockSkew() time.Duration { return m.cfg.MaxClockSkew }

// FrameworkHost is this master as the frameworks embedded in it see it: what frameworks.Host
// asks for, and nothing else, for one framework: the store it sees is its own namespace. Its
// methods forward to the master's.
type FrameworkHost struct {
	m         *Master
	namespace string
}

// FrameworkHost is the host an embedded framework whose state is the store's namespace is
// given (frameworks.Config.Host).
func (m *Master) FrameworkHost(namespace string) FrameworkHost {
	return FrameworkHost{m: m, namespace: namespace}
}

// Subscribe is Master.Subscribe for a framework that starts with the leader's term: while the
// scheduler is not ready yet it tries again every 50 ms, until ctx ends.
func (h FrameworkHost) Subscribe(ctx context.Context, info api.FrameworkInfo) (api.Session, error) {
	for {
		ss, err := h.m.Subscribe(ctx, info)
		if err == nil {
			return ss, nil
		}
		if !errors.Is(err, ErrNotReady) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Embed runs run as a leader service named after the framework (RegisterLeaderService), and
// names the framework as embedded (RegisterEmbedded). Call it before Run.
func (h FrameworkHost) Embed(framework string, run func(context.Context) error) {
	h.m.RegisterLeaderService(LeaderServiceFunc{ServiceName: framework, Func: run})
	h.m.RegisterEmbedded(framework)
}

// Agents is Master.Agents.
func (h FrameworkHost) Agents(ctx context.Context) ([]api.Agent, error) { return h.m.Agents(ctx) }

// AgentViews is Master.AgentViews.
func (h FrameworkHost) AgentViews(ctx context.Context) ([]api.AgentView, error) {
	return h.m.AgentViews(ctx)
}

// Store is the framework's namespace of the replicated store (Master.Store).
func (h FrameworkHost) Store() raft.Namespace { return h.m.Store().Namespace(h.namespace) }

// HandleLeader is Master.HandleLeader.
func (h FrameworkHost) HandleLeader(pattern string, hd http.Handler) { h.m.HandleLeader(pattern, hd) }

// DescribeServices is Master.DescribeServices.
func (h FrameworkHost) DescribeServices(framework string, describe func(context.Context) ([]api.ServiceInfo, error)) {
	h.m.DescribeServices(framework, describe)
}

// Metrics is the registry GET /metrics serves (Master.Metrics).
func (h FrameworkHost) Metrics() prometheus.Registerer { return h.m.Metrics() }

// Secret is Master.Secret.
func (h FrameworkHost) Secret(ctx context.Context, name string) (string, error) {
	return h.m.Secret(ctx, name)
}

// Clock is Master.Clock.
func (h FrameworkHost) Clock() clock.Clock { return h.m.Clock() }

// CheckClock is Master.CheckClock.
func (h FrameworkHost) CheckClock() clock.Verdict { return h.m.CheckClock() }

// MaxClockSkew is Master.MaxClockSkew.
func (h FrameworkHost) MaxClockSkew() time.Duration { return h.m.MaxClockSkew() }
