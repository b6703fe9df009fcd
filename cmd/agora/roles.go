package main

import (
	"context"
	"fmt"
	"os"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/master"
)

const defaultContainerdSock = "/run/containerd/containerd.sock"

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a one-node cluster in this process: a master, an agent on the local containerd, and the frameworks",
		Description: "Starts the embedded default cluster on this machine. State lives under --data-dir, the\n" +
			"HTTP API on --http (Marathon's port by default). `make run` starts a containerd first and then this.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: ".agora", Usage: "where the node keeps its state"},
			&cli.StringFlag{Name: "containerd", Value: defaultContainerdSock, Usage: "containerd socket", EnvVars: []string{"AGORA_CONTAINERD_SOCK"}},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:8080", Usage: "HTTP API address"},
		},
		Action: runDev,
	}
}

func runDev(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Sprintf("dev takes no arguments, got %q", c.Args().Slice())}
	}
	logger, err := newLogger(c)
	if err != nil {
		return err
	}
	dataDir := c.String("data-dir")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	ctrd, err := containerdVersion(c.Context, c.String("containerd"))
	if err != nil {
		return fmt.Errorf("dev: containerd at %s does not answer (start one with 'scripts/containerd.sh start', or pass --containerd SOCK): %w", c.String("containerd"), err)
	}
	srv, err := master.NewServer(master.Config{
		HTTPAddr: c.String("http"),
		Logger:   logger.With("component", "http"),
		Info: master.Info{
			Role:       "dev",
			DataDir:    dataDir,
			StartedAt:  time.Now().UTC(),
			Containerd: ctrd,
		},
	})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "agora dev is up\n  API:        http://%s  (try: curl http://%s/v1/info)\n  containerd: %s (%s)\n  data dir:   %s\nStop it with Ctrl-C.\n",
		srv.Addr(), srv.Addr(), ctrd.Address, ctrd.Version, dataDir)
	logger.Info("dev node started", "http", srv.Addr().String(), "containerd", ctrd.Address, "data_dir", dataDir)
	if err := srv.Serve(c.Context); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logger.Info("dev node stopped")
	return nil
}

// containerdVersion asks the containerd at sock for its version, within five seconds.
func containerdVersion(ctx context.Context, sock string) (*master.ContainerdInfo, error) {
	if _, err := os.Stat(sock); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, err := containerd.New(sock, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	v, err := client.Version(ctx)
	if err != nil {
		return nil, err
	}
	return &master.ContainerdInfo{Address: sock, Version: v.Version}, nil
}

// The master and agent roles are named here so `agora --help` shows the whole shape of the
// binary; they answer with what is missing until their issues land.
func masterCommand() *cli.Command {
	return &cli.Command{
		Name:      "master",
		Usage:     "run a replicated master (not in this build yet: use 'agora dev')",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			return fmt.Errorf("master: the replicated master is not in this build yet; run 'agora dev' for a one-node cluster")
		},
	}
}

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:      "agent",
		Usage:     "run an agent that runs tasks on containerd (not in this build yet: use 'agora dev')",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			return fmt.Errorf("agent: the agent is not in this build yet; run 'agora dev' for a one-node cluster")
		},
	}
}
