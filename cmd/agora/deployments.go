package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/client"
)

// deployment is Marathon's deployment as GET /v2/deployments lists it.
type deployment struct {
	ID             string   `json:"id"`
	Version        string   `json:"version"`
	AffectedApps   []string `json:"affectedApps"`
	CurrentStep    int      `json:"currentStep"`
	TotalSteps     int      `json:"totalSteps"`
	CurrentActions []struct {
		Action string `json:"action"`
		App    string `json:"app"`
	} `json:"currentActions"`
}

// watchDeployment follows a deployment until it is gone from /v2/deployments, printing a line
// whenever its step or the app's instances change, and then a result line. Ctrl-C stops the
// watching, not the deployment.
func watchDeployment(ctx context.Context, cl *client.Client, w io.Writer, depID, appID string, removing bool) error {
	start := time.Now()
	last := ""
	var lines progressLines
	for {
		var deps []deployment
		err := cl.Do(ctx, http.MethodGet, "/v2/deployments", nil, &deps)
		if err != nil && !retryable(ctx, err) {
			return err
		}
		var d *deployment
		for i := range deps {
			if deps[i].ID == depID {
				d = &deps[i]
			}
		}
		if err == nil && appID != "" {
			a, _, aerr := fetchApp(ctx, cl, appID)
			switch {
			case removing && isStatus(aerr, http.StatusNotFound) && d == nil:
				// Gone from the API at once; removed once its deployment has killed every instance.
				fmt.Fprintf(w, "app %s removed in %s\n", appID, since(start))
				return nil
			case removing && isStatus(aerr, http.StatusNotFound):
				if line := fmt.Sprintf("  step %d/%d: %s", d.CurrentStep, d.TotalSteps, actions(*d)); line != last {
					fmt.Fprintln(w, line)
					last = line
				}
			case aerr != nil && !retryable(ctx, aerr):
				return aerr
			case aerr == nil:
				line := fmt.Sprintf("  %s", a.progress())
				if d != nil {
					line = fmt.Sprintf("  step %d/%d: %s", d.CurrentStep, d.TotalSteps, a.progress())
				}
				if out, ok := lines.next(line, a.WaitingReason, time.Now()); ok && (d != nil || removing) {
					fmt.Fprintln(w, out)
				}
				if d == nil && !removing {
					fmt.Fprintf(w, "app %s deployed in %s: %s\n", appID, since(start), a.progress())
					return nil
				}
			}
		}
		if err == nil && appID == "" && d == nil {
			fmt.Fprintf(w, "deployment %s done in %s\n", depID, since(start))
			return nil
		}
		if err == nil && appID == "" && d != nil {
			line := fmt.Sprintf("  step %d/%d: %s", d.CurrentStep, d.TotalSteps, actions(*d))
			if line != last {
				fmt.Fprintln(w, line)
				last = line
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped watching; deployment %s goes on (agora deploy watch %s)", depID, depID)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// whyEvery is how often a progress line is printed again when only the counts in why the app
// waits change (another offer declined for the same reasons).
const whyEvery = 15 * time.Second

// progressLines decides which progress lines of a deployment to print: each change of the
// instances, and of why they wait; when only the numbers in why change, at most one line every
// whyEvery, so that a long wait does not print a line per offer.
type progressLines struct {
	line, why string
	at        time.Time
}

// counts are what changes in why an app waits when only more offers were declined.
var counts = regexp.MustCompile(`[0-9]+|\boffers?\b`)

// next answers the line to print for the progress line and why the app waits, and whether to
// print it.
func (p *progressLines) next(line, why string, now time.Time) (string, bool) {
	sameKind := counts.ReplaceAllString(why, "#") == counts.ReplaceAllString(p.why, "#")
	if line == p.line && why == p.why || line == p.line && sameKind && now.Sub(p.at) < whyEvery {
		return "", false
	}
	p.line, p.why, p.at = line, why, now
	if why != "" {
		line += " — " + why
	}
	return line, true
}

func actions(d deployment) string {
	var out []string
	for _, a := range d.CurrentActions {
		out = append(out, a.Action+" "+a.App)
	}
	return dash(strings.Join(out, ", "))
}

// retryable says whether an error is worth asking again: a leader change (503) or a master
// that does not answer for a moment, while the command has not been stopped.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var e *client.Error
	if errors.As(err, &e) {
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusBadGateway
	}
	return true
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

func deployCommand() *cli.Command {
	return &cli.Command{
		Name:        "deploy",
		Usage:       "the Marathon framework's deployments (agora deploy list|watch|cancel)",
		Description: examples("agora deploy list", "agora deploy watch", "agora deploy cancel DEPLOYMENT"),
		Subcommands: []*cli.Command{
			{
				Name:        "list",
				Usage:       "deployments in progress, with their step and current actions",
				Description: examples("agora deploy list"),
				Flags:       clientFlags(),
				Action: func(c *cli.Context) error {
					return list(c, "/v2/deployments", func(w io.Writer, deps []deployment) {
						fmt.Fprintln(w, "ID\tAPPS\tSTEP\tACTIONS\tVERSION")
						for _, d := range deps {
							fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\n", d.ID, strings.Join(d.AffectedApps, ","), d.CurrentStep, d.TotalSteps, actions(d), d.Version)
						}
					})
				},
			},
			{
				Name:        "watch",
				Usage:       "follow a deployment (default: every deployment in progress) until it is done",
				ArgsUsage:   "[DEPLOYMENT]",
				Description: examples("agora deploy watch", "agora deploy watch 5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43"),
				Flags:       clientFlags(),
				Action:      deployWatch,
			},
			{
				Name:        "cancel",
				Usage:       "stop a deployment and roll its apps back to where they were (--force: stop without rolling back)",
				ArgsUsage:   "DEPLOYMENT",
				Description: examples("agora deploy cancel 5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43", "agora deploy cancel 5ed4c0c5-9ff8-4a6f-a0cd-f57f59a34b43 --force"),
				Flags:       append(clientFlags(), &cli.BoolFlag{Name: "force", Usage: "stop where it is, without a rollback"}),
				Action: func(c *cli.Context) error {
					id, cl, err := argClient(c, "agora deploy cancel DEPLOYMENT [--force]: give the deployment's id")
					if err != nil {
						return err
					}
					var res changeResult
					if err := cl.Do(c.Context, http.MethodDelete, "/v2/deployments/"+id+forceQuery(c), nil, &res); err != nil {
						return err
					}
					if c.Bool("force") {
						fmt.Fprintf(c.App.Writer, "deployment %s stopped\n", id)
						return nil
					}
					fmt.Fprintf(c.App.Writer, "deployment %s cancelled; rollback: deployment %s (agora deploy watch %s)\n", id, dash(res.DeploymentID), res.DeploymentID)
					return nil
				},
			},
		},
	}
}

func deployWatch(c *cli.Context) error {
	a := args(c)
	if len(a) > 1 {
		return usageError{"agora deploy watch [DEPLOYMENT]: give at most one deployment id"}
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var deps []deployment
	if err := cl.Do(c.Context, http.MethodGet, "/v2/deployments", nil, &deps); err != nil {
		return err
	}
	if len(a) == 1 {
		for _, d := range deps {
			if d.ID == a[0] {
				return watchOne(c, cl, d)
			}
		}
		fmt.Fprintf(c.App.Writer, "deployment %s is not in progress: done or cancelled\n", a[0])
		return nil
	}
	if len(deps) == 0 {
		fmt.Fprintln(c.App.Writer, "no deployment in progress")
		return nil
	}
	for _, d := range deps {
		if err := watchOne(c, cl, d); err != nil {
			return err
		}
	}
	return nil
}

func watchOne(c *cli.Context, cl *client.Client, d deployment) error {
	fmt.Fprintf(c.App.Writer, "deployment %s of %s\n", d.ID, strings.Join(d.AffectedApps, ", "))
	app := ""
	if len(d.AffectedApps) == 1 {
		app = d.AffectedApps[0]
	}
	removing := false
	for _, act := range d.CurrentActions {
		removing = removing || act.Action == "StopApplication"
	}
	return watchDeployment(c.Context, cl, c.App.Writer, d.ID, app, removing)
}
