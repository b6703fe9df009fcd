package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/client"
)

// appView is what the CLI reads of a Marathon app (GET /v2/apps); the JSON and YAML output
// show the whole answer.
type appView struct {
	ID        string   `json:"id"`
	Instances *int     `json:"instances"` // nil: left out, Marathon's default (wanted)
	CPUs      float64  `json:"cpus"`
	Mem       float64  `json:"mem"`
	Cmd       string   `json:"cmd"`
	Args      []string `json:"args"`
	Container *struct {
		Docker *struct {
			Image string `json:"image"`
		} `json:"docker"`
	} `json:"container"`
	HealthChecks   []json.RawMessage `json:"healthChecks"`
	TasksStaged    int               `json:"tasksStaged"`
	TasksRunning   int               `json:"tasksRunning"`
	TasksHealthy   int               `json:"tasksHealthy"`
	TasksUnhealthy int               `json:"tasksUnhealthy"`
	Deployments    []struct {
		ID string `json:"id"`
	} `json:"deployments"`
	Version         string          `json:"version"`
	Tasks           []appTask       `json:"tasks"`
	LastTaskFailure json.RawMessage `json:"lastTaskFailure"`
	// WaitingReason is Agora's: why instances wait to start (offers declined and why, the
	// launch backoff, the agent's message of the last failure).
	WaitingReason string `json:"waitingReason"`
}

type appTask struct {
	ID                 string    `json:"id"`
	Host               string    `json:"host"`
	Ports              []int     `json:"ports"`
	State              string    `json:"state"`
	Version            string    `json:"version"`
	StagedAt           time.Time `json:"stagedAt"`
	HealthCheckResults []struct {
		Alive bool `json:"alive"`
	} `json:"healthCheckResults"`
	// SlaveID and LocalVolumes say where a resident app's instance is pinned and what it
	// mounts; a suspended instance (scaled down, its volumes kept) has them and no version.
	SlaveID      string `json:"slaveId"`
	LocalVolumes []struct {
		ContainerPath string `json:"containerPath"`
		PersistenceID string `json:"persistenceId"`
	} `json:"localVolumes"`
}

// what is the app's image, or its command.
func (a appView) what() string {
	if a.Container != nil && a.Container.Docker != nil && a.Container.Docker.Image != "" {
		return a.Container.Docker.Image + " " + strings.Join(a.Args, " ")
	}
	if a.Cmd != "" {
		return a.Cmd
	}
	return strings.Join(a.Args, " ")
}

// wanted is the app's number of instances: 1 when its definition leaves it out, as Marathon.
func (a appView) wanted() int {
	if a.Instances == nil {
		return 1
	}
	return *a.Instances
}

// progress is the app's instances as a person reads them: running and healthy of wanted.
func (a appView) progress() string {
	s := fmt.Sprintf("%d/%d running", a.TasksRunning, a.wanted())
	if len(a.HealthChecks) > 0 {
		s += fmt.Sprintf(", %d/%d healthy", a.TasksHealthy, a.wanted())
	}
	if a.TasksStaged > 0 {
		s += fmt.Sprintf(", %d staged", a.TasksStaged)
	}
	// During a rolling upgrade: how far the new version has come, and what is left of the old.
	fresh, old := 0, 0
	for _, t := range a.Tasks {
		if t.Version != a.Version {
			old++
		} else if t.State == "TASK_RUNNING" {
			fresh++
		}
	}
	if old > 0 {
		s += fmt.Sprintf("; new version %d/%d, %d old", fresh, a.wanted(), old)
	}
	return s
}

// changeResult is Marathon's answer to a change: the deployment it started.
type changeResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
}

func appPath(id string, rest ...string) string {
	return "/v2/apps/" + strings.Trim(id, "/") + strings.Join(rest, "")
}

func appCommand() *cli.Command {
	return &cli.Command{
		Name:        "app",
		Usage:       "long-running services through the Marathon framework (agora app add|list|show|update|scale|restart|remove|tasks|versions|rollback)",
		Description: examples("agora app add examples/apps/hello.json --wait", "agora app list", "agora app scale hello 4 --wait", "agora app rollback hello --wait"),
		Subcommands: []*cli.Command{
			{
				Name:        "add",
				Usage:       "create an app from a Marathon app definition (JSON); --wait follows its deployment until every instance runs (and is healthy)",
				ArgsUsage:   "FILE.json",
				Description: examples("agora app add examples/apps/hello.json --wait"),
				Flags:       append(clientFlags(), waitFlag),
				Action:      appAdd,
			},
			{
				Name:        "list",
				Usage:       "every app with its instances, health and running deployment",
				Description: examples("agora app list", "agora app list -o json"),
				Flags:       clientFlags(),
				Action:      appList,
			},
			{
				Name:        "show",
				Usage:       "one app: its definition's essentials, deployments and instances",
				ArgsUsage:   "APP",
				Description: examples("agora app show hello", "agora app show /hello -o yaml"),
				Flags:       clientFlags(),
				Action:      appShow,
			},
			{
				Name:        "update",
				Usage:       "change an app with a partial or full definition (JSON): only the fields given change; a changed config is a rolling upgrade",
				ArgsUsage:   "APP FILE.json",
				Description: examples("agora app update hello hello-v2.json --wait", "agora app update hello update.json --force   # overrides a running deployment"),
				Flags:       append(clientFlags(), waitFlag, forceFlag),
				Action:      appUpdate,
			},
			{
				Name:        "scale",
				Usage:       "set an app's number of instances",
				ArgsUsage:   "APP INSTANCES",
				Description: examples("agora app scale hello 4 --wait"),
				Flags:       append(clientFlags(), waitFlag, forceFlag),
				Action:      appScale,
			},
			{
				Name:        "restart",
				Usage:       "replace every instance by a new one, as a rolling upgrade",
				ArgsUsage:   "APP",
				Description: examples("agora app restart hello --wait"),
				Flags:       append(clientFlags(), waitFlag, forceFlag),
				Action:      appRestart,
			},
			{
				Name:        "remove",
				Usage:       "delete an app and kill its instances",
				ArgsUsage:   "APP",
				Description: examples("agora app remove hello --wait"),
				Flags:       append(clientFlags(), waitFlag, forceFlag),
				Action:      appRemove,
			},
			{
				Name:        "tasks",
				Usage:       "the app's instances: task id, host, ports, state, health",
				ArgsUsage:   "APP",
				Description: examples("agora app tasks hello"),
				Flags:       clientFlags(),
				Action:      appTasks,
			},
			{
				Name:        "versions",
				Usage:       "the app's config versions, newest first",
				ArgsUsage:   "APP",
				Description: examples("agora app versions hello"),
				Flags:       clientFlags(),
				Action:      appVersions,
			},
			{
				Name:        "rollback",
				Usage:       "deploy an earlier version of the app's config (default: the one before the current)",
				ArgsUsage:   "APP [VERSION]",
				Description: examples("agora app rollback hello --wait", "agora app rollback hello 2026-11-25T10:00:00.000Z"),
				Flags:       append(clientFlags(), waitFlag, forceFlag),
				Action:      appRollback,
			},
		},
	}
}

var forceFlag = &cli.BoolFlag{Name: "force", Usage: "make the change even while a deployment of the app runs (it replaces that deployment)"}

// forceQuery is ?force=true when --force is given.
func forceQuery(c *cli.Context) string {
	if c.Bool("force") {
		return "?force=true"
	}
	return ""
}

func oneArg(c *cli.Context, usage string) (string, error) {
	if a := args(c); len(a) == 1 && a[0] != "" {
		return a[0], nil
	}
	return "", usageError{usage}
}

// oneID is the one argument of a command that takes an id (checkID).
func oneID(c *cli.Context, usage string) (string, error) {
	id, err := oneArg(c, usage)
	if err == nil {
		err = checkID(c, id)
	}
	return id, err
}

// argClient is the preamble of the commands that take one id and call a master: the id (or a
// usage error) and the client.
func argClient(c *cli.Context, usage string) (string, *client.Client, error) {
	arg, err := oneID(c, usage)
	if err != nil {
		return "", nil, err
	}
	cl, err := newClient(c)
	return arg, cl, err
}

func readJSONFile(path string) (json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		return nil, fmt.Errorf("%s: not JSON: %v", path, err)
	}
	return data, nil
}

func appAdd(c *cli.Context) error {
	file, err := oneArg(c, "agora app add FILE.json [--wait]: give one app definition file")
	if err != nil {
		return err
	}
	def, err := readJSONFile(file)
	if err != nil {
		return err
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.Do(c.Context, http.MethodPost, "/v2/apps", def, &raw); err != nil {
		return err
	}
	var a appView
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	res := changeResult{Version: a.Version}
	if len(a.Deployments) > 0 {
		res.DeploymentID = a.Deployments[0].ID
	}
	return afterChange(c, cl, a.ID, "created", res, raw)
}

// afterChange reports a change that started a deployment and, with --wait, follows it.
func afterChange(c *cli.Context, cl *client.Client, appID, verb string, res changeResult, raw any) error {
	if !c.Bool("wait") {
		if c.String("output") != "table" {
			return show(c, raw, nil)
		}
		fmt.Fprintf(c.App.Writer, "app %s %s: deployment %s (agora deploy watch %s)\n", appID, verb, dash(res.DeploymentID), res.DeploymentID)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "app %s %s: deployment %s\n", appID, verb, dash(res.DeploymentID))
	return watchDeployment(c.Context, cl, c.App.Writer, res.DeploymentID, appID, verb == "removed")
}

func appList(c *cli.Context) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var raw struct {
		Apps json.RawMessage `json:"apps"`
	}
	if err := cl.Do(c.Context, http.MethodGet, "/v2/apps", nil, &raw); err != nil {
		return err
	}
	var apps []appView
	if err := json.Unmarshal(raw.Apps, &apps); err != nil {
		return err
	}
	return show(c, raw.Apps, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tINSTANCES\tHEALTHY\tCPUS\tMEM\tDEPLOYING\tRUNS")
		for _, a := range apps {
			healthy := "-"
			if len(a.HealthChecks) > 0 {
				healthy = fmt.Sprintf("%d/%d", a.TasksHealthy, a.wanted())
			}
			deploying := "-"
			if len(a.Deployments) > 0 {
				deploying = a.Deployments[0].ID
			}
			fmt.Fprintf(w, "%s\t%d/%d\t%s\t%g\t%g\t%s\t%s\n", a.ID, a.TasksRunning, a.wanted(), healthy, a.CPUs, a.Mem, deploying, a.what())
		}
	})
}

func fetchApp(ctx context.Context, cl *client.Client, id string) (appView, json.RawMessage, error) {
	var raw struct {
		App json.RawMessage `json:"app"`
	}
	if err := cl.Do(ctx, http.MethodGet, appPath(id, "?embed=app.tasks&embed=app.lastTaskFailure"), nil, &raw); err != nil {
		return appView{}, nil, err
	}
	var a appView
	err := json.Unmarshal(raw.App, &a)
	return a, raw.App, err
}

func appShow(c *cli.Context) error {
	id, cl, err := argClient(c, "agora app show APP: give the app's id")
	if err != nil {
		return err
	}
	a, raw, err := fetchApp(c.Context, cl, id)
	if err != nil {
		return err
	}
	return show(c, raw, func(w io.Writer) {
		fmt.Fprintf(w, "ID:\t%s\n", a.ID)
		fmt.Fprintf(w, "RUNS:\t%s\n", a.what())
		fmt.Fprintf(w, "RESOURCES:\tcpus %g, mem %g MiB\n", a.CPUs, a.Mem)
		fmt.Fprintf(w, "INSTANCES:\t%s\n", a.progress())
		if a.WaitingReason != "" {
			fmt.Fprintf(w, "WAITING:\t%s\n", a.WaitingReason)
		}
		fmt.Fprintf(w, "VERSION:\t%s\n", a.Version)
		for _, d := range a.Deployments {
			fmt.Fprintf(w, "DEPLOYMENT:\t%s\n", d.ID)
		}
		if len(a.LastTaskFailure) > 0 && string(a.LastTaskFailure) != "null" {
			var f struct {
				TaskID    string `json:"taskId"`
				State     string `json:"state"`
				Message   string `json:"message"`
				Timestamp string `json:"timestamp"`
			}
			if json.Unmarshal(a.LastTaskFailure, &f) == nil && f.TaskID != "" {
				fmt.Fprintf(w, "LAST FAILURE:\t%s %s at %s: %s\n", f.TaskID, f.State, f.Timestamp, f.Message)
			}
		}
		fmt.Fprintln(w)
		appTaskTable(w, a.Tasks)
	})
}

func appTaskTable(w io.Writer, tasks []appTask) {
	resident := false
	for _, t := range tasks {
		resident = resident || len(t.LocalVolumes) > 0
	}
	if resident {
		residentTaskTable(w, tasks)
		return
	}
	fmt.Fprintln(w, "TASK\tHOST\tPORTS\tSTATE\tHEALTH\tVERSION")
	for _, t := range tasks {
		health := "-"
		for _, r := range t.HealthCheckResults {
			health = "healthy"
			if !r.Alive {
				health = "unhealthy"
			}
		}
		ports := make([]string, len(t.Ports))
		for i, p := range t.Ports {
			ports[i] = strconv.Itoa(p)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Host, dash(strings.Join(ports, ",")), t.State, health, t.Version)
	}
}

// residentTaskTable lists a resident app's instances: each one's agent and volumes
// (containerPath=persistence id), suspended ones too (no task runs; their volumes are kept).
func residentTaskTable(w io.Writer, tasks []appTask) {
	fmt.Fprintln(w, "TASK\tHOST\tAGENT\tPORTS\tSTATE\tHEALTH\tVERSION\tVOLUMES")
	for _, t := range tasks {
		health := "-"
		for _, r := range t.HealthCheckResults {
			health = map[bool]string{true: "healthy", false: "unhealthy"}[r.Alive]
		}
		ports := make([]string, len(t.Ports))
		for i, p := range t.Ports {
			ports[i] = strconv.Itoa(p)
		}
		var vols []string
		for _, v := range t.LocalVolumes {
			vols = append(vols, v.ContainerPath+"="+v.PersistenceID)
		}
		state := t.State
		if t.Version == "" && len(vols) > 0 {
			state = "suspended (" + t.State + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Host, dash(t.SlaveID), dash(strings.Join(ports, ",")), state, health, dash(t.Version), dash(strings.Join(vols, ",")))
	}
}

// appChange sends one change of an app and reports (and with --wait follows) its deployment.
func appChange(c *cli.Context, method, path string, body any, id, verb string) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var res changeResult
	if err := cl.Do(c.Context, method, path+forceQuery(c), body, &res); err != nil {
		return err
	}
	return afterChange(c, cl, "/"+strings.Trim(id, "/"), verb, res, res)
}

func appUpdate(c *cli.Context) error {
	a := args(c)
	if len(a) != 2 {
		return usageError{"agora app update APP FILE.json [--wait] [--force]: give the app's id and a definition file"}
	}
	if err := checkID(c, a[0]); err != nil {
		return err
	}
	def, err := readJSONFile(a[1])
	if err != nil {
		return err
	}
	return appChange(c, http.MethodPut, appPath(a[0]), def, a[0], "updated")
}

func appScale(c *cli.Context) error {
	a := args(c)
	if len(a) != 2 {
		return usageError{"agora app scale APP INSTANCES [--wait]: give the app's id and a number of instances"}
	}
	if err := checkID(c, a[0]); err != nil {
		return err
	}
	n, err := strconv.Atoi(a[1])
	if err != nil || n < 0 {
		return usageError{fmt.Sprintf("agora app scale: INSTANCES must be a whole number, 0 or more, got %q", a[1])}
	}
	return appChange(c, http.MethodPut, appPath(a[0]), map[string]int{"instances": n}, a[0], fmt.Sprintf("scaled to %d", n))
}

func appRestart(c *cli.Context) error {
	id, err := oneID(c, "agora app restart APP [--wait]: give the app's id")
	if err != nil {
		return err
	}
	return appChange(c, http.MethodPost, appPath(id, "/restart"), nil, id, "restarting")
}

func appRemove(c *cli.Context) error {
	id, err := oneID(c, "agora app remove APP [--wait]: give the app's id")
	if err != nil {
		return err
	}
	return appChange(c, http.MethodDelete, appPath(id), nil, id, "removed")
}

func appTasks(c *cli.Context) error {
	id, cl, err := argClient(c, "agora app tasks APP: give the app's id")
	if err != nil {
		return err
	}
	var out struct {
		Tasks []appTask `json:"tasks"`
	}
	var raw struct {
		Tasks json.RawMessage `json:"tasks"`
	}
	if err := cl.Do(c.Context, http.MethodGet, appPath(id, "/tasks"), nil, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw.Tasks, &out.Tasks); err != nil {
		return err
	}
	return show(c, raw.Tasks, func(w io.Writer) { appTaskTable(w, out.Tasks) })
}

func appVersionList(ctx context.Context, cl *client.Client, id string) ([]string, error) {
	var out struct {
		Versions []string `json:"versions"`
	}
	err := cl.Do(ctx, http.MethodGet, appPath(id, "/versions"), nil, &out)
	return out.Versions, err
}

func appVersions(c *cli.Context) error {
	id, cl, err := argClient(c, "agora app versions APP: give the app's id")
	if err != nil {
		return err
	}
	versions, err := appVersionList(c.Context, cl, id)
	if err != nil {
		return err
	}
	a, _, err := fetchApp(c.Context, cl, id)
	if err != nil {
		return err
	}
	return show(c, versions, func(w io.Writer) {
		fmt.Fprintln(w, "VERSION\tCURRENT")
		for _, v := range versions {
			cur := ""
			if v == a.Version {
				cur = "yes"
			}
			fmt.Fprintf(w, "%s\t%s\n", v, cur)
		}
	})
}

func appRollback(c *cli.Context) error {
	a := args(c)
	if len(a) != 1 && len(a) != 2 {
		return usageError{"agora app rollback APP [VERSION] [--wait]: give the app's id, and the version to go back to if not the one before"}
	}
	if err := checkID(c, a[0]); err != nil {
		return err
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	version := ""
	if len(a) == 2 {
		version = a[1]
	} else {
		cur, _, err := fetchApp(c.Context, cl, a[0])
		if err != nil {
			return err
		}
		versions, err := appVersionList(c.Context, cl, a[0])
		if err != nil {
			return err
		}
		for _, v := range versions { // newest first
			if v < cur.Version {
				version = v
				break
			}
		}
		if version == "" {
			return fmt.Errorf("app %s has no version before %s (agora app versions %s)", a[0], cur.Version, a[0])
		}
	}
	return appChange(c, http.MethodPut, appPath(a[0]), map[string]string{"version": version}, a[0], "rolling back to "+version)
}
