package chronos

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
)

// Job is a job spec as Metronome's JSON has it, with Chronos's DAG edge (dependencies) and
// Kubernetes CronJob's history limits.
type Job struct {
	ID           string            `json:"id"`
	Description  string            `json:"description,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Run          RunSpec           `json:"run"`
	Schedules    []Schedule        `json:"schedules,omitempty"`
	Dependencies JobIDs            `json:"dependencies,omitempty"`
	// SuccessfulHistoryLimit and FailedHistoryLimit bound the finished runs kept (default 10
	// each); the counts in history go on counting.
	SuccessfulHistoryLimit *int `json:"successfulHistoryLimit,omitempty"`
	FailedHistoryLimit     *int `json:"failedHistoryLimit,omitempty"`
	// Chronos holds what a job given through Chronos's API has that Metronome's spec has no
	// place for (chronosapi.go); such a job's id may be any Chronos name, [A-Za-z0-9_.-]+.
	Chronos *ChronosSettings `json:"chronos,omitempty"`
}

// RunSpec is what a run of the job launches.
type RunSpec struct {
	Cmd  string                         `json:"cmd,omitempty"`
	Args []string                       `json:"args,omitempty"`
	CPUs float64                        `json:"cpus"`
	Mem  float64                        `json:"mem"`
	Disk float64                        `json:"disk"`
	Env  map[string]frameworks.EnvValue `json:"env,omitempty"` // a value, or {"secret": ref}
	// Secrets name where each env secret ref's value is in the masters' secret store:
	// {"ref": {"source": "name"}} (PUT /v1/secrets/name). Resolved at launch, never shown.
	Secrets                    map[string]frameworks.Secret `json:"secrets,omitempty"`
	Docker                     *Docker                      `json:"docker,omitempty"`
	MaxLaunchDelay             int                          `json:"maxLaunchDelay"` // seconds a run may wait for resources
	Restart                    Restart                      `json:"restart"`
	Placement                  *Placement                   `json:"placement,omitempty"`
	Volumes                    []Volume                     `json:"volumes,omitempty"`
	UCR                        *UCR                         `json:"ucr,omitempty"`      // becomes Docker
	GPUs                       int                          `json:"gpus,omitempty"`     // 0 only: agents offer none
	Networks                   []Network                    `json:"networks,omitempty"` // host only
	User                       string                       `json:"user,omitempty"`     // as Marathon's user (pkg/hostaccess)
	Artifacts                  []Artifact                   `json:"artifacts,omitempty"`
	TaskKillGracePeriodSeconds float64                      `json:"taskKillGracePeriodSeconds,omitempty"`
}

// Volume is one of Metronome's run.volumes: a directory of the agent's host (hostPath, mode RO
// or RW, the default), or a secret of run.secrets as a file (secret). A relative containerPath
// is inside the task's sandbox.
type Volume struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath,omitempty"`
	Mode          string `json:"mode,omitempty"`
	Secret        string `json:"secret,omitempty"`
}

// Artifact is one of Metronome's run.artifacts: a file fetched into the task's sandbox before it
// starts. Extract defaults to true, as Metronome's.
type Artifact struct {
	URI        string `json:"uri"`
	Extract    *bool  `json:"extract,omitempty"`
	Executable bool   `json:"executable"`
	Cache      bool   `json:"cache"`
}

// artifacts are what the run's task fetches (extract true unless the spec says false).
func (r RunSpec) artifacts() []api.Artifact {
	var out []api.Artifact
	for _, a := range r.Artifacts {
		out = append(out, api.Artifact{URI: a.URI, Extract: a.Extract == nil || *a.Extract, Executable: a.Executable, Cache: a.Cache})
	}
	return out
}

// Docker names the image the run's container starts from. Metronome's privileged is read so
// that its specs load, and refused when set: jobs run unprivileged. Of its parameters (flags of
// `docker run`) those containerd can honour are taken; any other is refused, named.
type Docker struct {
	Image          string            `json:"image"`
	ForcePullImage bool              `json:"forcePullImage,omitempty"`
	Privileged     bool              `json:"privileged,omitempty"`
	Parameters     []DockerParameter `json:"parameters,omitempty"`
}

// DockerParameter is a flag of `docker run`; only those containerd can honour are taken
// (dockerParameters).
type DockerParameter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// UCR is Metronome's other way to name an image (the Mesos containerizer's); Normalize turns it
// into Docker, the one Agora keeps.
type UCR struct {
	Image      UCRImage `json:"image"`
	Privileged bool     `json:"privileged,omitempty"`
}

// UCRImage is a UCR image: a Docker image by id.
type UCRImage struct {
	ID        string `json:"id"`
	Kind      string `json:"kind,omitempty"` // docker (appc is refused)
	ForcePull bool   `json:"forcePull,omitempty"`
}

// Network is one of Metronome's run.networks; tasks use the agent's network (the host's, or the
// namespace its --task-netns names), so only mode "host" is accepted: "container/bridge" and
// "container" are refused, named.
type Network struct {
	Name   string            `json:"name,omitempty"`
	Mode   string            `json:"mode"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Restart says what a run does when its task fails.
type Restart struct {
	Policy string `json:"policy"` // NEVER (default) or ON_FAILURE
	// ActiveDeadlineSeconds ends a run (its task killed, the run FAILED) that has not finished
	// this long after it was created; 0 is no deadline.
	ActiveDeadlineSeconds int `json:"activeDeadlineSeconds,omitempty"`
	// BackoffLimit is how many times ON_FAILURE launches the task again (default 6, as
	// Kubernetes Jobs); the n-th retry waits BackoffSeconds × 2^(n-1), at most 6 minutes.
	BackoffLimit   *int     `json:"backoffLimit,omitempty"`
	BackoffSeconds *float64 `json:"backoffSeconds,omitempty"` // default 10
}

// Placement constrains the agents a run may go to.
type Placement struct {
	Constraints []PlacementConstraint `json:"constraints,omitempty"`
}

// PlacementConstraint is Metronome's {attribute, operator, value}: EQ, LIKE or UNLIKE (a regular
// expression matched against the whole value) on "hostname" or an agent attribute.
type PlacementConstraint struct {
	Attribute string `json:"attribute"`
	Operator  string `json:"operator"`
	Value     string `json:"value,omitempty"`
}

// Restart policies.
const (
	RestartNever     = "NEVER"
	RestartOnFailure = "ON_FAILURE"
)

const (
	defaultHistoryLimit   = 10
	defaultBackoffLimit   = 6
	defaultBackoffSeconds = 10.0
	maxBackoff            = 6 * time.Minute
	defaultMaxLaunchDelay = 3600
)

// chronosName is a Chronos job name, which a job given through Chronos's API may have as its id.
var chronosName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// idPattern is Metronome's job id: dot-separated names of lowercase letters, digits and inner
// hyphens.
var idPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

// maxIDLen keeps a run's task id (job id, run id, attempt) within the agents' limit.
const maxIDLen = 128

// Normalize checks a job spec on its own (not against other jobs: see checkGraph) and fills its
// defaults. The error names the field at fault.
func (j *Job) Normalize() error {
	if err := j.checkID(); err != nil {
		return err
	}
	if err := j.Run.normalize(j.Chronos != nil); err != nil {
		return err
	}
	if err := j.normalizeSchedules(); err != nil {
		return err
	}
	if err := j.checkDependencies(); err != nil {
		return err
	}
	return j.normalizeHistoryLimits()
}

// checkID checks the job's id: Metronome's shape, or any Chronos name for a job of Chronos's API.
func (j *Job) checkID() error {
	if j.ID == "" {
		return &FieldError{Field: "id", Msg: "is required"}
	}
	if len(j.ID) > maxIDLen {
		return &FieldError{Field: "id", Msg: fmt.Sprintf("is %d characters long; at most %d: a run's task id (the job's id, the run's and the attempt) must fit the %d characters an agent names its container by", len(j.ID), maxIDLen, id.MaxContainerName)}
	}
	if j.Chronos != nil && !chronosName.MatchString(j.ID) {
		return &FieldError{Field: "id", Msg: fmt.Sprintf("%q: a Chronos job's name is letters, digits, '_', '.' and '-'", j.ID)}
	}
	if j.Chronos == nil && !idPattern.MatchString(j.ID) {
		return &FieldError{Field: "id", Msg: fmt.Sprintf("%q: want lowercase letters, digits and '-', in names separated by '.' (at most %d characters)", j.ID, maxIDLen)}
	}
	return nil
}

// normalize checks the run spec and fills its defaults; chronos says the job is Chronos's,
// whose args alone may be the run (shell false).
func (r *RunSpec) normalize(chronos bool) error {
	if err := r.normalizeMetronome(); err != nil {
		return err
	}
	if r.Cmd == "" && (r.Docker == nil || r.Docker.Image == "") && (!chronos || len(r.Args) == 0) {
		return &FieldError{Field: "run.cmd", Msg: "a run needs a cmd, a docker.image, or both"}
	}
	if r.Docker != nil && r.Docker.Image == "" {
		return &FieldError{Field: "run.docker.image", Msg: "is required when docker is given"}
	}
	if len(r.Args) > 0 && r.Cmd != "" {
		return &FieldError{Field: "run.args", Msg: "give either cmd (run by a shell) or args (the image's entrypoint arguments), not both"}
	}
	if err := r.normalizeResources(); err != nil {
		return err
	}
	if err := r.checkEnv(); err != nil {
		return err
	}
	if err := r.checkVolumes(); err != nil {
		return err
	}
	if err := r.normalizeArtifacts(); err != nil {
		return err
	}
	if r.MaxLaunchDelay < 0 {
		return &FieldError{Field: "run.maxLaunchDelay", Msg: "must not be negative"}
	}
	if r.MaxLaunchDelay == 0 {
		r.MaxLaunchDelay = defaultMaxLaunchDelay
	}
	if err := r.Restart.normalize(); err != nil {
		return err
	}
	if r.Placement != nil {
		for i, c := range r.Placement.Constraints {
			if _, err := c.compile(); err != nil {
				return &FieldError{Field: fmt.Sprintf("run.placement.constraints[%d]", i), Msg: err.Error()}
			}
		}
	}
	return nil
}

// normalizeResources fills Metronome's defaults when no resource is given and checks each.
func (r *RunSpec) normalizeResources() error {
	if r.CPUs == 0 && r.Mem == 0 && r.Disk == 0 {
		r.CPUs, r.Mem = 1, 128 // Metronome's defaults
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"run.cpus", r.CPUs}, {"run.mem", r.Mem}, {"run.disk", r.Disk}, {"run.taskKillGracePeriodSeconds", r.TaskKillGracePeriodSeconds}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("must be a number of at least 0, got %v", f.v)}
		}
	}
	if r.CPUs < 0.01 {
		return &FieldError{Field: "run.cpus", Msg: fmt.Sprintf("must be at least 0.01, got %v", r.CPUs)}
	}
	if r.Mem < resources.MinTaskMem {
		return &FieldError{Field: "run.mem", Msg: fmt.Sprintf("got %v, expected at least %v (MiB): runc's own start-up runs inside the container's memory limit and needs about 3 MiB", r.Mem, resources.MinTaskMem)}
	}
	return nil
}

// checkEnv checks the environment's names and that each secret it references is defined, with
// a source.
func (r *RunSpec) checkEnv() error {
	for k := range r.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return &FieldError{Field: "run.env", Msg: fmt.Sprintf("%q is not a variable name", k)}
		}
	}
	if name, ref := frameworks.UndefinedSecret(r.Env, r.Secrets); name != "" {
		return &FieldError{Field: "run.env." + name, Msg: fmt.Sprintf("references the secret %q, which run.secrets does not define", ref)}
	}
	for _, ref := range slices.Sorted(maps.Keys(r.Secrets)) {
		if strings.Trim(r.Secrets[ref].Source, "/") == "" {
			return &FieldError{Field: "run.secrets." + ref + ".source", Msg: "must name a secret in the secret store"}
		}
	}
	return nil
}

// checkVolumes checks each volume: a host path (absolute, or a host volume's name) with its
// mode, or a secret as a file.
func (r *RunSpec) checkVolumes() error {
	for i, v := range r.Volumes {
		path := fmt.Sprintf("run.volumes[%d]", i)
		switch {
		case v.ContainerPath == "" || slices.Contains(strings.Split(v.ContainerPath, "/"), ".."):
			return &FieldError{Field: path + ".containerPath", Msg: "must not be empty nor contain '..'"}
		case v.Secret != "" && (v.HostPath != "" || v.Mode != ""):
			return &FieldError{Field: path + ".secret", Msg: "a secret volume has containerPath and secret only, no hostPath or mode"}
		case v.Secret != "":
			sv := frameworks.SecretVolume{ContainerPath: v.ContainerPath, Secret: v.Secret}
			if field, msg := frameworks.CheckSecretVolume(sv, r.Secrets, "run.secrets", r.Docker != nil); field != "" {
				return &FieldError{Field: path + "." + field, Msg: msg}
			}
		case !hostaccess.ValidHostPath(v.HostPath):
			return &FieldError{Field: path + ".hostPath", Msg: fmt.Sprintf("must be an absolute path on the agent or the name of a host volume agents declare, got %q", v.HostPath)}
		case v.Mode != "" && v.Mode != "RO" && v.Mode != "RW":
			return &FieldError{Field: path + ".mode", Msg: fmt.Sprintf("got %q, expected RO or RW", v.Mode)}
		}
	}
	return nil
}

// normalizeArtifacts checks each artifact's uri and fills extract (true unless given).
func (r *RunSpec) normalizeArtifacts() error {
	for i := range r.Artifacts {
		a := &r.Artifacts[i]
		if strings.TrimSpace(a.URI) == "" {
			return &FieldError{Field: fmt.Sprintf("run.artifacts[%d].uri", i), Msg: "is required"}
		}
		if a.Extract == nil {
			a.Extract = new(true)
		}
	}
	if err := api.ValidateArtifacts("run.artifacts", r.artifacts()); err != nil {
		fe := err.(*api.FieldError)
		return &FieldError{Field: fe.Field, Msg: fe.Msg}
	}
	return nil
}

// normalize checks the restart policy and fills its defaults (NEVER; backoff 6 times from 10 s).
func (rs *Restart) normalize() error {
	switch rs.Policy {
	case "":
		rs.Policy = RestartNever
	case RestartNever, RestartOnFailure:
	default:
		return &FieldError{Field: "run.restart.policy", Msg: fmt.Sprintf("got %q, expected NEVER or ON_FAILURE", rs.Policy)}
	}
	if rs.ActiveDeadlineSeconds < 0 {
		return &FieldError{Field: "run.restart.activeDeadlineSeconds", Msg: "must not be negative"}
	}
	if rs.BackoffLimit == nil {
		n := defaultBackoffLimit
		rs.BackoffLimit = &n
	} else if *rs.BackoffLimit < 0 {
		return &FieldError{Field: "run.restart.backoffLimit", Msg: "must not be negative"}
	}
	if rs.BackoffSeconds == nil {
		s := defaultBackoffSeconds
		rs.BackoffSeconds = &s
	} else if s := *rs.BackoffSeconds; s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return &FieldError{Field: "run.restart.backoffSeconds", Msg: "must be a number of at least 0"}
	}
	return nil
}

// normalizeSchedules checks each schedule, fills its defaults, and refuses an id given twice.
func (j *Job) normalizeSchedules() error {
	seen := map[string]bool{}
	for i := range j.Schedules {
		p, err := ParseSchedule(j.Schedules[i])
		if err != nil {
			fe := err.(*FieldError)
			return &FieldError{Field: fmt.Sprintf("schedules[%d].%s", i, fe.Field), Msg: fe.Msg}
		}
		if msg := subSecond(p.Schedule.Cron); msg != "" {
			return &FieldError{Field: fmt.Sprintf("schedules[%d].cron", i), Msg: fmt.Sprintf("%q: %s", p.Schedule.Cron, msg)}
		}
		if !idPattern.MatchString(p.Schedule.ID) || len(p.Schedule.ID) > maxIDLen {
			return &FieldError{Field: fmt.Sprintf("schedules[%d].id", i), Msg: fmt.Sprintf("%q: want lowercase letters, digits and '-', in names separated by '.'", p.Schedule.ID)}
		}
		if seen[p.Schedule.ID] {
			return &FieldError{Field: fmt.Sprintf("schedules[%d].id", i), Msg: fmt.Sprintf("%q is given twice", p.Schedule.ID)}
		}
		seen[p.Schedule.ID] = true
		j.Schedules[i] = p.Schedule
	}
	return nil
}

// checkDependencies checks the job's parents on their own (that they exist and make no cycle is
// checkGraph's): none with schedules, not itself, none twice.
func (j *Job) checkDependencies() error {
	if len(j.Dependencies) > 0 && len(j.Schedules) > 0 {
		return &FieldError{Field: "dependencies", Msg: "a job with dependencies runs when its parents succeed; it has no schedules of its own"}
	}
	deps := map[string]bool{}
	for i, d := range j.Dependencies {
		switch {
		case d == j.ID:
			return &FieldError{Field: fmt.Sprintf("dependencies[%d]", i), Msg: "a job cannot depend on itself"}
		case deps[d]:
			return &FieldError{Field: fmt.Sprintf("dependencies[%d]", i), Msg: fmt.Sprintf("%q is given twice", d)}
		}
		deps[d] = true
	}
	return nil
}

// normalizeHistoryLimits fills the history limits' defaults and checks them.
func (j *Job) normalizeHistoryLimits() error {
	for _, f := range []struct {
		name string
		v    **int
	}{{"successfulHistoryLimit", &j.SuccessfulHistoryLimit}, {"failedHistoryLimit", &j.FailedHistoryLimit}} {
		if *f.v == nil {
			n := defaultHistoryLimit
			*f.v = &n
		} else if **f.v < 0 || **f.v > 1000 {
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("must be 0 to 1000, got %d", **f.v)}
		}
	}
	return nil
}

// compiled is a placement constraint ready to check agents with.
type compiled struct {
	attr, op, value string
	re              *regexp.Regexp
}

func (c PlacementConstraint) compile() (compiled, error) {
	if c.Attribute == "" {
		return compiled{}, fmt.Errorf("attribute is required")
	}
	out := compiled{attr: c.Attribute, op: c.Operator, value: c.Value}
	switch c.Operator {
	case "EQ", "IS": // IS is Metronome's later name for EQ
		out.op = "EQ"
	case "LIKE", "UNLIKE":
		re, err := frameworks.WholeMatch(c.Value)
		if err != nil {
			return compiled{}, fmt.Errorf("value %q is not a regular expression: %v", c.Value, err)
		}
		out.re = re
	default:
		return compiled{}, fmt.Errorf("operator %q: expected EQ (or IS), LIKE or UNLIKE", c.Operator)
	}
	return out, nil
}

// allows says whether an agent of that hostname and attributes satisfies the constraint.
func (c compiled) allows(hostname string, attrs map[string]string) bool {
	v, ok := attrs[c.attr]
	if c.attr == "hostname" {
		v, ok = hostname, true
	}
	switch c.op {
	case "EQ":
		return ok && v == c.value
	case "LIKE":
		return ok && c.re.MatchString(v)
	default: // UNLIKE
		return !ok || !c.re.MatchString(v)
	}
}

// why says what an agent that the constraint does not allow is: "rack:LIKE:r1: rack is "r2" on
// web1", or that it lacks the attribute.
func (c compiled) why(hostname string, attrs map[string]string) string {
	name := c.attr + ":" + c.op + ":" + c.value
	v, ok := attrs[c.attr]
	if c.attr == "hostname" {
		v, ok = hostname, true
	}
	if !ok {
		return fmt.Sprintf("%s: %s has no attribute %q", name, hostname, c.attr)
	}
	return fmt.Sprintf("%s: %s is %q on %s", name, c.attr, v, hostname)
}

// historyLimits are the job's limits, defaults filled.
func (j *Job) historyLimits() (successful, failed int) {
	successful, failed = defaultHistoryLimit, defaultHistoryLimit
	if j.SuccessfulHistoryLimit != nil {
		successful = *j.SuccessfulHistoryLimit
	}
	if j.FailedHistoryLimit != nil {
		failed = *j.FailedHistoryLimit
	}
	return
}

// backoff is the wait before the n-th retry (n ≥ 1).
func (r Restart) backoff(n int) time.Duration {
	base := defaultBackoffSeconds
	if r.BackoffSeconds != nil {
		base = *r.BackoffSeconds
	}
	d := time.Duration(base * math.Pow(2, float64(n-1)) * float64(time.Second))
	if d > maxBackoff || d < 0 {
		d = maxBackoff
	}
	return d
}

// GraphError is a change refused because of the job graph: a cycle (Path, from the job back to
// itself), parents that do not exist, or dependants of a job being deleted.
type GraphError struct {
	Field      string
	Msg        string
	Path       []string `json:"path,omitempty"`
	Dependants []string `json:"dependants,omitempty"`
}

func (e *GraphError) Error() string { return e.Field + ": " + e.Msg }

// checkGraph checks a new or changed job against the others (lookup finds a job by id, the
// changed one as it will be) for parents that do not exist and for cycles.
func checkGraph(j *Job, lookup func(id string) *Job) error {
	for i, d := range j.Dependencies {
		if lookup(d) == nil {
			return &GraphError{Field: fmt.Sprintf("dependencies[%d]", i), Msg: fmt.Sprintf("job %q does not exist", d)}
		}
	}
	if path := cycleThrough(lookup, j.ID); path != nil {
		return &GraphError{Field: "dependencies", Msg: "would close a cycle: " + strings.Join(path, " → "), Path: path}
	}
	return nil
}

// cycleThrough finds a path of dependencies from start back to itself, if there is one.
func cycleThrough(lookup func(id string) *Job, start string) []string {
	seen := map[string]bool{}
	var path []string
	var walk func(id string) bool
	walk = func(id string) bool {
		path = append(path, id)
		for _, d := range lookup(id).deps() {
			if d == start {
				path = append(path, d)
				return true
			}
			if !seen[d] && lookup(d) != nil {
				seen[d] = true
				if walk(d) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if walk(start) {
		// path runs child → parent; say it the way the work flows: parent → child.
		slices.Reverse(path)
		return path
	}
	return nil
}

func (j *Job) deps() []string {
	if j == nil {
		return nil
	}
	return j.Dependencies
}

// normalizeMetronome reads the fields of Metronome's run spec that Agora has no use for but its
// specs carry (an exported job loads as it is): ucr becomes docker; gpus 0, host networks and
// unset privileged, parameters and user are accepted; anything else is refused, named.
func (r *RunSpec) normalizeMetronome() error {
	if u := r.UCR; u != nil {
		switch {
		case r.Docker != nil:
			return &FieldError{Field: "run.ucr", Msg: "give docker or ucr, not both"}
		case u.Image.ID == "":
			return &FieldError{Field: "run.ucr.image.id", Msg: "is required when ucr is given"}
		case u.Image.Kind != "" && u.Image.Kind != "docker":
			return &FieldError{Field: "run.ucr.image.kind", Msg: fmt.Sprintf("got %q: only docker images run on Agora's agents", u.Image.Kind)}
		case u.Privileged:
			return &FieldError{Field: "run.ucr.privileged", Msg: "jobs run unprivileged (a Marathon app may run privileged on an agent started with --allow-privileged)"}
		}
		r.Docker, r.UCR = &Docker{Image: u.Image.ID, ForcePullImage: u.Image.ForcePull}, nil
	}
	if d := r.Docker; d != nil {
		if d.Privileged {
			return &FieldError{Field: "run.docker.privileged", Msg: "jobs run unprivileged (a Marathon app may run privileged on an agent started with --allow-privileged)"}
		}
		if err := checkDockerParameters(r); err != nil {
			return err
		}
	}
	if r.GPUs < 0 {
		return &FieldError{Field: "run.gpus", Msg: fmt.Sprintf("must not be negative, got %d", r.GPUs)}
	}
	if r.GPUs > 0 {
		return &FieldError{Field: "run.gpus", Msg: "agents offer no GPUs: a run asking for one would never be placed"}
	}
	for i, n := range r.Networks {
		switch n.Mode {
		case "host":
		case "container/bridge", "container":
			return &FieldError{Field: fmt.Sprintf("run.networks[%d].mode", i), Msg: fmt.Sprintf("%q is not supported: agents run tasks in their own network (the host's, or the namespace an agent's --task-netns names), with no bridge or container networks; use \"host\"", n.Mode)}
		default:
			return &FieldError{Field: fmt.Sprintf("run.networks[%d].mode", i), Msg: fmt.Sprintf("got %q, expected host, container/bridge or container (only host is supported)", n.Mode)}
		}
	}
	if err := hostaccess.ValidUser(r.User); err != nil {
		return &FieldError{Field: "run.user", Msg: err.Error()}
	}
	return nil
}

// secretVolumes are the run's secrets given as files.
func (r RunSpec) secretVolumes() []frameworks.SecretVolume {
	var out []frameworks.SecretVolume
	for _, v := range r.Volumes {
		if v.Secret != "" {
			out = append(out, frameworks.SecretVolume{ContainerPath: v.ContainerPath, Secret: v.Secret})
		}
	}
	return out
}

// Needs are what the job's runs ask of an agent that only some agents allow (jobs never run
// privileged).
func (r RunSpec) Needs() hostaccess.Needs {
	n := hostaccess.Needs{User: r.runUser()}
	for _, v := range r.Volumes {
		if v.Secret != "" {
			continue
		}
		n.Volumes = append(n.Volumes, api.Volume{ContainerPath: v.ContainerPath, HostPath: v.HostPath, ReadOnly: v.Mode == "RO"})
	}
	return n
}
