package frameworks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/clock"
	"github.com/agora-sched/agora/pkg/resources"
)

// DefaultServicePorts is the range service ports are assigned from when Config names none:
// Marathon's defaults of --local_port_min and --local_port_max, both ends included.
var DefaultServicePorts = resources.Range{Begin: 10000, End: 20000}

// Config configures an embedded framework (marathon.Config and chronos.Config are this type).
type Config struct {
	Host   Host // the node it runs in
	Logger *slog.Logger
	Clock  clock.Clock // default: the host's
	// Name and Role it registers with (default: the framework's own name, and "*");
	// FailoverTimeout is how long the master keeps its tasks while it is away (a leader change),
	// default a week.
	Name            string
	Role            string
	FailoverTimeout time.Duration
	// Tick bounds how long it waits between looks at its state besides after events (default
	// 1 s).
	Tick time.Duration
	// ServicePorts is the range the service framework assigns apps' service ports from
	// (Marathon's --local_port_min and --local_port_max), default 10000-20000; the batch
	// framework has no service ports.
	ServicePorts resources.Range
}

// WithDefaults checks the config and fills in what is not set; name is the framework's own.
func (c Config) WithDefaults(name string) (Config, error) {
	if c.Host == nil {
		return c, fmt.Errorf("%s: no host", name)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = c.Host.Clock()
	}
	if c.Name == "" {
		c.Name = name
	}
	if c.Role == "" {
		c.Role = api.DefaultRole
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = 7 * 24 * time.Hour
	}
	if c.Tick == 0 {
		c.Tick = time.Second
	}
	if c.ServicePorts == (resources.Range{}) {
		c.ServicePorts = DefaultServicePorts
	}
	if r := c.ServicePorts; r.Begin == 0 || r.Begin > r.End || r.End > 65535 {
		return c, fmt.Errorf("%s: service ports %d-%d: want a range within 1-65535, its first port not after its last", name, r.Begin, r.End)
	}
	return c, nil
}

// Subscribe registers the framework with the host's scheduler — again as the framework of id,
// when it has one — waiting while the scheduler is not ready yet. Embedded frameworks are
// partition-aware: an unreachable agent's tasks are TASK_UNREACHABLE, not lost.
func (c Config) Subscribe(ctx context.Context, id string) (api.Session, error) {
	return c.Host.Subscribe(ctx, api.FrameworkInfo{
		ID: id, Name: c.Name, Role: c.Role, FailoverTimeout: c.FailoverTimeout.Seconds(),
		Capabilities: []string{api.CapabilityPartitionAware},
	})
}
