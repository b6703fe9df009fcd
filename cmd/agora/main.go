// Command agora is Agora's one binary: master, agent, the one-process dev cluster, and the
// client commands. It only wires packages together; the work happens in master/, agent/,
// frameworks/ and raft/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/version"
)

// Exit codes scripts can rely on.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // the command line was wrong
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError marks a wrong command line, so it exits with exitUsage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitStatus ends the command with a given exit code (a job run's exit status).
type exitStatus struct {
	code int
	msg  string
}

func (e exitStatus) Error() string { return e.msg }

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "agora: %v\n", err)
	var es exitStatus
	if errors.As(err, &es) {
		return es.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// parsing is held while urfave/cli parses a command line: its parsing writes package variables
// of cli (its help flag, its help command), and tests call run many times at once in one
// process. It is let go of when the command's own action starts.
var parsing sync.Mutex

// run builds the command tree and runs it with args; it is main without the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	parsing.Lock()
	parsed := sync.OnceFunc(parsing.Unlock)
	defer parsed()
	app := &cli.App{
		Name:    "agora",
		Usage:   "a two-level cluster scheduler: replicated masters, containerd agents, services and cron jobs",
		Version: version.Get().String(),
		Description: examples("agora dev                                   # a one-machine cluster: master, agent, both frameworks",
			"agora app add examples/apps/hello.json --wait",
			"agora job add examples/jobs/etl.json && agora job run etl.extract --wait",
			"agora task list --state running",
			"agora <command> --help                      # every command has its own help and examples"),
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"AGORA_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text (for terminals) or json (one object per line, for log collectors)", EnvVars: []string{"AGORA_LOG_FORMAT"}},
		},
		Commands: []*cli.Command{
			devCommand(),
			masterCommand(),
			agentCommand(),
			clusterCommand(),
			frameworkCommand(),
			appCommand(),
			deployCommand(),
			jobCommand(),
			taskCommand(),
			quotaCommand(),
			imageCommand(),
			tlsCommand(),
			lbCommand(),
			completionCommand(),
		},
		OnUsageError:   onUsageError,
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors to exit codes
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Sprintf("no such command %q; see 'agora --help'", c.Args().First())}
			}
			return cli.ShowAppHelp(c)
		},
	}
	setUsageErrors(app.Commands, parsed)
	return app.RunContext(ctx, args)
}

// onUsageError makes a wrong flag a usage error, exit status 2, at every level of the tree.
func onUsageError(c *cli.Context, err error, isSubcommand bool) error {
	return usageError{err.Error()}
}

// setUsageErrors makes a wrong flag a usage error at every level of the tree, and lets every
// command take its flags after its arguments (interspersed); parsed is called as a command's
// action starts.
func setUsageErrors(cmds []*cli.Command, parsed func()) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		if cmd.Action != nil {
			action := interspersed(cmd.Action)
			cmd.Action = func(c *cli.Context) error { parsed(); return action(c) }
		} else if len(cmd.Subcommands) > 0 {
			cmd.Action = verbs(cmd) // its first word is the verb, whatever flags follow
		}
		setUsageErrors(cmd.Subcommands, parsed)
	}
}

// verbs is the action of a noun (agora app, agora tls ca): alone, its help; with a word that
// is none of its verbs, a usage error naming the word and listing the verbs.
func verbs(noun *cli.Command) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() > 0 {
			return noSuchVerb(c, noun, c.Args().First(), "")
		}
		return cli.ShowSubcommandHelp(c)
	}
}

// noSuchVerb is the usage error for a word that is none of a noun's verbs: it names the word
// and lists the verbs (and what the noun does alone, when it does something).
func noSuchVerb(c *cli.Context, noun *cli.Command, word, alone string) error {
	var names []string
	for _, sub := range noun.Subcommands {
		if !sub.Hidden && sub.Name != "help" {
			names = append(names, sub.Name)
		}
	}
	if alone != "" {
		alone = "; " + alone
	}
	path := commandPath(c)
	return usageError{fmt.Sprintf("%s: no such verb %q; the verbs are %s%s (see '%s --help')", path, word, strings.Join(names, ", "), alone, path)}
}

// commandPath is the command being run as typed: "agora tls ca". (In urfave/cli v2 a
// subcommand's own FullName lacks its parents.)
func commandPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" && (len(names) == 0 || names[len(names)-1] != ctx.Command.Name) {
			names = append(names, ctx.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(names, " ") // the root's command is the app's, "agora"
}

// newLogger makes the process's logger from --log-level and --log-format; packages get
// children of it.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level: %v", err)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format: want text or json, got %q", c.String("log-format"))}
}
