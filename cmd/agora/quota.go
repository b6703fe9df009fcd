package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/api"
)

// quotaCommand is agora quota set|list|remove: each role's guarantee and limit.
func quotaCommand() *cli.Command {
	return &cli.Command{
		Name:  "quota",
		Usage: "roles' quotas: a guarantee the allocator satisfies first, a limit it never offers past (agora quota set|list|remove)",
		Description: examples("agora quota set analytics --guarantee 'cpus:4;mem:8192' --limit 'cpus:8;mem:16384'",
			"agora quota list", "agora quota remove analytics"),
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "set a role's guarantee and limit (admins); resources not named are not guaranteed, or not limited",
				ArgsUsage: "ROLE",
				Description: examples("agora quota set analytics --guarantee 'cpus:4;mem:8192' --limit 'cpus:8;mem:16384'",
					"agora quota set batch --limit 'cpus:2'"),
				Flags: append(clientFlags(),
					&cli.StringFlag{Name: "guarantee", Usage: "what the role is guaranteed, e.g. 'cpus:4;mem:8192;disk:10000' (mem and disk in MiB)"},
					&cli.StringFlag{Name: "limit", Usage: "what the role is never offered past, e.g. 'cpus:8;mem:16384'"},
					&cli.BoolFlag{Name: "force", Usage: "set guarantees that the registered agents could not hold today"},
				),
				Action: func(c *cli.Context) error {
					if len(args(c)) != 1 {
						return usageError{"quota set takes one ROLE"}
					}
					role := args(c)[0]
					guarantee, err := parseQuantities(c.String("guarantee"))
					if err != nil {
						return usageError{"--guarantee: " + err.Error()}
					}
					limit, err := parseQuantities(c.String("limit"))
					if err != nil {
						return usageError{"--limit: " + err.Error()}
					}
					if len(guarantee) == 0 && len(limit) == 0 {
						return usageError{"quota set needs --guarantee, --limit or both"}
					}
					cl, err := newClient(c)
					if err != nil {
						return err
					}
					var q api.Quota
					req := api.QuotaRequest{Guarantee: guarantee, Limit: limit, Force: c.Bool("force")}
					if err := cl.Do(c.Context, http.MethodPut, "/v1/quota/"+url.PathEscape(role), req, &q); err != nil {
						return err
					}
					return show(c, q, func(w io.Writer) { quotaTable(w, []api.QuotaStatus{{Quota: q}}, false) })
				},
			},
			{
				Name:        "list",
				Usage:       "every role's quota and what its frameworks hold now",
				Description: examples("agora quota list", "agora quota list -o json"),
				Flags:       clientFlags(),
				Action: func(c *cli.Context) error {
					return list(c, "/v1/quota", func(w io.Writer, v struct {
						Quotas []api.QuotaStatus `json:"quotas"`
					}) {
						quotaTable(w, v.Quotas, true)
					})
				},
			},
			{
				Name:        "remove",
				Usage:       "remove a role's quota (admins): it is then neither guaranteed nor limited",
				ArgsUsage:   "ROLE",
				Description: examples("agora quota remove analytics"),
				Flags:       clientFlags(),
				Action: func(c *cli.Context) error {
					if len(args(c)) != 1 {
						return usageError{"quota remove takes one ROLE"}
					}
					role := args(c)[0]
					cl, err := newClient(c)
					if err != nil {
						return err
					}
					if err := cl.Do(c.Context, http.MethodDelete, "/v1/quota/"+url.PathEscape(role), nil, nil); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed the quota of %s\n", role)
					return nil
				},
			},
		},
	}
}

// parseQuantities reads 'cpus:4;mem:8192' into quantities by resource name ("": none).
func parseQuantities(s string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, fmt.Errorf("%q: want name:quantity", part)
		}
		if !slices.Contains(api.QuotaResources, name) {
			return nil, fmt.Errorf("%q: quota applies to %s", name, strings.Join(api.QuotaResources, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s given twice", name)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", name, value)
		}
		out[name] = v
	}
	return out, nil
}

// quantities writes quantities as 'cpus:4;mem:8192', in QuotaResources' order ("-": none).
func quantities(m map[string]float64) string {
	var parts []string
	for _, name := range api.QuotaResources {
		if v, ok := m[name]; ok {
			parts = append(parts, name+":"+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	return dash(strings.Join(parts, ";"))
}

func quotaTable(w io.Writer, qs []api.QuotaStatus, use bool) {
	if use {
		fmt.Fprintln(w, "ROLE\tGUARANTEE\tLIMIT\tALLOCATED\tSET BY")
	} else {
		fmt.Fprintln(w, "ROLE\tGUARANTEE\tLIMIT\tSET BY")
	}
	for _, q := range qs {
		if use {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", q.Role, quantities(q.Guarantee), quantities(q.Limit), quantities(q.Allocated), dash(q.Principal))
		} else {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", q.Role, quantities(q.Guarantee), quantities(q.Limit), dash(q.Principal))
		}
	}
}
