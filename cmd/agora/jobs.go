package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/frameworks/chronos"
	"github.com/agora-sched/agora/pkg/client"
)

// jobView is what the CLI reads of GET /v1/jobs?embed=...
type jobView struct {
	chronos.Job
	Schedules []struct {
		chronos.Schedule
		NextRunAt *time.Time `json:"nextRunAt"`
	} `json:"schedules"`
	ActiveRuns     []chronos.Run           `json:"activeRuns"`
	HistorySummary *chronos.HistorySummary `json:"historySummary"`
}

func jobCommand() *cli.Command {
	return &cli.Command{
		Name:  "job",
		Usage: "batch jobs: cron schedules and DAGs (agora job add|list|run|runs|logs)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add jobs from a JSON file (one job spec or an array, parents first); an existing job is replaced",
				ArgsUsage: "FILE.json",
				Flags:     clientFlags(),
				Action:    jobAdd,
			},
			{
				Name:   "list",
				Usage:  "every job with its schedule, next run and last results",
				Flags:  clientFlags(),
				Action: jobList,
			},
			{
				Name:      "run",
				Usage:     "start a run now; --wait follows it to its end and exits with its exit status",
				ArgsUsage: "JOB",
				Flags:     append(clientFlags(), &cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "follow the run until it ends"}),
				Action:    jobRun,
			},
			{
				Name:      "runs",
				Usage:     "the job's active and kept finished runs, newest first",
				ArgsUsage: "JOB",
				Flags:     clientFlags(),
				Action:    jobRuns,
			},
			{
				Name:      "logs",
				Usage:     "the output of a run's latest task (--stderr for its error stream)",
				ArgsUsage: "JOB RUN",
				Flags:     append(clientFlags(), &cli.BoolFlag{Name: "stderr", Usage: "show stderr instead of stdout"}),
				Action:    jobLogs,
			},
		},
	}
}

func jobAdd(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{"agora job add FILE.json: give one file"}
	}
	data, err := os.ReadFile(c.Args().First())
	if err != nil {
		return err
	}
	var specs []json.RawMessage
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(data, &specs); err != nil {
			return fmt.Errorf("%s: %v", c.Args().First(), err)
		}
	} else {
		specs = []json.RawMessage{data}
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		var head struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(spec, &head); err != nil {
			return fmt.Errorf("%s: %v", c.Args().First(), err)
		}
		var out jobView
		verb := "added"
		err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(head.ID), nil, nil)
		switch {
		case err == nil:
			verb = "replaced"
			err = cl.Do(c.Context, http.MethodPut, "/v1/jobs/"+url.PathEscape(head.ID), spec, &out)
		case isStatus(err, http.StatusNotFound) || head.ID == "":
			err = cl.Do(c.Context, http.MethodPost, "/v1/jobs", spec, &out)
		}
		if err != nil {
			return fmt.Errorf("job %q: %w", head.ID, err)
		}
		fmt.Fprintf(c.App.Writer, "job %s %s\n", out.ID, verb)
	}
	return nil
}

// positional splits a command's arguments into the positional ones and the bool flags among
// them: urfave/cli stops reading flags at the first positional argument, and the grammar puts
// them after it (agora job run ID --wait). names are the flags' names and aliases.
func positional(c *cli.Context, names ...string) (args []string, set bool) {
	for _, a := range c.Args().Slice() {
		if name := strings.TrimLeft(a, "-"); strings.HasPrefix(a, "-") && slices.Contains(names, name) {
			set = true
			continue
		}
		args = append(args, a)
	}
	return args, set
}

func isStatus(err error, code int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == code
}

func jobList(c *cli.Context) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var jobs []jobView
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs?embed=activeRuns,historySummary", nil, &jobs); err != nil {
		return err
	}
	if c.String("output") == "json" {
		return printJSON(c.App.Writer, jobs)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCHEDULE\tNEXT RUN\tACTIVE\tSUCCESSES\tFAILURES\tMISSED\tLAST SUCCESS")
	for _, j := range jobs {
		sched, next := "-", "-"
		if len(j.Dependencies) > 0 {
			sched = "after " + strings.Join(j.Dependencies, ", ")
		}
		for i, s := range j.Schedules {
			if i == 0 {
				sched = s.Cron
				if s.Timezone != "" && s.Timezone != "UTC" {
					sched += " (" + s.Timezone + ")"
				}
				if !*s.Enabled {
					sched += " (disabled)"
				}
			}
			if s.NextRunAt != nil && (next == "-" || s.NextRunAt.Format(time.RFC3339) < next) {
				next = s.NextRunAt.Format(time.RFC3339)
			}
		}
		h := j.HistorySummary
		last := "-"
		if h.LastSuccessAt != nil {
			last = h.LastSuccessAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", j.ID, sched, next, len(j.ActiveRuns), h.SuccessCount, h.FailureCount, h.MissedCount, last)
	}
	return tw.Flush()
}

func jobRun(c *cli.Context) error {
	args, wait := positional(c, "wait", "w")
	wait = wait || c.Bool("wait")
	if len(args) != 1 {
		return usageError{"agora job run JOB [--wait]: give the job's id"}
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	id := args[0]
	var r chronos.Run
	if err := cl.Do(c.Context, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/runs", nil, &r); err != nil {
		return err
	}
	if !wait {
		if c.String("output") == "json" {
			return printJSON(c.App.Writer, r)
		}
		fmt.Fprintf(c.App.Writer, "run %s of %s started (agora job runs %s)\n", r.ID, id, id)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "run %s of %s: %s\n", r.ID, id, r.Status)
	final, err := followRun(c.Context, cl, c.App.Writer, id, r)
	if err != nil {
		return err
	}
	took := "-"
	if final.CompletedAt != nil {
		took = final.CompletedAt.Sub(final.CreatedAt).Round(10 * time.Millisecond).String()
	}
	if final.Status == chronos.RunSuccess {
		fmt.Fprintf(c.App.Writer, "run %s SUCCESS in %s\n", final.ID, took)
		return nil
	}
	code := 1
	if final.ExitStatus != nil && *final.ExitStatus > 0 && *final.ExitStatus < 256 {
		code = *final.ExitStatus
	}
	return exitStatus{code: code, msg: fmt.Sprintf("run %s FAILED after %s: %s", final.ID, took, final.Reason)}
}

// followRun polls a run, printing each change of its status or attempt, until it ends. Ctrl-C
// stops the watching, not the run.
func followRun(ctx context.Context, cl *client.Client, w io.Writer, job string, r chronos.Run) (chronos.Run, error) {
	last := r.Status
	attempts := len(r.Tasks)
	for r.Status != chronos.RunSuccess && r.Status != chronos.RunFailed {
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("stopped watching; run %s goes on (agora job runs %s)", r.ID, job)
		case <-time.After(250 * time.Millisecond):
		}
		var next chronos.Run
		if err := cl.Do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(job)+"/runs/"+url.PathEscape(r.ID), nil, &next); err != nil {
			if ctx.Err() == nil && isStatus(err, http.StatusServiceUnavailable) {
				continue // a leader change: ask again
			}
			return r, err
		}
		r = next
		if len(r.Tasks) != attempts {
			attempts = len(r.Tasks)
			t := r.Tasks[attempts-1]
			fmt.Fprintf(w, "  attempt %d: task %s on %s\n", attempts, t.ID, t.Host)
		}
		if r.Status != last {
			last = r.Status
			line := "  " + r.Status
			if r.Status == chronos.RunInitial && r.NextAttemptAt != nil {
				line += fmt.Sprintf(" (retry %d at %s)", r.Retries, r.NextAttemptAt.Format(time.RFC3339))
			}
			fmt.Fprintln(w, line)
		}
	}
	return r, nil
}

func jobRuns(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError{"agora job runs JOB: give the job's id"}
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var runs []chronos.Run
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(c.Args().First())+"/runs?include=finished", nil, &runs); err != nil {
		return err
	}
	if c.String("output") == "json" {
		return printJSON(c.App.Writer, runs)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATUS\tTRIGGER\tCREATED\tDURATION\tATTEMPTS\tEXIT\tREASON")
	for _, r := range runs {
		took, exit := "-", "-"
		if r.CompletedAt != nil {
			took = r.CompletedAt.Sub(r.CreatedAt).Round(10 * time.Millisecond).String()
		}
		if r.ExitStatus != nil {
			exit = fmt.Sprint(*r.ExitStatus)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Status, r.Trigger, r.CreatedAt.Format(time.RFC3339), took, len(r.Tasks), exit, r.Reason)
	}
	return tw.Flush()
}

// jobLogs finds the run's latest task and its agent, and prints the task's output from it.
func jobLogs(c *cli.Context) error {
	args, stderr := positional(c, "stderr")
	if len(args) != 2 {
		return usageError{"agora job logs JOB RUN [--stderr]: give the job's id and the run's"}
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var r chronos.Run
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(args[0])+"/runs/"+url.PathEscape(args[1]), nil, &r); err != nil {
		return err
	}
	if len(r.Tasks) == 0 {
		return fmt.Errorf("run %s has not launched a task yet (%s)", r.ID, r.Status)
	}
	t := r.Tasks[len(r.Tasks)-1]
	agents, err := cl.Agents(c.Context)
	if err != nil {
		return err
	}
	addr := ""
	for _, a := range agents {
		if a.ID == t.AgentID {
			addr = a.HTTP
		}
	}
	if addr == "" {
		return fmt.Errorf("agent %s of task %s is not registered", t.AgentID, t.ID)
	}
	stream := "stdout"
	if stderr || c.Bool("stderr") {
		stream = "stderr"
	}
	u := fmt.Sprintf("http://%s/v1/tasks/%s/logs?stream=%s", addr, url.PathEscape(t.ID), stream)
	req, err := http.NewRequestWithContext(c.Context, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent %s answered %d: %s", addr, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	_, err = io.Copy(c.App.Writer, resp.Body)
	return err
}
