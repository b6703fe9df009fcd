package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/urfave/cli/v2"

	agentcontainerd "github.com/agora-sched/agora/agent/containerd"
)

func imageCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "containerd", Value: defaultContainerdSock, Usage: "containerd socket", EnvVars: []string{"AGORA_CONTAINERD_SOCK"}},
		&cli.StringFlag{Name: "containerd-namespace", Value: agentcontainerd.DefaultNamespace, Usage: "the agent's containerd namespace"},
	}
	connect := func(c *cli.Context) (*containerd.Client, error) {
		client, err := containerd.New(c.String("containerd"), containerd.WithTimeout(10*time.Second))
		if err != nil {
			return nil, fmt.Errorf("image: containerd at %s: %w", c.String("containerd"), err)
		}
		return client, nil
	}
	return &cli.Command{
		Name:        "image",
		Usage:       "images on this machine's agent: import an archive for hosts without a registry, list",
		Description: examples("agora image import bin/testapp.tar", "agora image list"),
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import an OCI image layout or 'docker save' archive into the agent's containerd",
				ArgsUsage: "FILE.tar",
				Description: "Run it on the agent's host, as the user that may use containerd's socket:\n\n" +
					"  agora image import app.tar          # then launch tasks with the image's name" + "\n\n" +
					examples("agora image import bin/testapp.tar", "agora image import --containerd /run/containerd/containerd.sock app.tar"),
				Flags: flags,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError{"image import takes one FILE.tar"}
					}
					f, err := os.Open(c.Args().First())
					if err != nil {
						return fmt.Errorf("image import: %w", err)
					}
					defer f.Close()
					client, err := connect(c)
					if err != nil {
						return err
					}
					defer client.Close()
					names, err := agentcontainerd.Import(c.Context, client, c.String("containerd-namespace"), f)
					if err != nil {
						return fmt.Errorf("image import %s: %w", c.Args().First(), err)
					}
					if len(names) == 0 {
						return fmt.Errorf("image import %s: the archive names no image", c.Args().First())
					}
					for _, n := range names {
						fmt.Fprintf(c.App.Writer, "imported %s\n", n)
					}
					return nil
				},
			},
			{
				Name:        "list",
				Usage:       "the images in the agent's containerd namespace",
				Description: examples("agora image list"),
				Flags:       flags,
				Action: func(c *cli.Context) error {
					client, err := connect(c)
					if err != nil {
						return err
					}
					defer client.Close()
					imgs, err := agentcontainerd.Images(c.Context, client, c.String("containerd-namespace"))
					if err != nil {
						return fmt.Errorf("image list: %w", err)
					}
					tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tDIGEST\tCREATED")
					for _, im := range imgs {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", im.Name, im.Target.Digest, im.CreatedAt.Format(time.RFC3339))
					}
					return tw.Flush()
				},
			},
		},
	}
}
