package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/client"
	"github.com/agora-sched/agora/pkg/task"
)

// The operator's nouns besides apps and jobs: agents, frameworks, tasks.

func agentSubcommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:        "list",
			Usage:       "the agents registered with the cluster: state, resources used of total, tasks",
			Description: examples("agora agent list", "agora agent list -o json"),
			Flags:       clientFlags(),
			Action: func(c *cli.Context) error {
				return list(c, "/v1/agents", func(w io.Writer, agents []api.AgentView) {
					fmt.Fprintln(w, "ID\tHOSTNAME\tSTATE\tCPUS\tMEM (MiB)\tTASKS\tHTTP\tREGISTERED")
					for _, a := range agents {
						fmt.Fprintf(w, "%s\t%s\t%s\t%g/%g\t%g/%g\t%d\t%s\t%s\n", a.ID, a.Hostname, dash(a.State), a.Used.CPUs, a.Resources.CPUs,
							a.Used.Mem, a.Resources.Mem, a.Tasks, a.HTTP, a.RegisteredAt.Format(time.RFC3339))
					}
				})
			},
		},
		{
			Name:        "show",
			Usage:       "one agent: resources, attributes, state and its tasks",
			ArgsUsage:   "AGENT",
			Description: examples("agora agent show a-1a2b3c4d"),
			Flags:       clientFlags(),
			Action: func(c *cli.Context) error {
				id, cl, err := argClient(c, "agora agent show AGENT: give the agent's id")
				if err != nil {
					return err
				}
				var a struct {
					api.AgentView
					TaskList []api.TaskStatus `json:"task_list"`
				}
				if err := cl.Do(c.Context, http.MethodGet, "/v1/agents/"+url.PathEscape(id), nil, &a); err != nil {
					return err
				}
				return show(c, a, func(w io.Writer) {
					fmt.Fprintf(w, "ID:\t%s\nHOSTNAME:\t%s\nSTATE:\t%s\nAPI:\t%s\n", a.ID, a.Hostname, dash(a.State), a.HTTP)
					fmt.Fprintf(w, "RESOURCES:\t%s\nUSED:\t%s\n", a.Resources, a.Used)
					if len(a.Attributes) > 0 {
						var attrs []string
						for k, v := range a.Attributes {
							attrs = append(attrs, k+":"+v)
						}
						slices.Sort(attrs)
						fmt.Fprintf(w, "ATTRIBUTES:\t%s\n", strings.Join(attrs, ";"))
					}
					if a.DrainingSince != nil {
						fmt.Fprintf(w, "DRAINING SINCE:\t%s\n", a.DrainingSince.Format(time.RFC3339))
					}
					if a.Unavailable != "" {
						fmt.Fprintf(w, "UNAVAILABLE:\t%s\n", a.Unavailable)
					}
					fmt.Fprintln(w)
					taskTable(w, a.TaskList)
				})
			},
		},
		{
			Name: "drain",
			Usage: "stop offering an agent and kill its tasks (each with its grace period): frameworks get TASK_KILLED and " +
				"place them elsewhere; the agent stays drained, across leader changes, until 'agora agent reactivate'",
			ArgsUsage:   "AGENT",
			Description: examples("agora agent drain a-1a2b3c4d", "agora agent reactivate a-1a2b3c4d"),
			Flags:       clientFlags(),
			Action:      drainAction("drain"),
		},
		{
			Name:        "reactivate",
			Usage:       "offer a drained agent's resources again",
			ArgsUsage:   "AGENT",
			Description: examples("agora agent reactivate a-1a2b3c4d"),
			Flags:       clientFlags(),
			Action:      drainAction("reactivate"),
		},
	}
}

func drainAction(verb string) cli.ActionFunc {
	return func(c *cli.Context) error {
		id, err := oneID(c, "agora agent "+verb+" AGENT: give the agent's id")
		if err != nil {
			return err
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		var a api.AgentView
		if err := cl.Do(c.Context, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/"+verb, nil, &a); err != nil {
			return err
		}
		return show(c, a, func(w io.Writer) {
			if verb == "drain" {
				fmt.Fprintf(w, "agent %s (%s) drained: no new tasks; its %d running tasks are being killed\n", a.ID, a.Hostname, a.Tasks)
			} else {
				fmt.Fprintf(w, "agent %s (%s) reactivated: offered again\n", a.ID, a.Hostname)
			}
		})
	}
}

func frameworkCommand() *cli.Command {
	return &cli.Command{
		Name:        "framework",
		Usage:       "the frameworks the leader knows (agora framework list)",
		Description: examples("agora framework list"),
		Subcommands: []*cli.Command{{
			Name:        "list",
			Usage:       "every registered framework, connected or within its failover timeout",
			Description: examples("agora framework list"),
			Flags:       clientFlags(),
			Action: func(c *cli.Context) error {
				cl, err := newClient(c)
				if err != nil {
					return err
				}
				fws, err := cl.Frameworks(c.Context)
				if err != nil {
					return err
				}
				return show(c, fws, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tNAME\tROLE\tCONNECTED\tTASKS\tALLOCATED\tSHARE")
					for _, fw := range fws {
						connected := "yes"
						if !fw.Connected {
							connected = "no, failover until " + fw.FailoverDeadline.Format(time.RFC3339)
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%.3f\n", fw.Info.ID, fw.Info.Name, fw.Info.Role, connected, fw.Tasks, dash(fw.Allocated.String()), fw.Share)
					}
				})
			},
		}},
	}
}

func taskTable(w io.Writer, tasks []api.TaskStatus) {
	fmt.Fprintln(w, "ID\tSTATE\tFRAMEWORK\tAGENT\tSINCE\tMESSAGE")
	for _, t := range tasks {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.TaskID, t.State, dash(t.FrameworkID), dash(t.AgentID), t.Timestamp.Format(time.RFC3339), t.Message)
	}
}

func taskCommand() *cli.Command {
	return &cli.Command{
		Name:        "task",
		Usage:       "the tasks the leader knows (agora task list|show|logs|kill)",
		Description: examples("agora task list --state running", "agora task logs TASK -f", "agora task kill TASK"),
		Subcommands: []*cli.Command{
			{
				Name:        "list",
				Usage:       "every task with its latest state; --state TASK_RUNNING (repeatable) keeps only those",
				Description: examples("agora task list", "agora task list --state running"),
				Flags:       append(clientFlags(), &cli.StringSliceFlag{Name: "state", Usage: "only tasks in this state, e.g. TASK_RUNNING or running"}),
				Action:      taskList,
			},
			{
				Name:        "show",
				Usage:       "one task's latest status and where it runs",
				ArgsUsage:   "TASK",
				Description: examples("agora task show hello.6c1f2a3b"),
				Flags:       clientFlags(),
				Action:      taskShow,
			},
			{
				Name:        "logs",
				Usage:       "a task's stdout (--stderr: its stderr), through the masters from its agent; -f follows it",
				ArgsUsage:   "TASK",
				Description: examples("agora task logs hello.6c1f2a3b", "agora task logs hello.6c1f2a3b -f --stderr"),
				Flags:       append(clientFlags(), stderrFlag, followFlag),
				Action: func(c *cli.Context) error {
					id, cl, err := argClient(c, "agora task logs TASK [-f] [--stderr]: give the task's id")
					if err != nil {
						return err
					}
					return printLogs(c, cl, id, "")
				},
			},
			{
				Name:        "kill",
				Usage:       "kill a task (SIGTERM, its grace period, SIGKILL); its framework decides what follows (a service's instance is replaced)",
				ArgsUsage:   "TASK",
				Description: examples("agora task kill hello.6c1f2a3b", "agora task kill hello.6c1f2a3b --grace 0"),
				Flags:       append(clientFlags(), &cli.DurationFlag{Name: "grace", Value: -1, Usage: "time between SIGTERM and SIGKILL (default: the task's own)"}),
				Action:      taskKill,
			},
		},
	}
}

// taskList is agora task list [--state S].
func taskList(c *cli.Context) error {
	var states []task.State
	for _, s := range c.StringSlice("state") {
		st, err := task.ParseState(s)
		if err != nil {
			return usageError{fmt.Sprintf("--state: %v", err)}
		}
		states = append(states, st)
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	all, err := cl.Tasks(c.Context)
	if err != nil {
		return err
	}
	tasks := all[:0]
	for _, t := range all {
		if len(states) == 0 || slices.Contains(states, t.State) {
			tasks = append(tasks, t)
		}
	}
	return show(c, tasks, func(w io.Writer) { taskTable(w, tasks) })
}

// taskShow is agora task show TASK.
func taskShow(c *cli.Context) error {
	id, cl, err := argClient(c, "agora task show TASK: give the task's id")
	if err != nil {
		return err
	}
	var t struct {
		api.TaskStatus
		Hostname string `json:"hostname"`
		AgentAPI string `json:"agent_http"`
	}
	if err := cl.Do(c.Context, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), nil, &t); err != nil {
		return err
	}
	return show(c, t, func(w io.Writer) {
		fmt.Fprintf(w, "ID:\t%s\nSTATE:\t%s\nSINCE:\t%s\nFRAMEWORK:\t%s\nAGENT:\t%s (%s, %s)\n", t.TaskID, t.State,
			t.Timestamp.Format(time.RFC3339), dash(t.FrameworkID), dash(t.AgentID), dash(t.Hostname), dash(t.AgentAPI))
		if t.Healthy != nil {
			fmt.Fprintf(w, "HEALTHY:\t%t\n", *t.Healthy)
		}
		if t.ExitStatus != nil {
			fmt.Fprintf(w, "EXIT STATUS:\t%d\n", *t.ExitStatus)
		}
		if t.Reason != "" || t.Message != "" {
			fmt.Fprintf(w, "REASON:\t%s %s\n", t.Reason, t.Message)
		}
	})
}

// taskKill is agora task kill TASK [--grace D].
func taskKill(c *cli.Context) error {
	id, cl, err := argClient(c, "agora task kill TASK [--grace D]: give the task's id")
	if err != nil {
		return err
	}
	var body any
	if g := c.Duration("grace"); g >= 0 {
		body = map[string]float64{"grace_period_seconds": g.Seconds()}
	}
	if err := cl.Do(c.Context, http.MethodPost, "/v1/tasks/"+url.PathEscape(id)+"/kill", body, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "task %s: kill sent (agora task show %s)\n", id, id)
	return nil
}

// printLogs copies a task's stdout or stderr (--stderr) to the command's output, through the
// masters' GET /v1/tasks/{id}/logs, following it with -f. A task the leader has forgotten is
// read from agentID's API itself, when given.
func printLogs(c *cli.Context, cl *client.Client, taskID, agentID string) error {
	q := url.Values{"stream": {"stdout"}}
	if c.Bool("stderr") {
		q.Set("stream", "stderr")
	}
	if c.Bool("follow") {
		q.Set("follow", "true")
	}
	body, err := cl.Stream(c.Context, "/v1/tasks/"+url.PathEscape(taskID)+"/logs?"+q.Encode())
	if isStatus(err, http.StatusNotFound) && agentID != "" {
		body, err = agentLogs(c, cl, taskID, agentID, q)
	}
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(c.App.Writer, body)
	if c.Context.Err() != nil {
		return nil // Ctrl-C while following
	}
	return err
}

func agentLogs(c *cli.Context, cl *client.Client, taskID, agentID string, q url.Values) (io.ReadCloser, error) {
	agents, err := cl.Agents(c.Context)
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		if a.ID != agentID {
			continue
		}
		direct, err := client.New(a.HTTP)
		if err != nil {
			return nil, err
		}
		return direct.Stream(c.Context, "/v1/tasks/"+url.PathEscape(taskID)+"/logs?"+q.Encode())
	}
	return nil, fmt.Errorf("agent %s of task %s is not registered", agentID, taskID)
}
