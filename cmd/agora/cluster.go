package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/api"
)

// examples is a command's Description: the command lines of its --help's Examples section.
func examples(lines ...string) string {
	return "Examples:\n   " + strings.Join(lines, "\n   ")
}

// clusterAction fetches GET /v1/cluster and hands it to show.
func clusterAction(then func(c *cli.Context, v api.ClusterView) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		v, err := cl.Cluster(c.Context)
		if err != nil {
			return err
		}
		return then(c, v)
	}
}

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:        "cluster",
		Usage:       "the masters and members of a cluster (agora cluster members|masters|leader|remove-master)",
		Description: examples("agora cluster members", "agora cluster leader --master http://10.0.0.2:8080"),
		Subcommands: []*cli.Command{
			{
				Name:        "members",
				Usage:       "every master and agent gossip knows, with its status",
				Description: examples("agora cluster members", "agora cluster members --master http://10.0.0.2:8080 -o json"),
				Flags:       clientFlags(),
				Action: clusterAction(func(c *cli.Context, v api.ClusterView) error {
					return show(c, v.Members, func(w io.Writer) {
						fmt.Fprintln(w, "NAME\tROLE\tADDRESS\tHTTP\tSTATUS")
						for _, m := range v.Members {
							fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.Address, dash(m.HTTP), m.Status)
						}
					})
				}),
			},
			{
				Name:        "masters",
				Usage:       "the masters in raft, each with its own raft state",
				Description: examples("agora cluster masters"),
				Flags:       clientFlags(),
				Action: clusterAction(func(c *cli.Context, v api.ClusterView) error {
					return show(c, v.Masters, func(w io.Writer) {
						fmt.Fprintln(w, "ID\tRAFT\tHTTP\tSTATE\tAPPLIED\tGOSSIP")
						for _, m := range v.Masters {
							fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.Address, dash(m.HTTP), m.State, m.AppliedIndex, m.Gossip)
						}
					})
				}),
			},
			{
				Name:        "leader",
				Usage:       "the leading master",
				Description: examples("agora cluster leader", "agora cluster leader -o yaml"),
				Flags:       clientFlags(),
				Action: clusterAction(func(c *cli.Context, v api.ClusterView) error {
					if v.Leader == nil {
						return fmt.Errorf("there is no leader (asked %s)", c.String("master"))
					}
					return show(c, v.Leader, func(w io.Writer) {
						fmt.Fprintln(w, "ID\tRAFT\tHTTP")
						fmt.Fprintf(w, "%s\t%s\t%s\n", v.Leader.ID, v.Leader.Address, dash(v.Leader.HTTP))
					})
				}),
			},
			{
				Name:        "remove-master",
				Usage:       "take a master that is gone for good out of raft",
				ArgsUsage:   "ID",
				Description: examples("agora cluster remove-master m-1234abcd"),
				Flags:       clientFlags(),
				Action: func(c *cli.Context) error {
					if len(args(c)) != 1 {
						return usageError{"agora cluster remove-master ID: give one master id"}
					}
					if err := checkID(c, args(c)[0]); err != nil {
						return err
					}
					cl, err := newClient(c)
					if err != nil {
						return err
					}
					id := args(c)[0]
					if err := cl.RemoveMaster(c.Context, id); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed master %s\n", id)
					return nil
				},
			},
		},
	}
}
