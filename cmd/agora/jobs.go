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
	"strings"
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
		NextRunAt *chronos.MetronomeTime `json:"nextRunAt"`
	} `json:"schedules"`
	ActiveRuns     []chronos.RunView       `json:"activeRuns"`
	HistorySummary *chronos.HistorySummary `json:"historySummary"`
}

func jobCommand() *cli.Command {
	return &cli.Command{
		Name:        "job",
		Usage:       "batch jobs: cron schedules and DAGs (agora job add|list|show|run|runs|logs|remove)",
		Description: examples("agora job add examples/jobs/etl.json", "agora job run etl.extract --wait", "agora job list"),
		Subcommands: []*cli.Command{
			{
				Name:        "add",
				Usage:       "add jobs from a JSON file (one job spec or an array, parents first); an existing job is replaced",
				ArgsUsage:   "FILE.json",
				Description: examples("agora job add examples/jobs/etl.json"),
				Flags:       clientFlags(),
				Action:      jobAdd,
			},
			{
				Name:        "list",
				Usage:       "every job with its schedule, next run and last results",
				Description: examples("agora job list", "agora job list -o yaml"),
				Flags:       clientFlags(),
				Action:      jobList,
			},
			{
				Name:        "show",
				Usage:       "one job: its command, schedules with their next run, active runs and history",
				ArgsUsage:   "JOB",
				Description: examples("agora job show etl.extract"),
				Flags:       clientFlags(),
				Action:      jobShow,
			},
			{
				Name:        "run",
				Usage:       "start a run now; --wait follows it to its end and exits with its exit status",
				ArgsUsage:   "JOB",
				Description: examples("agora job run etl.extract --wait"),
				Flags:       append(clientFlags(), &cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "follow the run until it ends; Ctrl-C stops watching, not the run"}),
				Action:      jobRun,
			},
			{
				Name:        "runs",
				Usage:       "the job's active and kept finished runs, newest first",
				ArgsUsage:   "JOB",
				Description: examples("agora job runs etl.load"),
				Flags:       clientFlags(),
				Action:      jobRuns,
			},
			{
				Name:        "logs",
				Usage:       "the output of a run's latest task (--stderr for its error stream, -f to follow it)",
				ArgsUsage:   "JOB RUN",
				Description: examples("agora job logs etl.load 20261125103000abcd", "agora job logs etl.load 20261125103000abcd --stderr"),
				Flags:       append(clientFlags(), stderrFlag, followFlag),
				Action:      jobLogs,
			},
			{
				Name:        "remove",
				Usage:       "delete a job; --stop-runs kills its active runs first (without it, a job with active runs is kept)",
				ArgsUsage:   "JOB",
				Description: examples("agora job remove cleanup", "agora job remove etl.extract --stop-runs"),
				Flags:       append(clientFlags(), &cli.BoolFlag{Name: "stop-runs", Usage: "stop the job's active runs"}),
				Action:      jobRemove,
			},
		},
	}
}

var (
	stderrFlag = &cli.BoolFlag{Name: "stderr", Usage: "show stderr instead of stdout"}
	followFlag = &cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing what the task writes until it ends; Ctrl-C stops"}
)

func jobAdd(c *cli.Context) error {
	file, err := oneArg(c, "agora job add FILE.json: give one file")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var specs []json.RawMessage
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(data, &specs); err != nil {
			return fmt.Errorf("%s: %v", file, err)
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
			return fmt.Errorf("%s: %v", file, err)
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

func isStatus(err error, code int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == code
}

func jobList(c *cli.Context) error {
	return list(c, "/v1/jobs?embed=activeRuns,historySummary", func(tw io.Writer, jobs []jobView) {
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
				if s.NextRunAt != nil && (next == "-" || s.NextRunAt.Time().Format(time.RFC3339) < next) {
					next = s.NextRunAt.Time().Format(time.RFC3339)
				}
			}
			h := j.HistorySummary
			last := "-"
			if h.LastSuccessAt != nil {
				last = h.LastSuccessAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", j.ID, sched, next, len(j.ActiveRuns), h.SuccessCount, h.FailureCount, h.MissedCount, last)
		}
	})
}

func jobRun(c *cli.Context) error {
	id, cl, err := argClient(c, "agora job run JOB [--wait]: give the job's id")
	if err != nil {
		return err
	}
	var r chronos.Run
	if err := cl.Do(c.Context, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/runs", nil, &r); err != nil {
		return err
	}
	if !c.Bool("wait") {
		if c.String("output") != "table" {
			return show(c, r, nil)
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
	var lines progressLines
	for r.Status != chronos.RunSuccess && r.Status != chronos.RunFailed {
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("stopped watching; run %s goes on (agora job runs %s)", r.ID, job)
		case <-time.After(250 * time.Millisecond):
		}
		var next chronos.RunView
		if err := cl.Do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(job)+"/runs/"+url.PathEscape(r.ID), nil, &next); err != nil {
			if ctx.Err() == nil && isStatus(err, http.StatusServiceUnavailable) {
				continue // a leader change: ask again
			}
			return r, err
		}
		r = next.Run
		if out, ok := lines.next("  "+r.Status, next.WaitingReason, time.Now()); ok && next.WaitingReason != "" {
			fmt.Fprintln(w, out)
		}
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
	id, cl, err := argClient(c, "agora job runs JOB: give the job's id")
	if err != nil {
		return err
	}
	var runs []chronos.RunView
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/runs?include=finished", nil, &runs); err != nil {
		return err
	}
	return show(c, runs, func(tw io.Writer) { runTable(tw, runs) })
}

// runTable lists runs; REASON is why a run failed, or why it waits to start.
func runTable(tw io.Writer, runs []chronos.RunView) {
	fmt.Fprintln(tw, "RUN\tSTATUS\tTRIGGER\tCREATED\tDURATION\tATTEMPTS\tEXIT\tREASON")
	for _, r := range runs {
		reason := r.Reason
		if reason == "" && r.WaitingReason != "" {
			reason = "waiting: " + r.WaitingReason
		}
		took, exit := "-", "-"
		if r.CompletedAt != nil {
			took = r.CompletedAt.Sub(r.CreatedAt).Round(10 * time.Millisecond).String()
		}
		if r.ExitStatus != nil {
			exit = fmt.Sprint(*r.ExitStatus)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Status, r.Trigger, r.CreatedAt.Format(time.RFC3339), took, len(r.Tasks), exit, reason)
	}
}

// jobLogs prints the output of the run's latest task.
func jobLogs(c *cli.Context) error {
	a := args(c)
	if len(a) != 2 {
		return usageError{"agora job logs JOB RUN [--stderr] [-f]: give the job's id and the run's"}
	}
	for _, id := range a {
		if err := checkID(c, id); err != nil {
			return err
		}
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var r chronos.Run
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(a[0])+"/runs/"+url.PathEscape(a[1]), nil, &r); err != nil {
		return err
	}
	if len(r.Tasks) == 0 {
		return fmt.Errorf("run %s has not launched a task yet (%s)", r.ID, r.Status)
	}
	t := r.Tasks[len(r.Tasks)-1]
	return printLogs(c, cl, t.ID, t.AgentID)
}

func jobShow(c *cli.Context) error {
	id, cl, err := argClient(c, "agora job show JOB: give the job's id")
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"?embed=activeRuns,history,historySummary,schedules", nil, &raw); err != nil {
		return err
	}
	var j jobView
	if err := json.Unmarshal(raw, &j); err != nil {
		return err
	}
	var runs []chronos.RunView
	if err := cl.Do(c.Context, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/runs?include=finished", nil, &runs); err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer) {
		fmt.Fprintf(w, "ID:\t%s\n", j.ID)
		if j.Description != "" {
			fmt.Fprintf(w, "DESCRIPTION:\t%s\n", j.Description)
		}
		what := j.Run.Cmd
		if j.Run.Docker != nil {
			what = strings.TrimSpace(j.Run.Docker.Image + " " + strings.Join(j.Run.Args, " "))
		}
		fmt.Fprintf(w, "RUNS:\t%s\n", what)
		fmt.Fprintf(w, "RESOURCES:\tcpus %g, mem %g MiB\n", j.Run.CPUs, j.Run.Mem)
		if len(j.Dependencies) > 0 {
			fmt.Fprintf(w, "AFTER:\t%s\n", strings.Join(j.Dependencies, ", "))
		}
		for _, s := range j.Schedules {
			next := "-"
			if s.NextRunAt != nil {
				next = s.NextRunAt.Time().Format(time.RFC3339)
			}
			state := ""
			if s.Enabled != nil && !*s.Enabled {
				state = " (disabled)"
			}
			fmt.Fprintf(w, "SCHEDULE %s:\t%s %s, %s%s; next %s\n", s.ID, s.Cron, s.Timezone, s.ConcurrencyPolicy, state, next)
		}
		if h := j.HistorySummary; h != nil {
			fmt.Fprintf(w, "RESULTS:\t%d successes, %d failures, %d missed\n", h.SuccessCount, h.FailureCount, h.MissedCount)
		}
		for _, r := range j.ActiveRuns {
			if r.WaitingReason != "" {
				fmt.Fprintf(w, "WAITING:\trun %s: %s\n", r.ID, r.WaitingReason)
			}
		}
		fmt.Fprintln(w)
		runTable(w, runs)
	})
}

func jobRemove(c *cli.Context) error {
	id, cl, err := argClient(c, "agora job remove JOB [--stop-runs]: give the job's id")
	if err != nil {
		return err
	}
	q := ""
	if c.Bool("stop-runs") {
		q = "?stopCurrentJobRuns=true"
	}
	if err := cl.Do(c.Context, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id)+q, nil, nil); err != nil {
		if isStatus(err, http.StatusConflict) {
			return fmt.Errorf("%w (agora job remove %s --stop-runs stops them)", err, id)
		}
		return err
	}
	fmt.Fprintf(c.App.Writer, "job %s removed\n", id)
	return nil
}
