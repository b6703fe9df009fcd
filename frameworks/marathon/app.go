package marathon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/id"
)

// Marathon's defaults for fields an app leaves out.
const (
	DefaultInstances             = 1
	DefaultCPUs                  = 1.0
	DefaultMem                   = 128.0
	DefaultBackoffSeconds        = 1.0
	DefaultBackoffFactor         = 1.15
	DefaultMaxLaunchDelaySeconds = 300.0
	DefaultInactiveAfterSeconds  = 300.0
	DefaultExpungeAfterSeconds   = 600.0
	// A resident app's (one with persistent volumes) defaults: its residency, and an upgrade
	// strategy that kills an old instance before its replacement takes the reservation over.
	DefaultRelaunchEscalationTimeoutSeconds = 3600
	TaskLostWaitForever                     = "WAIT_FOREVER"
	TaskLostRelaunchAfterTimeout            = "RELAUNCH_AFTER_TIMEOUT"
	DefaultResidentMinimumHealthCapacity    = 0.5
	// PersistentRoot is the only persistent volume type Agora has: a directory of the agent's
	// root disk (Mesos's ROOT disk); path and mount disks are refused.
	PersistentRoot    = "root"
	PersistentPath    = "path"
	PersistentMount   = "mount"
	KillYoungestFirst = "YOUNGEST_FIRST"
	KillOldestFirst   = "OLDEST_FIRST"
)

// App is the typed view of an app definition: the fields Agora acts on. The definition itself
// is kept whole as JSON (Definition), so fields Agora does not know survive a PUT and a GET.
type App struct {
	ID                         string              `json:"id"`
	Cmd                        string              `json:"cmd,omitempty"`
	Args                       []string            `json:"args,omitempty"`
	Container                  *Container          `json:"container,omitempty"`
	CPUs                       float64             `json:"cpus"`
	Mem                        float64             `json:"mem"`
	Disk                       float64             `json:"disk"`
	Instances                  int                 `json:"instances"`
	Env                        map[string]EnvValue `json:"env,omitempty"`
	Secrets                    map[string]Secret   `json:"secrets,omitempty"`
	Labels                     map[string]string   `json:"labels,omitempty"`
	Constraints                [][]string          `json:"constraints,omitempty"`
	PortDefinitions            []PortDefinition    `json:"portDefinitions,omitempty"`
	RequirePorts               bool                `json:"requirePorts"`
	HealthChecks               []health.Check      `json:"healthChecks,omitempty"`
	ReadinessChecks            []ReadinessCheck    `json:"readinessChecks,omitempty"`
	UpgradeStrategy            UpgradeStrategy     `json:"upgradeStrategy"`
	BackoffSeconds             float64             `json:"backoffSeconds"`
	BackoffFactor              float64             `json:"backoffFactor"`
	MaxLaunchDelaySeconds      float64             `json:"maxLaunchDelaySeconds"`
	KillSelection              string              `json:"killSelection"`
	UnreachableStrategy        UnreachableStrategy `json:"unreachableStrategy"`
	TaskKillGracePeriodSeconds *float64            `json:"taskKillGracePeriodSeconds,omitempty"`
	Dependencies               []string            `json:"dependencies,omitempty"`
	Version                    string              `json:"version,omitempty"`
	// User runs the app's tasks as this user of the image or the agent (name, uid, name:group,
	// uid:gid); empty: the image's user unless root, else the agent's default task user. Root
	// only on agents that allow it (agora agent --allow-root-tasks).
	User string `json:"user,omitempty"`
	// Fetch are the artifacts each task fetches into its sandbox before it starts.
	Fetch []FetchURI `json:"fetch,omitempty"`
	// URIs is Marathon's older fetch: each is fetched, and extracted when it is an archive.
	URIs []string `json:"uris,omitempty"`
	// Residency is a resident app's (residency.go): filled in for an app with persistent
	// volumes.
	Residency *Residency `json:"residency,omitempty"`
	// AcceptedResourceRoles is read for validation only (a resident app's must be ["*"]); apps
	// are shown with Marathon's default, ["*"].
	AcceptedResourceRoles []string `json:"acceptedResourceRoles,omitempty"`
}

// FetchURI is one of Marathon's fetch artifacts; extract defaults to true, as in Marathon.
type FetchURI struct {
	URI        string `json:"uri"`
	Extract    bool   `json:"extract"`
	Executable bool   `json:"executable"`
	Cache      bool   `json:"cache"`
	DestPath   string `json:"destPath,omitempty"`
}

// UnmarshalJSON reads a fetch artifact with Marathon's defaults.
func (f *FetchURI) UnmarshalJSON(b []byte) error {
	type plain FetchURI
	p := plain{Extract: true}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*f = FetchURI(p)
	return nil
}

// Artifacts are what each task of the app fetches: fetch, or the older uris (extracted when
// their names say they are archives, never executable or cached, as Marathon reads them).
func (a App) Artifacts() []api.Artifact {
	var out []api.Artifact
	for _, f := range a.Fetch {
		out = append(out, api.Artifact{URI: f.URI, Extract: f.Extract, Executable: f.Executable, Cache: f.Cache, OutputFile: f.DestPath})
	}
	for _, u := range a.URIs {
		out = append(out, api.Artifact{URI: u, Extract: api.IsArchive(u)})
	}
	return out
}

// Container is Marathon's container: DOCKER (an image) or MESOS (an image, or none).
type Container struct {
	Type         string        `json:"type"`
	Docker       *Docker       `json:"docker,omitempty"`
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	Volumes      []VolumeDef   `json:"volumes,omitempty"`
}

// VolumeDef is one of Marathon's container volumes: a host volume (hostPath), a secret of the
// app's secrets as a file (secret: a file of the task's user, 0400, on a tmpfs, read-only;
// relative containerPath: in the sandbox), or a local persistent volume (persistent: reserved
// disk of the agent the instance first lands on, kept across its tasks; residency.go).
// External ones are refused by validation.
type VolumeDef struct {
	ContainerPath string          `json:"containerPath"`
	HostPath      string          `json:"hostPath,omitempty"`
	Mode          string          `json:"mode,omitempty"` // RO or RW (default)
	Secret        string          `json:"secret,omitempty"`
	Persistent    *PersistentInfo `json:"persistent,omitempty"`
	External      any             `json:"external,omitempty"`
}

// PersistentInfo is Marathon's PersistentVolumeInfo: Size MiB of the agent's disk of Type (root,
// the default; path and mount are Mesos's other disks, which Agora's agents do not have);
// MaxSize and Constraints are for mount and path disks only, as in Marathon.
type PersistentInfo struct {
	Type        string     `json:"type,omitempty"`
	Size        float64    `json:"size"`
	MaxSize     *float64   `json:"maxSize,omitempty"`
	Constraints [][]string `json:"constraints,omitempty"`
}

// Residency is Marathon's residency of an app with persistent volumes: what happens to an
// instance whose task is lost. WAIT_FOREVER (the only behaviour Agora has, and Marathon's
// default): it waits for its agent, whose reservation and volumes it holds.
type Residency struct {
	RelaunchEscalationTimeoutSeconds float64 `json:"relaunchEscalationTimeoutSeconds"`
	TaskLostBehavior                 string  `json:"taskLostBehavior"`
}

// Docker names the image.
type Docker struct {
	Image          string `json:"image"`
	ForcePullImage bool   `json:"forcePullImage"`
	Privileged     bool   `json:"privileged"`
	Parameters     []any  `json:"parameters,omitempty"`
}

// PortMapping is a container port; on host networking its hostPort is what counts. Its
// servicePort is the app's service port for it (serviceports.go): 0 when written asks for one.
type PortMapping struct {
	ContainerPort int    `json:"containerPort"`
	HostPort      int    `json:"hostPort"`
	ServicePort   int    `json:"servicePort"`
	Protocol      string `json:"protocol,omitempty"`
	Name          string `json:"name,omitempty"`
}

// PortDefinition asks for one host port, any the offer has; Port is the app's service port for
// it (serviceports.go): 0 when written asks for one. With requirePorts the host port must be the
// service port.
type PortDefinition struct {
	Port     int               `json:"port"`
	Protocol string            `json:"protocol,omitempty"`
	Name     string            `json:"name,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// ReadinessCheck is Marathon's readiness check: during a deployment, a new instance counts only
// once an HTTP GET of Path on the port named PortName answers one of HTTPStatusCodesForReady.
type ReadinessCheck struct {
	Name                    string `json:"name,omitempty"`
	Protocol                string `json:"protocol,omitempty"` // HTTP (default) or HTTPS
	Path                    string `json:"path,omitempty"`     // default "/"
	PortName                string `json:"portName"`
	IntervalSeconds         int    `json:"intervalSeconds,omitempty"` // default 30
	TimeoutSeconds          int    `json:"timeoutSeconds,omitempty"`  // default 10
	HTTPStatusCodesForReady []int  `json:"httpStatusCodesForReady,omitempty"`
}

// UpgradeStrategy bounds a rolling upgrade.
type UpgradeStrategy struct {
	MinimumHealthCapacity float64 `json:"minimumHealthCapacity"`
	MaximumOverCapacity   float64 `json:"maximumOverCapacity"`
}

// UnreachableStrategy says when an unreachable instance is replaced and when it is forgotten;
// Marathon's "disabled" (Disabled), a resident app's, says never: it waits for its agent.
type UnreachableStrategy struct {
	InactiveAfterSeconds float64 `json:"inactiveAfterSeconds"`
	ExpungeAfterSeconds  float64 `json:"expungeAfterSeconds"`
	Disabled             bool    `json:"-"`
}

// unreachableDisabled is how Marathon writes a disabled unreachable strategy.
const unreachableDisabled = "disabled"

// UnmarshalJSON reads Marathon's two forms: the object, or the string "disabled".
func (u *UnreachableStrategy) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if s != unreachableDisabled {
			return &fieldErr{path: "/unreachableStrategy", msg: fmt.Sprintf("got %q, expected \"disabled\" or an object with inactiveAfterSeconds and expungeAfterSeconds", s)}
		}
		*u = UnreachableStrategy{Disabled: true}
		return nil
	}
	type plain UnreachableStrategy
	p := plain(*u)
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*u = UnreachableStrategy(p)
	u.Disabled = false
	return nil
}

// MarshalJSON writes it as Marathon does.
func (u UnreachableStrategy) MarshalJSON() ([]byte, error) {
	if u.Disabled {
		return json.Marshal(unreachableDisabled)
	}
	type plain UnreachableStrategy
	return json.Marshal(plain(u))
}

// EnvValue is an env value: a string, or Marathon's {"secret": "name"} reference; Secret is
// Marathon's secret, {"source": "..."}: where its value is in the masters' secret store. Both are
// the frameworks' shared types (frameworks/secrets.go).
type (
	EnvValue = frameworks.EnvValue
	Secret   = frameworks.Secret
)

// Definition is an app definition as the user wrote it, with Agora's defaults filled in, every
// field kept: what GET returns.
type Definition map[string]json.RawMessage

// shownDefaults are the defaults a definition shows for the fields it leaves out, as Marathon
// shows every app with its instances and resources.
var shownDefaults = Definition{
	"instances": json.RawMessage(strconv.Itoa(DefaultInstances)),
	"cpus":      json.RawMessage(strconv.FormatFloat(DefaultCPUs, 'g', -1, 64)),
	"mem":       json.RawMessage(strconv.FormatFloat(DefaultMem, 'g', -1, 64)),
	"disk":      json.RawMessage("0"),
}

// withDefaults is a copy of d with the defaults of instances, cpus, mem and disk filled in
// where d leaves them out: what is stored and shown (an app posted without instances has 1).
func (d Definition) withDefaults() Definition {
	out := d.Merge(nil)
	for k, v := range shownDefaults {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

// Decode reads a definition, refusing what is not a JSON object.
func Decode(b []byte) (Definition, error) {
	var d Definition
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("an app definition is a JSON object")
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return d, nil
}

// Merge lays the fields of patch over d (a PUT or PATCH with only some fields changes just
// those); a field set to null goes back to its default. A patch's "ports" (Marathon's older
// form) replaces d's portDefinitions, and its portDefinitions d's "ports".
func (d Definition) Merge(patch Definition) Definition {
	out := make(Definition, len(d)+len(patch))
	for k, v := range d {
		out[k] = v
	}
	// Marathon's older "ports" and portDefinitions say the same: the one a patch gives replaces
	// the other.
	if _, ok := patch["ports"]; ok {
		if _, both := patch["portDefinitions"]; !both {
			delete(out, "portDefinitions")
		}
	}
	if _, ok := patch["portDefinitions"]; ok {
		delete(out, "ports")
	}
	for k, v := range patch {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// App reads the typed view, with Marathon's defaults for what is missing.
func (d Definition) App() (App, error) {
	a := App{
		Instances: DefaultInstances, CPUs: DefaultCPUs, Mem: DefaultMem,
		BackoffSeconds: DefaultBackoffSeconds, BackoffFactor: DefaultBackoffFactor, MaxLaunchDelaySeconds: DefaultMaxLaunchDelaySeconds,
		UpgradeStrategy:     UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1},
		UnreachableStrategy: UnreachableStrategy{InactiveAfterSeconds: DefaultInactiveAfterSeconds, ExpungeAfterSeconds: DefaultExpungeAfterSeconds},
		KillSelection:       KillYoungestFirst,
	}
	b, err := json.Marshal(d)
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, err
	}
	if a.Container != nil && a.Container.Type == "" {
		a.Container.Type = containerType(a.Container) // Marathon's default for a container without one
	}
	if a.Resident() {
		// Marathon's defaults for an app with persistent volumes.
		if isAbsent(d["upgradeStrategy"]) {
			a.UpgradeStrategy = UpgradeStrategy{MinimumHealthCapacity: DefaultResidentMinimumHealthCapacity, MaximumOverCapacity: 0}
		}
		if isAbsent(d["unreachableStrategy"]) {
			a.UnreachableStrategy = UnreachableStrategy{Disabled: true}
		}
		if a.Residency == nil {
			a.Residency = &Residency{RelaunchEscalationTimeoutSeconds: DefaultRelaunchEscalationTimeoutSeconds, TaskLostBehavior: TaskLostWaitForever}
		}
		if a.Residency.TaskLostBehavior == "" {
			a.Residency.TaskLostBehavior = TaskLostWaitForever
		}
	}
	if raw, ok := d["ports"]; ok && d["portDefinitions"] == nil {
		// Marathon's older "ports": [0, 0] means that many port definitions.
		var ports []int
		if err := json.Unmarshal(raw, &ports); err != nil {
			return a, &fieldErr{path: "/ports", msg: "is a list of port numbers"}
		}
		a.PortDefinitions = nil
		for _, p := range ports {
			a.PortDefinitions = append(a.PortDefinitions, PortDefinition{Port: p, Protocol: "tcp"})
		}
	}
	if _, ok := d["portDefinitions"]; !ok && d["ports"] == nil && !a.hasPortMappings() {
		a.PortDefinitions = []PortDefinition{{Port: 0, Protocol: "tcp"}} // Marathon gives an app one port
	}
	a.ID = NormalizeID(a.ID)
	return a, nil
}

func (a App) hasPortMappings() bool { return a.Container != nil && len(a.Container.PortMappings) > 0 }

// PortCount is how many host ports each instance needs.
func (a App) PortCount() int {
	if a.hasPortMappings() {
		return len(a.Container.PortMappings)
	}
	return len(a.PortDefinitions)
}

// PortNames names the ports in order, for PORT_<NAME>.
func (a App) PortNames() []string {
	names, _ := a.portsByIndex()
	return names
}

// PortProtocols are the protocols of the ports in order ("" for tcp), as service discovery
// shows them. One that is not Marathon's (an app kept from before they were checked) is tcp.
func (a App) PortProtocols() []string {
	var out []string
	add := func(p string) {
		if !validPortProtocol(p) {
			p = ""
		}
		out = append(out, p)
	}
	if a.hasPortMappings() {
		for _, pm := range a.Container.PortMappings {
			add(pm.Protocol)
		}
		return out
	}
	for _, pd := range a.PortDefinitions {
		add(pd.Protocol)
	}
	return out
}

// validPortProtocol: Marathon's protocols of a port, or none (tcp).
func validPortProtocol(p string) bool { return p == "" || slices.Contains(api.PortProtocols, p) }

// ServicePorts are the app's service ports in order (serviceports.go): its port mappings'
// servicePort, or its port definitions' port; 0 for one not assigned.
func (a App) ServicePorts() []int {
	_, service := a.portsByIndex()
	return service
}

// portsByIndex are the names and service ports of the app's ports: its port mappings', or
// else its port definitions'.
func (a App) portsByIndex() (names []string, service []int) {
	if a.hasPortMappings() {
		for _, pm := range a.Container.PortMappings {
			names, service = append(names, pm.Name), append(service, pm.ServicePort)
		}
		return names, service
	}
	for _, pd := range a.PortDefinitions {
		names, service = append(names, pd.Name), append(service, pd.Port)
	}
	return names, service
}

// RequiredPorts are fixed host ports asked for (with requirePorts its service ports, or the
// hostPorts of mappings); 0 is any.
func (a App) RequiredPorts() []int {
	var out []int
	if a.hasPortMappings() {
		for _, pm := range a.Container.PortMappings {
			out = append(out, pm.HostPort)
		}
		return out
	}
	for _, pd := range a.PortDefinitions {
		if a.RequirePorts {
			out = append(out, pd.Port)
		} else {
			out = append(out, 0)
		}
	}
	return out
}

// Image is the container image, "" for none.
func (a App) Image() string {
	if a.Container != nil && a.Container.Docker != nil {
		return a.Container.Docker.Image
	}
	return ""
}

var (
	idSegment = regexp.MustCompile(`^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$`)
)

// NormalizeID makes an app id absolute ("web" → "/web") without a trailing slash.
func NormalizeID(id string) string {
	id = strings.TrimSpace(id)
	if id == "" {
		return ""
	}
	if !strings.HasPrefix(id, "/") {
		id = "/" + id
	}
	return strings.TrimRight(id, "/")
}

// fieldErr is one problem at a JSON path.
type fieldErr struct{ path, msg string }

func (e *fieldErr) Error() string { return e.path + ": " + e.msg }

// ValidationError is Marathon's 422 body: a message and the problems by path.
type ValidationError struct {
	Message string         `json:"message"`
	Details []ErrorDetails `json:"details"`
}

// ErrorDetails lists the problems at one JSON path.
type ErrorDetails struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

func (e *ValidationError) Error() string {
	var parts []string
	for _, d := range e.Details {
		parts = append(parts, d.Path+": "+strings.Join(d.Errors, "; "))
	}
	return e.Message + ": " + strings.Join(parts, ", ")
}

// problems gathers problems by path, in the order first met.
type problems struct {
	order []string
	by    map[string][]string
}

func (p *problems) add(path, format string, args ...any) {
	if p.by == nil {
		p.by = map[string][]string{}
	}
	if _, ok := p.by[path]; !ok {
		p.order = append(p.order, path)
	}
	p.by[path] = append(p.by[path], fmt.Sprintf(format, args...))
}

func (p *problems) err() error {
	if len(p.order) == 0 {
		return nil
	}
	e := &ValidationError{Message: "Object is not valid"}
	for _, path := range p.order {
		e.Details = append(e.Details, ErrorDetails{Path: path, Errors: p.by[path]})
	}
	return e
}

// MaxIDLength bounds an app or group id (its leading "/" included): an app's task ids — the
// id without its leading "/", '_' for '/', a '.' and a 36-character UUID (taskIDFor) — must fit
// the id.MaxContainerName characters agents name containers and sandboxes by. Marathon has no
// bound of its own; past this one every launch would fail.
const MaxIDLength = id.MaxContainerName - len(".") - 36 + len("/")

// reservedLast are the words an id may not end with, as in Marathon: /v2/apps/{id}/restart,
// /tasks and /versions would not reach the app. reservedAnywhere may be no segment at all:
// /v2/apps/team/tasks/worker names the task "worker" of /team (splitAppPath), so an app under
// a "tasks" or "versions" segment could be neither shown nor deleted by its id.
var (
	reservedLast     = []string{"restart", "tasks", "versions"}
	reservedAnywhere = []string{"tasks", "versions"}
)

// idProblem says what is wrong with an app or group id (absolute, its trailing "/" trimmed),
// or "" when nothing is: every segment lowercase letters, digits, '-' and '.', starting and
// ending with a letter or digit; no "." or ".." segment (Marathon resolves those in relative
// ids; an id stored as written must be the path it names); no reserved word; at most
// MaxIDLength characters.
func idProblem(path string) string {
	if len(path) > MaxIDLength {
		return fmt.Sprintf("is %d characters long; at most %d: a task's id (the app's id and a UUID) must fit the %d characters an agent names its container by", len(path), MaxIDLength, id.MaxContainerName)
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, seg := range segs {
		switch {
		case seg == "." || seg == "..":
			return fmt.Sprintf("'%s' has a '%s' segment: give the path it leads to, written out", path, seg)
		case !idSegment.MatchString(seg):
			return fmt.Sprintf("'%s' is not a valid path: each segment is lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", path)
		case slices.Contains(reservedAnywhere, seg) && i < len(segs)-1:
			return fmt.Sprintf("'%s' has the segment '%s', a word of the API's paths (/v2/apps/{id}/%s): the app could not be reached by its id", path, seg, seg)
		case i == len(segs)-1 && slices.Contains(reservedLast, seg):
			return fmt.Sprintf("'%s' must not end with any of the reserved words %s", path, strings.Join(reservedLast, ", "))
		}
	}
	return ""
}

// Needs are what the app's tasks ask of an agent that only some agents allow.
func (a App) Needs() hostaccess.Needs {
	n := hostaccess.Needs{User: a.User}
	if a.Container != nil {
		n.Privileged = a.Container.Docker != nil && a.Container.Docker.Privileged
		for _, v := range a.Container.Volumes {
			if v.Secret != "" || v.Persistent != nil || v.External != nil {
				continue
			}
			n.Volumes = append(n.Volumes, api.Volume{ContainerPath: v.ContainerPath, HostPath: v.HostPath, ReadOnly: v.Mode == "RO"})
		}
	}
	return n
}

// hostVolumeField is the index in container.volumes of the app's i-th host volume (Needs lists
// only those), for a field path.
func (a App) hostVolumeField(i int) int {
	if a.Container != nil {
		for j, v := range a.Container.Volumes {
			if v.Secret != "" || v.Persistent != nil || v.External != nil {
				continue
			}
			if i == 0 {
				return j
			}
			i--
		}
	}
	return i
}

// SecretVolumes are the app's secrets given to its tasks as files.
func (a App) SecretVolumes() []frameworks.SecretVolume {
	var out []frameworks.SecretVolume
	if a.Container != nil {
		for _, v := range a.Container.Volumes {
			if v.Secret != "" {
				out = append(out, frameworks.SecretVolume{ContainerPath: v.ContainerPath, Secret: v.Secret})
			}
		}
	}
	return out
}
