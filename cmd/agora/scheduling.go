package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/task"
)

// schedulerFlags tune the leader's two-level scheduling; masters and dev nodes take them.
func schedulerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "offer-timeout", Value: 30 * time.Second, Usage: "rescind an offer a framework neither used nor declined by then"},
		&cli.DurationFlag{Name: "allocation-interval", Value: time.Second, Usage: "how often offers are made besides after events"},
		&cli.DurationFlag{Name: "agent-reregister-timeout", Value: time.Minute, Usage: "after a leader change, an agent that has not registered again by then is unreachable"},
		&cli.DurationFlag{Name: "agent-removal-timeout", Value: 5 * time.Minute, Usage: "an agent unreachable this long is removed; its tasks end as TASK_GONE or TASK_LOST"},
		&cli.StringFlag{Name: "role-weights", Usage: "DRF weights of roles, e.g. 'prod:3;batch:1' (default 1 each)"},
	}
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
	for _, name := range []string{"offer-timeout", "allocation-interval", "agent-reregister-timeout", "agent-removal-timeout"} {
		if c.Duration(name) <= 0 {
			return master.SchedulerConfig{}, usageError{fmt.Sprintf("--%s must be more than 0, got %s", name, c.Duration(name))}
		}
	}
	weights, err := parseWeights(c.String("role-weights"))
	if err != nil {
		return master.SchedulerConfig{}, usageError{fmt.Sprintf("--role-weights: %v", err)}
	}
	return master.SchedulerConfig{
		RoleWeights:            weights,
		OfferTimeout:           c.Duration("offer-timeout"),
		AllocationInterval:     c.Duration("allocation-interval"),
		AgentReregisterTimeout: c.Duration("agent-reregister-timeout"),
		AgentRemovalTimeout:    c.Duration("agent-removal-timeout"),
	}, nil
}

func frameworkCommand() *cli.Command {
	return &cli.Command{
		Name:  "framework",
		Usage: "the frameworks the leader knows (agora framework list)",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "every registered framework, connected or within its failover timeout",
			Flags: clientFlags(),
			Action: func(c *cli.Context) error {
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				fws, err := cl.Frameworks(c.Context)
				if err != nil {
					return err
				}
				if c.String("output") == "json" {
					return printJSON(c.App.Writer, fws)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tROLE\tCONNECTED\tTASKS\tALLOCATED\tSHARE")
				for _, fw := range fws {
					connected := "yes"
					if !fw.Connected {
						connected = "no, failover until " + fw.FailoverDeadline.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%.3f\n", fw.Info.ID, fw.Info.Name, fw.Info.Role, connected, fw.Tasks, fw.Allocated, fw.Share)
				}
				return tw.Flush()
			},
		}},
	}
}

func taskCommand() *cli.Command {
	return &cli.Command{
		Name:  "task",
		Usage: "the tasks the leader knows (agora task list)",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "every task with its latest state; --state TASK_RUNNING (repeatable) keeps only those",
			Flags: append(clientFlags(), &cli.StringSliceFlag{Name: "state", Usage: "only tasks in this state, e.g. TASK_RUNNING or running"}),
			Action: func(c *cli.Context) error {
				var states []task.State
				for _, s := range c.StringSlice("state") {
					st, err := task.ParseState(s)
					if err != nil {
						return usageError{fmt.Sprintf("--state: %v", err)}
					}
					states = append(states, st)
				}
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				all, err := cl.Tasks(c.Context)
				if err != nil {
					return err
				}
				tasks := all[:0]
				for _, t := range all {
					if len(states) == 0 || slices.Contains(states, t.State) {
						tasks = append(tasks, t)
					}
				}
				if c.String("output") == "json" {
					return printJSON(c.App.Writer, tasks)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tFRAMEWORK\tAGENT\tSINCE\tMESSAGE")
				for _, t := range tasks {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.TaskID, t.State, dash(t.FrameworkID), dash(t.AgentID), t.Timestamp.Format(time.RFC3339), t.Message)
				}
				return tw.Flush()
			},
		}},
	}
}
