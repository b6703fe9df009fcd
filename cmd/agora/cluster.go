package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/client"
)

// clientFlags are the flags of every command that talks to a master.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "master", Aliases: []string{"m"}, Value: "http://127.0.0.1:8080", Usage: "a master's API address (any master: followers forward)", EnvVars: []string{"AGORA_MASTER"}},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"},
	}
}

func newClient(c *cli.Context) (*client.Client, error) {
	switch c.String("output") {
	case "table", "json":
	default:
		return nil, usageError{fmt.Sprintf("--output: want table or json, got %q", c.String("output"))}
	}
	cl, err := client.New(c.String("master"))
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return cl, nil
}

// clusterAction fetches GET /v1/cluster and hands it to show.
func clusterAction(show func(c *cli.Context, v api.ClusterView) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		v, err := cl.Cluster(c.Context)
		if err != nil {
			return err
		}
		return show(c, v)
	}
}

// printJSON writes v indented, for --output json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the masters and members of a cluster",
		Subcommands: []*cli.Command{
			{
				Name:  "members",
				Usage: "every master and agent gossip knows, with its status",
				Flags: clientFlags(),
				Action: clusterAction(func(c *cli.Context, v api.ClusterView) error {
					if c.String("output") == "json" {
						return printJSON(c.App.Writer, v.Members)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tROLE\tADDRESS\tHTTP\tSTATUS")
					for _, m := range v.Members {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.Address, dash(m.HTTP), m.Status)
					}
					return tw.Flush()
				}),
			},
			{
				Name:  "masters",
				Usage: "the masters in raft, each with its own raft state",
				Flags: clientFlags(),
				Action: clusterAction(func(c *cli.Context, v api.ClusterView) error {
					if c.String("output") == "json" {
						return printJSON(c.App.Writer, v.Masters)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tRAFT\tHTTP\tSTATE\tAPPLIED\tGOSSIP")
					for _, m := range v.Masters {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.Address, dash(m.HTTP), m.State, m.AppliedIndex, m.Gossip)
					}
					return tw.Flush()
				}),
			},
			{
				Name:  "leader",
				Usage: "the leading master",
				Flags: clientFlags(),
				Action: clusterAction(func(c *cli.Context, v api.ClusterView) error {
					if v.Leader == nil {
						return fmt.Errorf("there is no leader (asked %s)", c.String("master"))
					}
					if c.String("output") == "json" {
						return printJSON(c.App.Writer, v.Leader)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tRAFT\tHTTP")
					fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Leader.ID, v.Leader.Address, dash(v.Leader.HTTP))
					return tw.Flush()
				}),
			},
			{
				Name:      "remove-master",
				Usage:     "take a master that is gone for good out of raft",
				ArgsUsage: "ID",
				Flags:     clientFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError{"remove-master takes one master id"}
					}
					cl, err := newClient(c)
					if err != nil {
						return err
					}
					if err := cl.RemoveMaster(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed master %s\n", c.Args().First())
					return nil
				},
			},
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
