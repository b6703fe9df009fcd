package chronos

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/frameworks"
)

// The Chronos codec: Chronos 3's job JSON, read and written here and nowhere else. Chronos reads
// leniently (numbers and booleans may be strings, names are [A-Za-z0-9_.-]+) and lists every
// field of a job, defaults filled in; so does this. What Chronos takes but Agora cannot do (a
// custom executor, a bridge or named network, an external volume) is a 422 naming the field,
// never dropped in silence; what changes nothing Agora does (async, softError, highPriority,
// dataProcessingJobType) is kept and listed back.

// ChronosJob is a job in Chronos's JSON: what /scheduler/iso8601 and /scheduler/dependency
// take and /scheduler/jobs lists. It maps onto a job spec: name → id, command → run.cmd (or,
// with shell false, run.args: command and arguments exec'd), schedule (ISO 8601 R[n]/start/period)
// and scheduleTimeZone → one schedule "default", epsilon → its startingDeadlineSeconds,
// concurrent → its concurrencyPolicy (false: FORBID), parents → dependencies, retries →
// ON_FAILURE with that backoffLimit (Chronos's default is 2), maxCompletionTime →
// activeDeadlineSeconds, runAsUser → run.user, disabled → the schedule disabled, container →
// run.docker and run.volumes, fetch and uris → run.artifacts; the rest is kept in the job's
// ChronosSettings.
type ChronosJob struct {
	Name                   string            `json:"name"`
	Command                string            `json:"command"`
	Shell                  *chronosBool      `json:"shell"`
	Epsilon                string            `json:"epsilon,omitempty"`
	Executor               string            `json:"executor"`
	ExecutorFlags          string            `json:"executorFlags"`
	TaskInfoData           string            `json:"taskInfoData"`
	Retries                *chronosNumber    `json:"retries"`
	Owner                  string            `json:"owner"`
	OwnerName              string            `json:"ownerName"`
	Description            string            `json:"description"`
	Async                  chronosBool       `json:"async"`
	SuccessCount           chronosNumber     `json:"successCount"`
	ErrorCount             chronosNumber     `json:"errorCount"`
	LastSuccess            string            `json:"lastSuccess"`
	LastError              string            `json:"lastError"`
	CPUs                   chronosNumber     `json:"cpus"`
	Disk                   chronosNumber     `json:"disk"`
	Mem                    chronosNumber     `json:"mem"`
	Disabled               chronosBool       `json:"disabled"`
	SoftError              chronosBool       `json:"softError"`
	DataProcessingJobType  chronosBool       `json:"dataProcessingJobType"`
	DataJob                *chronosBool      `json:"dataJob,omitempty"` // read only: the docs' older name
	ErrorsSinceLastSuccess chronosNumber     `json:"errorsSinceLastSuccess"`
	Fetch                  []ChronosFetch    `json:"fetch"`
	URIs                   []string          `json:"uris"`
	EnvironmentVariables   []ChronosEnvVar   `json:"environmentVariables"`
	Arguments              []string          `json:"arguments"`
	HighPriority           chronosBool       `json:"highPriority"`
	RunAsUser              string            `json:"runAsUser"`
	Concurrent             chronosBool       `json:"concurrent"`
	MaxCompletionTime      chronosNumber     `json:"maxCompletionTime"`
	Container              *ChronosContainer `json:"container,omitempty"`
	Constraints            [][]string        `json:"constraints"`
	Parents                []string          `json:"parents,omitempty"`
	Schedule               string            `json:"schedule,omitempty"`
	ScheduleTimeZone       string            `json:"scheduleTimeZone,omitempty"`
}

// ChronosContainer is Chronos's container: a DOCKER or MESOS image, its network (HOST only:
// tasks use the agent's network), volumes of the host, docker parameters.
type ChronosContainer struct {
	Type           string               `json:"type"`
	Image          string               `json:"image"`
	ForcePullImage chronosBool          `json:"forcePullImage"`
	Network        string               `json:"network,omitempty"`
	NetworkName    string               `json:"networkName,omitempty"`
	NetworkInfos   []ChronosNetwork     `json:"networkInfos,omitempty"`
	Volumes        []ChronosVolume      `json:"volumes"`
	Parameters     []DockerParameter    `json:"parameters"`
	PortMappings   []ChronosPortMapping `json:"portMappings,omitempty"`
}

// ChronosNetwork is one of a container's networkInfos (a named CNI network: refused).
type ChronosNetwork struct {
	Name         string               `json:"name"`
	Protocol     string               `json:"protocol,omitempty"`
	Labels       []DockerParameter    `json:"labels,omitempty"`
	PortMappings []ChronosPortMapping `json:"portMappings,omitempty"`
}

// ChronosPortMapping is a bridge network's port mapping (refused with the network).
type ChronosPortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"`
}

// ChronosVolume is a container volume: a host path (external volumes are refused: agents have none yet).
type ChronosVolume struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath,omitempty"`
	Mode          string `json:"mode,omitempty"`
	External      any    `json:"external,omitempty"`
}

// ChronosFetch is one of Chronos's fetch entries; extract defaults to true.
type ChronosFetch struct {
	URI        string       `json:"uri"`
	Executable chronosBool  `json:"executable"`
	Cache      chronosBool  `json:"cache"`
	Extract    *chronosBool `json:"extract,omitempty"`
	OutputFile string       `json:"output_file,omitempty"`
}

// ChronosEnvVar is one of Chronos's environmentVariables.
type ChronosEnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ChronosSettings are what a job given in Chronos's JSON has that Metronome's spec has no place
// for, kept so that it lists back as given.
type ChronosSettings struct {
	Shell                 bool     `json:"shell"`
	Arguments             []string `json:"arguments,omitempty"` // with shell true: kept, not used (as Chronos)
	Epsilon               string   `json:"epsilon,omitempty"`
	Async                 bool     `json:"async,omitempty"`
	SoftError             bool     `json:"softError,omitempty"`
	DataProcessingJobType bool     `json:"dataProcessingJobType,omitempty"`
	HighPriority          bool     `json:"highPriority,omitempty"`
	Concurrent            bool     `json:"concurrent,omitempty"`
	Disabled              bool     `json:"disabled,omitempty"` // of a dependent job: it does not run
	ContainerType         string   `json:"containerType,omitempty"`
	Network               string   `json:"network,omitempty"`
	URIs                  []string `json:"uris,omitempty"`
	FetchOutputFiles      []string `json:"fetchOutputFiles,omitempty"`
}

// under are the settings carried over to a job's new run given in Metronome's JSON: how it runs
// follows the run (a cmd is a shell command, args without one a program), what Chronos's own
// container and uris said goes with the old run.
func (cs ChronosSettings) under(r *RunSpec) *ChronosSettings {
	cs.Shell = r.Cmd != "" || len(r.Args) == 0
	cs.Arguments, cs.URIs = nil, nil
	if r.Docker == nil {
		cs.ContainerType, cs.Network = "", ""
	}
	return &cs
}

// chronosNumber is a number Chronos reads from a number or a string ("0.5").
type chronosNumber float64

func (n *chronosNumber) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err == nil {
		*n = chronosNumber(f)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "not a number nor a string of one", Type: reflect.TypeFor[float64]()}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		// A type error, so that the decoder names the field.
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("string %q, not a number", s), Type: reflect.TypeFor[float64]()}
	}
	*n = chronosNumber(f)
	return nil
}

// chronosBool is a boolean Chronos reads from true/false or a string of one.
type chronosBool bool

func (v *chronosBool) UnmarshalJSON(b []byte) error {
	var x bool
	if err := json.Unmarshal(b, &x); err == nil {
		*v = chronosBool(x)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "not true or false", Type: reflect.TypeFor[bool]()}
	}
	x, err := strconv.ParseBool(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("string %q, not true or false", s), Type: reflect.TypeFor[bool]()}
	}
	*v = chronosBool(x)
	return nil
}

// Chronos's defaults.
const (
	chronosCPUs    = 0.1
	chronosMem     = 128
	chronosDisk    = 256
	chronosRetries = 2
)

// chronosTimeLayout is how Chronos writes lastSuccess and lastError.
const chronosTimeLayout = "2006-01-02T15:04:05.000Z"

// toJob maps a Chronos job onto a job spec; the errors name Chronos's fields.
func (c ChronosJob) toJob(dependency bool) (*Job, error) {
	if c.Name == "" {
		return nil, &FieldError{Field: "name", Msg: "is required"}
	}
	cs := c.settings()
	if err := c.checkExecutor(); err != nil {
		return nil, err
	}
	j, err := c.baseJob(cs)
	if err != nil {
		return nil, err
	}
	if err := c.Container.toRun(&j.Run, cs); err != nil {
		return nil, err
	}
	if err := c.fetchTo(j, cs); err != nil {
		return nil, err
	}
	if err := c.envTo(j); err != nil {
		return nil, err
	}
	if err := c.constraintsTo(j); err != nil {
		return nil, err
	}
	if err := c.retriesTo(j); err != nil {
		return nil, err
	}
	if dependency {
		err = c.parentsTo(j, cs)
	} else {
		err = c.scheduleTo(j)
	}
	if err != nil {
		return nil, err
	}
	if err := j.Normalize(); err != nil {
		return nil, chronosField(err)
	}
	return j, nil
}

// settings are what of the Chronos job Metronome's spec has no place for.
func (c ChronosJob) settings() *ChronosSettings {
	cs := &ChronosSettings{Shell: c.Shell == nil || bool(*c.Shell), Epsilon: c.Epsilon, Async: bool(c.Async), SoftError: bool(c.SoftError),
		DataProcessingJobType: bool(c.DataProcessingJobType), HighPriority: bool(c.HighPriority), Concurrent: bool(c.Concurrent)}
	if c.DataJob != nil {
		cs.DataProcessingJobType = bool(*c.DataJob)
	}
	return cs
}

// checkExecutor refuses the fields that configure a Mesos executor: Agora has none.
func (c ChronosJob) checkExecutor() error {
	for _, f := range []struct{ name, v, why string }{
		{"executor", c.Executor, "Agora's agents run every task themselves; there is no Mesos executor to name"},
		{"executorFlags", c.ExecutorFlags, "Agora's agents run every task themselves; there is no Mesos executor to pass flags to"},
		{"taskInfoData", c.TaskInfoData, "Agora's agents run every task themselves; there is no Mesos executor to read it"},
	} {
		if strings.TrimSpace(f.v) != "" {
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("%q is not supported: %s (leave it empty)", f.v, f.why)}
		}
	}
	return nil
}

// baseJob is the job's id, description and labels (owner, ownerName), and its run's command,
// resources (Chronos's defaults) and deadline.
func (c ChronosJob) baseJob(cs *ChronosSettings) (*Job, error) {
	j := &Job{ID: c.Name, Description: c.Description, Chronos: cs,
		Run: RunSpec{Cmd: c.Command, CPUs: float64(c.CPUs), Mem: float64(c.Mem), Disk: float64(c.Disk), User: c.RunAsUser}}
	if j.Run.CPUs == 0 {
		j.Run.CPUs = chronosCPUs
	}
	if j.Run.Mem == 0 {
		j.Run.Mem = chronosMem
	}
	if j.Run.Disk == 0 {
		j.Run.Disk = chronosDisk
	}
	if cs.Shell {
		cs.Arguments = c.Arguments // Chronos ignores them with shell true
	} else {
		if c.Command == "" {
			return nil, &FieldError{Field: "command", Msg: "is required with shell false: it is the program run, arguments its arguments"}
		}
		j.Run.Cmd, j.Run.Args = "", append([]string{c.Command}, c.Arguments...)
	}
	if c.MaxCompletionTime < 0 {
		return nil, &FieldError{Field: "maxCompletionTime", Msg: "must not be negative"}
	}
	j.Run.Restart.ActiveDeadlineSeconds = int(c.MaxCompletionTime)
	if c.Owner != "" || c.OwnerName != "" {
		j.Labels = map[string]string{}
		if c.Owner != "" {
			j.Labels["owner"] = c.Owner
		}
		if c.OwnerName != "" {
			j.Labels["ownerName"] = c.OwnerName
		}
	}
	return j, nil
}

// fetchTo makes the job's fetch and uris its run's artifacts (keeping fetch's output files
// in cs).
func (c ChronosJob) fetchTo(j *Job, cs *ChronosSettings) error {
	for i, f := range c.Fetch {
		a := Artifact{URI: f.URI, Executable: bool(f.Executable), Cache: bool(f.Cache), Extract: new(f.Extract == nil || bool(*f.Extract))}
		if f.URI == "" {
			return &FieldError{Field: fmt.Sprintf("fetch[%d].uri", i), Msg: "is required"}
		}
		j.Run.Artifacts = append(j.Run.Artifacts, a)
		cs.FetchOutputFiles = append(cs.FetchOutputFiles, f.OutputFile)
	}
	if slices.IndexFunc(cs.FetchOutputFiles, func(s string) bool { return s != "" }) < 0 {
		cs.FetchOutputFiles = nil
	}
	for i, u := range c.URIs {
		if u == "" {
			return &FieldError{Field: fmt.Sprintf("uris[%d]", i), Msg: "is empty"}
		}
		j.Run.Artifacts = append(j.Run.Artifacts, Artifact{URI: u, Extract: new(true)})
	}
	cs.URIs = c.URIs
	return nil
}

// envTo makes the job's environmentVariables its run's env.
func (c ChronosJob) envTo(j *Job) error {
	for i, e := range c.EnvironmentVariables {
		if j.Run.Env == nil {
			j.Run.Env = map[string]frameworks.EnvValue{}
		}
		if _, twice := j.Run.Env[e.Name]; twice {
			return &FieldError{Field: fmt.Sprintf("environmentVariables[%d].name", i), Msg: fmt.Sprintf("%q is given twice", e.Name)}
		}
		j.Run.Env[e.Name] = frameworks.EnvValue{Value: e.Value}
	}
	return nil
}

// constraintsTo makes the job's constraints ([attribute, operator, value]) its run's placement.
func (c ChronosJob) constraintsTo(j *Job) error {
	for i, con := range c.Constraints {
		if len(con) < 2 || len(con) > 3 {
			return &FieldError{Field: fmt.Sprintf("constraints[%d]", i), Msg: "want [attribute, operator, value]"}
		}
		pc := PlacementConstraint{Attribute: con[0], Operator: con[1]}
		if pc.Operator == "EQUALS" {
			pc.Operator = "EQ"
		}
		if pc.Operator != "EQ" && pc.Operator != "LIKE" && pc.Operator != "UNLIKE" {
			return &FieldError{Field: fmt.Sprintf("constraints[%d]", i), Msg: fmt.Sprintf("operator %q: expected EQUALS, LIKE or UNLIKE", con[1])}
		}
		if len(con) > 2 {
			pc.Value = con[2]
		}
		if j.Run.Placement == nil {
			j.Run.Placement = &Placement{}
		}
		j.Run.Placement.Constraints = append(j.Run.Placement.Constraints, pc)
	}
	return nil
}

// retriesTo makes the job's retries (Chronos's default 2) its run's ON_FAILURE backoff limit.
func (c ChronosJob) retriesTo(j *Job) error {
	retries := chronosRetries
	if c.Retries != nil {
		retries = int(*c.Retries)
		if float64(retries) != float64(*c.Retries) || retries < 0 {
			return &FieldError{Field: "retries", Msg: "must be a whole number of at least 0"}
		}
	}
	if retries > 0 {
		j.Run.Restart.Policy, j.Run.Restart.BackoffLimit = RestartOnFailure, &retries
	}
	return nil
}

// parentsTo makes a dependent job's parents its dependencies; it has no schedule.
func (c ChronosJob) parentsTo(j *Job, cs *ChronosSettings) error {
	if len(c.Parents) == 0 {
		return &FieldError{Field: "parents", Msg: "a dependent job names at least one parent"}
	}
	if c.Schedule != "" {
		return &FieldError{Field: "schedule", Msg: "a dependent job runs when its parents succeed; it has no schedule"}
	}
	j.Dependencies = c.Parents
	cs.Disabled = bool(c.Disabled)
	return nil
}

// scheduleTo makes a scheduled job's schedule (an ISO 8601 repeating interval) its one
// schedule, "default": FORBID unless concurrent, epsilon its starting deadline.
func (c ChronosJob) scheduleTo(j *Job) error {
	if c.Schedule == "" {
		return &FieldError{Field: "schedule", Msg: "is required (ISO 8601 R[n]/start/period, like R/2026-01-01T02:00:00Z/P1D)"}
	}
	if len(c.Parents) > 0 {
		return &FieldError{Field: "parents", Msg: "a scheduled job has no parents (POST /scheduler/dependency adds a dependent job)"}
	}
	sc := Schedule{ID: "default", Cron: c.Schedule, Timezone: c.ScheduleTimeZone, ConcurrencyPolicy: ConcurrencyForbid}
	if c.Concurrent {
		sc.ConcurrencyPolicy = ConcurrencyAllow
	}
	if c.Epsilon != "" {
		secs, err := isoSeconds(c.Epsilon)
		if err != nil {
			return &FieldError{Field: "epsilon", Msg: err.Error()}
		}
		sc.StartingDeadlineSeconds = secs
	}
	sc.Enabled = new(!bool(c.Disabled))
	j.Schedules = []Schedule{sc}
	return nil
}

// toRun maps a Chronos container onto the run: its image, volumes of the host, docker parameters.
func (c *ChronosContainer) toRun(r *RunSpec, cs *ChronosSettings) error {
	if c == nil {
		return nil
	}
	switch strings.ToUpper(c.Type) {
	case "DOCKER", "MESOS":
		cs.ContainerType = strings.ToUpper(c.Type)
	case "":
		cs.ContainerType = "DOCKER" // Chronos's default
	default:
		return &FieldError{Field: "container.type", Msg: fmt.Sprintf("got %q, expected DOCKER or MESOS", c.Type)}
	}
	if c.Image == "" {
		return &FieldError{Field: "container.image", Msg: "is required"}
	}
	switch strings.ToUpper(c.Network) {
	case "", "HOST":
		cs.Network = strings.ToUpper(c.Network)
	default:
		return &FieldError{Field: "container.network", Msg: fmt.Sprintf("%q is not supported: agents run tasks in their own network (the host's, or the namespace an agent's --task-netns names); use HOST", c.Network)}
	}
	if c.NetworkName != "" {
		return &FieldError{Field: "container.networkName", Msg: fmt.Sprintf("%q: agents have no named networks; tasks use the agent's network", c.NetworkName)}
	}
	for i, n := range c.NetworkInfos {
		return &FieldError{Field: fmt.Sprintf("container.networkInfos[%d].name", i), Msg: fmt.Sprintf("%q: agents have no named networks; tasks use the agent's network (leave networkInfos empty)", n.Name)}
	}
	if len(c.PortMappings) > 0 {
		return &FieldError{Field: "container.portMappings", Msg: "need a bridge network, which agents do not have; tasks use the agent's network"}
	}
	r.Docker = &Docker{Image: c.Image, ForcePullImage: bool(c.ForcePullImage), Parameters: c.Parameters}
	for i, v := range c.Volumes {
		if v.External != nil {
			return &FieldError{Field: fmt.Sprintf("container.volumes[%d].external", i), Msg: "external volumes are not supported (yet): mount a host volume an agent declares"}
		}
		r.Volumes = append(r.Volumes, Volume{ContainerPath: v.ContainerPath, HostPath: v.HostPath, Mode: strings.ToUpper(v.Mode)})
	}
	return nil
}

// chronosField renames a job spec's fields to Chronos's in an error.
func chronosField(err error) error {
	fe, ok := err.(*FieldError)
	if !ok {
		return err
	}
	names := map[string]string{"id": "name", "run.cmd": "command", "run.args": "arguments", "run.cpus": "cpus", "run.mem": "mem", "run.disk": "disk", "run.user": "runAsUser",
		"schedules[0].cron": "schedule", "schedules[0].timezone": "scheduleTimeZone", "dependencies": "parents", "run.docker.image": "container.image",
		"run.restart.activeDeadlineSeconds": "maxCompletionTime"}
	if n, ok := names[fe.Field]; ok {
		return &FieldError{Field: n, Msg: fe.Msg}
	}
	for from, to := range map[string]string{"run.docker.parameters": "container.parameters", "run.volumes": "container.volumes", "run.placement.constraints": "constraints",
		"run.artifacts": "fetch", "run.env": "environmentVariables", "dependencies": "parents"} {
		if strings.HasPrefix(fe.Field, from) {
			return &FieldError{Field: to + strings.TrimPrefix(fe.Field, from), Msg: fe.Msg}
		}
	}
	return fe
}

// isoSeconds reads an ISO 8601 duration of days, hours, minutes and seconds (PT30M).
func isoSeconds(s string) (int, error) {
	m := durationPattern.FindStringSubmatch(s)
	if m == nil || m[1] != "" || m[2] != "" || s == "P" || s == "PT" {
		return 0, fmt.Errorf("%q: want an ISO 8601 duration like PT30M or P1D", s)
	}
	var n [8]float64
	for i := 3; i <= 7; i++ {
		n[i], _ = strconv.ParseFloat(orZero(m[i]), 64)
	}
	total := ((n[3]*7+n[4])*24+n[5])*3600 + n[6]*60 + n[7]
	if total > maxDeadlineSeconds {
		return 0, fmt.Errorf("%q: at most a year", s) // larger ones overflowed before
	}
	return int(total), nil
}

// chronos shows a job as Chronos lists it: every field, defaults filled in.
func (js *jobState) chronos() ChronosJob {
	j := js.job
	cs := j.Chronos
	if cs == nil {
		cs = &ChronosSettings{Shell: j.Run.Cmd != "" || len(j.Run.Args) == 0}
	}
	c := ChronosJob{Name: j.ID, Command: j.Run.Cmd, Shell: new(chronosBool(cs.Shell)), Epsilon: cs.Epsilon, Description: j.Description,
		Owner: j.Labels["owner"], OwnerName: j.Labels["ownerName"], Async: chronosBool(cs.Async),
		SuccessCount: chronosNumber(js.hist.SuccessCount), ErrorCount: chronosNumber(js.hist.FailureCount),
		CPUs: chronosNumber(j.Run.CPUs), Disk: chronosNumber(j.Run.Disk), Mem: chronosNumber(j.Run.Mem), Disabled: chronosBool(cs.Disabled),
		SoftError: chronosBool(cs.SoftError), DataProcessingJobType: chronosBool(cs.DataProcessingJobType),
		ErrorsSinceLastSuccess: chronosNumber(js.hist.errorsSinceLastSuccess()), Fetch: []ChronosFetch{}, URIs: nonNil(cs.URIs),
		EnvironmentVariables: []ChronosEnvVar{}, Arguments: nonNil(cs.Arguments), HighPriority: chronosBool(cs.HighPriority), RunAsUser: j.Run.User,
		Concurrent: chronosBool(cs.Concurrent), MaxCompletionTime: chronosNumber(j.Run.Restart.ActiveDeadlineSeconds), Constraints: [][]string{},
		Parents: j.Dependencies}
	if !cs.Shell && len(j.Run.Args) > 0 {
		c.Command, c.Arguments = j.Run.Args[0], j.Run.Args[1:]
	}
	retries := chronosNumber(0)
	if j.Run.Restart.Policy == RestartOnFailure && j.Run.Restart.BackoffLimit != nil {
		retries = chronosNumber(*j.Run.Restart.BackoffLimit)
	}
	c.Retries = &retries
	if len(j.Schedules) > 0 {
		sc := j.Schedules[0]
		c.Schedule, c.ScheduleTimeZone, c.Disabled = sc.Cron, sc.Timezone, chronosBool(!*sc.Enabled)
		c.Concurrent = chronosBool(sc.ConcurrencyPolicy != ConcurrencyForbid)
		if c.Epsilon == "" && sc.StartingDeadlineSeconds > 0 {
			c.Epsilon = fmt.Sprintf("PT%dS", sc.StartingDeadlineSeconds)
		}
	}
	if d := j.Run.Docker; d != nil {
		typ := cs.ContainerType
		if typ == "" {
			typ = "DOCKER"
		}
		c.Container = &ChronosContainer{Type: typ, Image: d.Image, ForcePullImage: chronosBool(d.ForcePullImage), Network: cs.Network,
			Volumes: []ChronosVolume{}, Parameters: nonNil(d.Parameters)}
		if c.Container.Network == "" {
			c.Container.Network = "HOST"
		}
		for _, v := range j.Run.Volumes {
			if v.Secret != "" {
				continue // Chronos has no secrets
			}
			mode := v.Mode
			if mode == "" {
				mode = "RW"
			}
			c.Container.Volumes = append(c.Container.Volumes, ChronosVolume{ContainerPath: v.ContainerPath, HostPath: v.HostPath, Mode: mode})
		}
	}
	for i, a := range j.Run.Artifacts {
		if i >= len(j.Run.Artifacts)-len(cs.URIs) && j.Chronos != nil {
			break // uris, listed as given
		}
		f := ChronosFetch{URI: a.URI, Executable: chronosBool(a.Executable), Cache: chronosBool(a.Cache), Extract: new(chronosBool(a.Extract == nil || *a.Extract))}
		if i < len(cs.FetchOutputFiles) {
			f.OutputFile = cs.FetchOutputFiles[i]
		}
		c.Fetch = append(c.Fetch, f)
	}
	if j.Run.Placement != nil {
		for _, pc := range j.Run.Placement.Constraints {
			op := pc.Operator
			if op == "EQ" || op == "IS" {
				op = "EQUALS"
			}
			c.Constraints = append(c.Constraints, []string{pc.Attribute, op, pc.Value})
		}
	}
	plain := frameworks.PlainEnv(j.Run.Env) // Chronos has no secrets: their refs are left out
	for _, k := range slices.Sorted(maps.Keys(plain)) {
		c.EnvironmentVariables = append(c.EnvironmentVariables, ChronosEnvVar{Name: k, Value: plain[k]})
	}
	if t := js.hist.LastSuccessAt; t != nil {
		c.LastSuccess = t.UTC().Format(chronosTimeLayout)
	}
	if t := js.hist.LastFailureAt; t != nil {
		c.LastError = t.UTC().Format(chronosTimeLayout)
	}
	return c
}

// errorsSinceLastSuccess counts the failed runs kept that finished after the last success.
func (h *History) errorsSinceLastSuccess() int {
	n := 0
	for _, r := range h.FailedFinishedRuns {
		if h.LastSuccessAt == nil || r.FinishedAt.After(*h.LastSuccessAt) {
			n++
		}
	}
	return n
}
