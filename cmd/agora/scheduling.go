package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

// schedulerFlags tune the leader's two-level scheduling; masters and dev nodes take them.
func schedulerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "offer-timeout", Value: 30 * time.Second, Usage: "rescind an offer a framework neither used nor declined by then"},
		&cli.DurationFlag{Name: "allocation-interval", Value: time.Second, Usage: "how often offers are made besides after events"},
		&cli.DurationFlag{Name: "agent-reregister-timeout", Value: time.Minute, Usage: "after a leader change, an agent that has not registered again by then is unreachable"},
		&cli.DurationFlag{Name: "agent-removal-timeout", Value: 5 * time.Minute, Usage: "an agent unreachable this long is removed; its tasks end as TASK_GONE or TASK_LOST"},
		&cli.DurationFlag{Name: "agent-gossip-grace", Value: 10 * time.Second, Usage: "an agent that no gossip member carries this long after it registered (registered by hand and silent, or its process gone) is unreachable: no offers of it"},
		&cli.StringFlag{Name: "role-weights", Usage: "DRF weights of roles, e.g. 'prod:3;batch:1' (default 1 each)"},
		&cli.StringFlag{Name: "service-ports", Value: "10000-20000", Usage: "the range apps' service ports are assigned from (Marathon's --local_port_min and --local_port_max), both ends included"},
		&cli.StringFlag{Name: "marathon-role", Value: api.DefaultRole, Usage: "the role the service framework registers with (Marathon's --mesos_role); apps with persistent volumes need one other than \"*\" to reserve resources for"},
	}
}

// marathonRole reads --marathon-role: a role name (Mesos's rules), "*" by default.
func marathonRole(c *cli.Context) (string, error) {
	r := c.String("marathon-role")
	if err := api.ValidateRole(r); err != nil && r != api.DefaultRole {
		return "", usageError{fmt.Sprintf("--marathon-role: %v", err)}
	}
	return r, nil
}

// servicePorts reads --service-ports: one range of ports, "10000-20000".
func servicePorts(c *cli.Context) (resources.Range, error) {
	rs, err := resources.ParseRanges(c.String("service-ports"))
	if err == nil && len(rs) != 1 {
		err = fmt.Errorf("want one range, e.g. 10000-20000")
	}
	if err == nil && (rs[0].Begin == 0 || rs[0].End > 65535) {
		err = fmt.Errorf("ports are 1 to 65535")
	}
	if err != nil {
		return resources.Range{}, usageError{fmt.Sprintf("--service-ports %q: %v", c.String("service-ports"), err)}
	}
	return rs[0], nil
}

// parseWeights reads "prod:3;batch:1".
func parseWeights(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		role, w, ok := strings.Cut(part, ":")
		weight, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
		if !ok || strings.TrimSpace(role) == "" || err != nil || !(weight > 0) || math.IsInf(weight, 0) {
			return nil, fmt.Errorf("%q: want role:weight with a weight above 0", part)
		}
		out[strings.TrimSpace(role)] = weight
	}
	return out, nil
}

func schedulerConfig(c *cli.Context) (master.SchedulerConfig, error) {
	for _, name := range []string{"offer-timeout", "allocation-interval", "agent-reregister-timeout", "agent-removal-timeout", "agent-gossip-grace"} {
		if c.Duration(name) <= 0 {
			return master.SchedulerConfig{}, usageError{fmt.Sprintf("--%s must be more than 0, got %s", name, c.Duration(name))}
		}
	}
	weights, err := parseWeights(c.String("role-weights"))
	if err != nil {
		return master.SchedulerConfig{}, usageError{fmt.Sprintf("--role-weights: %v", err)}
	}
	if _, err := servicePorts(c); err != nil { // read by the frameworks once the master runs
		return master.SchedulerConfig{}, err
	}
	if _, err := marathonRole(c); err != nil { // likewise
		return master.SchedulerConfig{}, err
	}
	return master.SchedulerConfig{
		RoleWeights:            weights,
		OfferTimeout:           c.Duration("offer-timeout"),
		AllocationInterval:     c.Duration("allocation-interval"),
		AgentReregisterTimeout: c.Duration("agent-reregister-timeout"),
		AgentRemovalTimeout:    c.Duration("agent-removal-timeout"),
		AgentGossipGrace:       c.Duration("agent-gossip-grace"),
	}, nil
}
