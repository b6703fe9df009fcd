package main

import (
	"log/slog"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/chronos"
	"github.com/agora-sched/agora/frameworks/marathon"
	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/raft"
	"github.com/urfave/cli/v2"
)

// embedded lists the frameworks the masters embed, for agora master and agora dev alike: the
// replicated-store namespace each keeps its state in, its commands' applier, and how it is made
// (then Registered with the master, before the master runs). Adding one is a line here.
var embedded = []struct {
	name      string // its logs' component
	namespace string
	applier   func() raft.Applier
	construct func(frameworks.Config) (registrar, error)
}{
	{"marathon", marathon.Namespace, marathon.Applier, maker(marathon.New)},
	{"chronos", chronos.Namespace, chronos.Applier, maker(chronos.New)},
}

// registrar is a framework made and ready to add itself to its host.
type registrar interface{ Register() }

func maker[F registrar](newFramework func(frameworks.Config) (F, error)) func(frameworks.Config) (registrar, error) {
	return func(cfg frameworks.Config) (registrar, error) { return newFramework(cfg) }
}

// frameworkAppliers are the replicated-store namespaces of the embedded frameworks.
func frameworkAppliers() map[string]raft.Applier {
	appliers := map[string]raft.Applier{}
	for _, fw := range embedded {
		appliers[fw.namespace] = fw.applier()
	}
	return appliers
}

// startFrameworks registers the embedded frameworks with a master: they run while it leads,
// and their APIs are served by any master (forwarded to the leader).
func startFrameworks(c *cli.Context, m *master.Master, logger *slog.Logger) error {
	ports, err := servicePorts(c)
	if err != nil {
		return err
	}
	role, err := marathonRole(c)
	if err != nil {
		return err
	}
	for _, fw := range embedded {
		cfg := frameworks.Config{Host: m.FrameworkHost(fw.namespace), Logger: logger.With("component", fw.name), ServicePorts: ports}
		if fw.name == "marathon" {
			cfg.Role = role // --marathon-role, Marathon's --mesos_role
		}
		f, err := fw.construct(cfg)
		if err != nil {
			return err
		}
		f.Register()
	}
	return nil
}
