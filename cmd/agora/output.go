package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/agora-sched/agora/pkg/client"
	"github.com/agora-sched/agora/pkg/tlsconf"
)

// clientFlags are the flags of every command that talks to a master.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "master", Aliases: []string{"m"}, Value: "http://127.0.0.1:8080", Usage: "a master's API address (any master: followers forward)", EnvVars: []string{"AGORA_MASTER"}},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table, json or yaml", EnvVars: []string{"AGORA_OUTPUT"}},
		&cli.StringFlag{Name: "token", Usage: "an API token (when the masters have a --tokens-file)", EnvVars: []string{"AGORA_TOKEN"}},
		&cli.StringFlag{Name: "tls-ca", Usage: "the CA (PEM) to verify https:// masters with (default: the system's roots)", EnvVars: []string{"AGORA_TLS_CA"}},
	}
}

// waitFlag is --wait of the commands that start something long: follow it to its end.
var waitFlag = &cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "follow the change until it is done, with live progress; Ctrl-C stops watching, not the change"}

func newClient(c *cli.Context) (*client.Client, error) {
	switch c.String("output") {
	case "table", "json", "yaml":
	default:
		return nil, usageError{fmt.Sprintf("--output: want table, json or yaml, got %q", c.String("output"))}
	}
	cl, err := client.New(c.String("master"))
	if err != nil {
		return nil, usageError{err.Error()}
	}
	cl = cl.WithToken(c.String("token"))
	if ca := c.String("tls-ca"); ca != "" {
		pool, err := tlsconf.Pool(ca)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		cl = cl.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	return cl, nil
}

// show writes v as --output asks: indented JSON, YAML, or the table that table writes to a
// tabwriter (flushed here).
func show(c *cli.Context, v any, table func(w io.Writer)) error {
	switch c.String("output") {
	case "json":
		return printJSON(c.App.Writer, v)
	case "yaml":
		return printYAML(c.App.Writer, v)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// list GETs path from a master into a T and shows it: the JSON or YAML as read, or the table.
func list[T any](c *cli.Context, path string, table func(w io.Writer, v T)) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var v T
	if err := cl.Do(c.Context, http.MethodGet, path, nil, &v); err != nil {
		return err
	}
	return show(c, v, func(w io.Writer) { table(w, v) })
}

// printJSON writes v indented, for --output json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printYAML writes v as YAML with the field names and order of its JSON: JSON is read as a
// YAML node tree (which keeps the order) and written in block style.
func printYAML(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	blockStyle(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, child := range n.Content {
		blockStyle(child)
	}
}

// dash stands in for an empty table cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type argsKey struct{}

// args are the command's positional arguments. urfave/cli stops reading flags at the first
// positional argument; the grammar allows them anywhere (agora app scale web 4 --wait), so
// interspersed reads the flags among the arguments before the action runs and keeps the rest.
func args(c *cli.Context) []string {
	if a, ok := c.Context.Value(argsKey{}).([]string); ok {
		return a
	}
	return c.Args().Slice()
}

// interspersed wraps a command's action: flags given after positional arguments are set on
// the command, the others are what args returns. "--" ends the flags.
func interspersed(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		var rest []string
		in := c.Args().Slice()
		for i := 0; i < len(in); i++ {
			a := in[i]
			if a == "--" {
				rest = append(rest, in[i+1:]...)
				break
			}
			if len(a) < 2 || a[0] != '-' || isNumber(a) {
				rest = append(rest, a) // -5 is an argument (no flag is named by digits): its command says what is wrong with it
				continue
			}
			name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			f := lookupFlag(c.Command, name)
			if f == nil {
				return usageError{fmt.Sprintf("flag provided but not defined: %s (see '%s --help')", a, commandPath(c))}
			}
			if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
				value, hasValue = "true", true
			}
			if !hasValue {
				if i+1 == len(in) {
					return usageError{fmt.Sprintf("flag needs an argument: %s", a)}
				}
				i++
				value = in[i]
			}
			for _, n := range f.Names() { // each alias holds its own value
				if err := c.Set(n, value); err != nil {
					return usageError{fmt.Sprintf("%s: %v", a, err)}
				}
			}
		}
		c.Context = context.WithValue(c.Context, argsKey{}, rest)
		return action(c)
	}
}

// isNumber says whether a command-line word is a number, such as -5 or -1.5.
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// checkID refuses, as a usage error, an id given on the command line that a URL would not carry
// as written: one with an empty, "." or ".." segment (agora app show x/../hello would show
// /hello), or with '?' or '#'.
func checkID(c *cli.Context, id string) error {
	for _, seg := range strings.Split(strings.Trim(id, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			what := fmt.Sprintf("a %q segment", seg)
			if seg == "" {
				what = "an empty segment"
			}
			return usageError{fmt.Sprintf("%s: the id %q has %s, which would name another path; give the id itself", commandPath(c), id, what)}
		}
	}
	if i := strings.IndexAny(id, "?#"); i >= 0 {
		return usageError{fmt.Sprintf("%s: the id %q has %q, which no id has", commandPath(c), id, id[i])}
	}
	return nil
}

func lookupFlag(cmd *cli.Command, name string) cli.Flag {
	if cmd == nil {
		return nil
	}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
