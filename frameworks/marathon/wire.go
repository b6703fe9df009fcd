package marathon

// The wire format of Marathon's /v2 API, as Marathon 1.10 writes it, decided here and only
// here: every handler and the event stream build their JSON through these functions, so shapes
// cannot drift from one endpoint to another.
//
//   - Times are UTC with milliseconds, "2026-12-06T20:24:17.909Z" (wireTime), everywhere: tasks'
//     stagedAt and startedAt, versions, deployments, events, lastTaskFailure, the queue.
//   - An app (appWire) shows every field with Marathon's default where its definition leaves it
//     out; the fields Agora keeps but Marathon never writes (ports, uris) are shown as
//     Marathon shows them (portDefinitions, fetch). What a client sends back from a GET — the
//     counts, tasks, deployments — is dropped on input (readOnlyFields).
//   - A task (taskWire), /v2/info (infoWire), a deployment plan in events (planWire), a
//     deployment (deploymentWire) and the text form of /v2/tasks (tasksText) have Marathon's
//     fields, no more.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/version"
)

// wireTimeLayout is how Marathon writes a time.
const wireTimeLayout = "2006-01-02T15:04:05.000Z"

// wireTime is a time in Marathon's form (see frameworks.Timestamp).
type wireTime = frameworks.Timestamp

// formatTime writes t as Marathon does.
func formatTime(t time.Time) string { return t.UTC().Format(wireTimeLayout) }

// readOnlyFields are the fields of an app as GET shows it that are no part of its definition:
// a client that PUTs back what it read (as dcos marathon app edit does) changes nothing by them.
var readOnlyFields = []string{
	"tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments", "tasks",
	"lastTaskFailure", "tasksStats", "readinessCheckResults", "waitingReason",
}

// ignoredFields are fields older Marathons had that Marathon 1.10 neither takes nor shows:
// taken from a client that still sends them, and dropped (storeUrls was the artifact store's).
var ignoredFields = []string{"storeUrls"}

// withoutReadOnly is a definition a client sent without the fields GET adds (readOnlyFields)
// and those Marathon 1.10 ignores (ignoredFields).
func withoutReadOnly(d Definition) Definition {
	for _, k := range readOnlyFields {
		delete(d, k)
	}
	for _, k := range ignoredFields {
		delete(d, k)
	}
	return d
}

// Marathon's defaults for the fields of an app it fills in on output. The numbers Agora acts on
// (instances, resources, backoff, strategies) are the typed App's and are shown from it.
var (
	defaultNetworks        = []map[string]string{{"mode": "host"}}
	defaultHealthNumbers   = []string{"gracePeriodSeconds", "intervalSeconds", "maxConsecutiveFailures", "timeoutSeconds", "delaySeconds"}
	emptyListFields        = []string{"args", "constraints", "dependencies", "fetch", "healthChecks", "readinessChecks"}
	emptyObjectFields      = []string{"env", "labels", "secrets"}
	neverWrittenAppFields  = []string{"ports", "uris", "ipAddress"} // Marathon shows these as portDefinitions, fetch and networks
	defaultAcceptedRoles   = []string{"*"}
	defaultPortDefinitions = []map[string]any{{"port": 0, "protocol": "tcp", "name": "default"}}
)

// isAbsent says whether a definition leaves a field out (or gives it as null).
func isAbsent(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// appWire is an app's definition as Marathon writes it: every field the user gave (fields Agora
// does not know included), and Marathon's default for each one left out. role is the
// framework's role, the app's unless it names one.
func appWire(def Definition, a App, role string) map[string]any {
	out := make(map[string]any, len(def)+32)
	for k, v := range def {
		if !isAbsent(v) {
			out[k] = v
		}
	}
	fill := func(k string, v any) {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	// The typed values: what Agora acts on, with Marathon's defaults already in.
	out["id"] = a.ID
	out["instances"], out["cpus"], out["mem"] = a.Instances, a.CPUs, a.Mem
	out["disk"] = a.Disk
	out["backoffSeconds"], out["backoffFactor"], out["maxLaunchDelaySeconds"] = a.BackoffSeconds, a.BackoffFactor, a.MaxLaunchDelaySeconds
	out["upgradeStrategy"], out["unreachableStrategy"] = a.UpgradeStrategy, a.UnreachableStrategy
	out["killSelection"], out["requirePorts"] = a.KillSelection, a.RequirePorts
	if a.Resident() {
		out["residency"] = a.Residency
	} else {
		delete(out, "residency") // Marathon shows a residency for apps with persistent volumes only
	}
	fill("gpus", 0)
	fill("executor", "")
	fill("acceptedResourceRoles", defaultAcceptedRoles)
	fill("role", role)
	for _, k := range emptyListFields {
		fill(k, []any{})
	}
	for _, k := range emptyObjectFields {
		fill(k, map[string]any{})
	}
	if isAbsent(def["fetch"]) && !isAbsent(def["uris"]) {
		out["fetch"] = fetchOfURIs(def["uris"])
	}
	if c := containerWire(def["container"], a); c != nil {
		out["container"] = c
	} else {
		out["container"] = nil
	}
	if _, ok := out["networks"]; !ok {
		out["networks"] = networksOf(def["container"])
	}
	switch {
	case a.hasPortMappings():
		out["portDefinitions"] = []any{}
	case isAbsent(def["portDefinitions"]) && isAbsent(def["ports"]):
		out["portDefinitions"] = defaultPortDefinitions
	default:
		out["portDefinitions"] = portDefinitionsWire(a.PortDefinitions)
	}
	if len(a.HealthChecks) > 0 {
		out["healthChecks"] = healthChecksWire(def["healthChecks"], a)
	}
	for _, k := range neverWrittenAppFields {
		delete(out, k)
	}
	for _, k := range ignoredFields { // a definition stored before they were dropped on input
		delete(out, k)
	}
	return out
}

// portDefinitionsWire is Marathon's portDefinitions: port, protocol and name (labels when
// given). Service ports are not assigned here.
func portDefinitionsWire(pds []PortDefinition) []map[string]any {
	out := []map[string]any{}
	for _, pd := range pds {
		m := map[string]any{"port": pd.Port, "protocol": pd.Protocol}
		if pd.Protocol == "" {
			m["protocol"] = "tcp"
		}
		if pd.Name != "" {
			m["name"] = pd.Name
		}
		if len(pd.Labels) > 0 {
			m["labels"] = pd.Labels
		}
		out = append(out, m)
	}
	return out
}

// fetchOfURIs is Marathon's fetch for the older uris: each extracted if it is an archive.
func fetchOfURIs(raw json.RawMessage) []map[string]any {
	var uris []string
	json.Unmarshal(raw, &uris)
	out := []map[string]any{}
	for _, u := range uris {
		extract := false
		for _, ext := range []string{".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip"} {
			extract = extract || strings.HasSuffix(u, ext)
		}
		out = append(out, map[string]any{"uri": u, "extract": extract, "executable": false, "cache": false})
	}
	return out
}

// containerType is the type of a container given without one: DOCKER with a docker image, MESOS
// otherwise (Marathon's engine for a command or an image without Docker).
func containerType(c *Container) string {
	if c.Docker != nil && c.Docker.Image != "" {
		return "DOCKER"
	}
	return "MESOS"
}

// containerWire is the app's container with Marathon's defaults (type, volumes, the docker
// flags), nil without one.
func containerWire(raw json.RawMessage, a App) map[string]any {
	if isAbsent(raw) || a.Container == nil {
		return nil
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range c {
		if !isAbsent(v) {
			out[k] = v
		}
	}
	out["type"] = a.Container.Type
	if _, ok := out["volumes"]; !ok {
		out["volumes"] = []any{}
	} else if len(a.PersistentVolumes()) > 0 {
		out["volumes"] = volumesWire(c["volumes"], a.Container.Volumes)
	}
	if d := a.Container.Docker; d != nil {
		var docker map[string]any
		json.Unmarshal(c["docker"], &docker)
		if docker == nil {
			docker = map[string]any{}
		}
		docker["forcePullImage"], docker["privileged"] = d.ForcePullImage, d.Privileged
		if _, ok := docker["parameters"]; !ok {
			docker["parameters"] = []any{}
		}
		out["docker"] = docker
	}
	return out
}

// volumesWire is the container's volumes as given, a persistent one with Marathon's defaults
// filled in: mode RW, persistent.type root, constraints [].
func volumesWire(raw json.RawMessage, vols []VolumeDef) []any {
	var given []map[string]any
	json.Unmarshal(raw, &given)
	out := []any{}
	for i, v := range vols {
		var m map[string]any
		if i < len(given) {
			m = given[i]
		}
		if m == nil {
			m = map[string]any{}
		}
		if p := v.Persistent; p != nil {
			if v.Mode == "" {
				m["mode"] = "RW"
			}
			pm, _ := m["persistent"].(map[string]any)
			if pm == nil {
				pm = map[string]any{}
			}
			if p.Type == "" {
				pm["type"] = PersistentRoot
			}
			if _, ok := pm["constraints"]; !ok {
				pm["constraints"] = []any{}
			}
			m["persistent"] = pm
		}
		out = append(out, m)
	}
	return out
}

// networksOf is Marathon's networks for an app that gives none: a docker container on BRIDGE or
// USER networking (Marathon's older form) is on container/bridge or container; anything else is
// on the host's network.
func networksOf(rawContainer json.RawMessage) any {
	var c struct {
		Docker struct {
			Network string `json:"network"`
		} `json:"docker"`
	}
	json.Unmarshal(rawContainer, &c)
	switch strings.ToUpper(c.Docker.Network) {
	case "BRIDGE":
		return []map[string]string{{"mode": "container/bridge"}}
	case "USER":
		return []map[string]string{{"mode": "container"}}
	}
	return defaultNetworks
}

// healthChecksWire is the app's health checks with Marathon's defaults filled in: the numbers,
// protocol, portIndex (ported checks), path and ignoreHttp1xx (HTTP ones), ipProtocol; a
// command as Marathon's {"value": ...}.
func healthChecksWire(raw json.RawMessage, a App) []map[string]any {
	var given []map[string]json.RawMessage
	json.Unmarshal(raw, &given)
	out := []map[string]any{}
	for i, hc := range a.HealthChecks {
		m := map[string]any{}
		if i < len(given) {
			for k, v := range given[i] {
				if !isAbsent(v) {
					m[k] = v
				}
			}
		}
		fill := func(k string, v any) {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
		// delaySeconds as Marathon shows it for every protocol (15 unless given), though only
		// COMMAND and MESOS_ checks wait for it (pkg/health).
		numbers := []int{hc.GracePeriodSeconds, hc.IntervalSeconds, hc.MaxConsecutiveFailures, hc.TimeoutSeconds, hc.DelaySeconds}
		for j, k := range defaultHealthNumbers {
			fill(k, numbers[j])
		}
		proto := strings.ToUpper(fmt.Sprint(hc.Protocol))
		if p, ok := m["protocol"].(json.RawMessage); ok {
			var s string
			if json.Unmarshal(p, &s) == nil && s != "" {
				proto = strings.ToUpper(s)
			}
		}
		m["protocol"] = proto
		if proto == "COMMAND" {
			m["command"] = map[string]string{"value": hc.Command}
		} else {
			if hc.Port == 0 {
				fill("portIndex", hc.PortIndex)
			}
			fill("ipProtocol", "IPv4")
		}
		if strings.Contains(proto, "HTTP") {
			fill("path", "/")
			fill("ignoreHttp1xx", false)
		}
		out = append(out, m)
	}
	return out
}

// taskWire is a task as Marathon writes it.
type taskWire struct {
	ID                 string            `json:"id"`
	AppID              string            `json:"appId"`
	Host               string            `json:"host"`
	IPAddresses        []ipAddress       `json:"ipAddresses"`
	Ports              []int             `json:"ports"`
	ServicePorts       []int             `json:"servicePorts"` // its app's (serviceports.go)
	SlaveID            string            `json:"slaveId"`
	StagedAt           wireTime          `json:"stagedAt"`
	StartedAt          *wireTime         `json:"startedAt,omitempty"`
	Version            string            `json:"version"`
	State              string            `json:"state"`
	LocalVolumes       []localVolumeWire `json:"localVolumes"`
	Region             string            `json:"region,omitempty"`
	Zone               string            `json:"zone,omitempty"`
	Role               string            `json:"role"`
	HealthCheckResults []healthWire      `json:"healthCheckResults,omitempty"`
}

// localVolumeWire is Marathon's LocalVolumeId: a persistent volume of a resident task.
type localVolumeWire struct {
	RunSpecID     string `json:"runSpecId"`
	ContainerPath string `json:"containerPath"`
	UUID          string `json:"uuid"`
	PersistenceID string `json:"persistenceId"`
}

// localVolumesOf are a reservation's volumes as tasks show them.
func localVolumesOf(r *ReservationRecord) []localVolumeWire {
	out := []localVolumeWire{}
	if r == nil {
		return out
	}
	for _, v := range r.Volumes {
		out = append(out, localVolumeWire{RunSpecID: r.AppID, ContainerPath: v.ContainerPath, UUID: instanceUUID(r.ID), PersistenceID: v.PersistenceID})
	}
	return out
}

// reservedTaskWire is a suspended resident instance as Marathon lists it among the tasks: its
// agent and volumes, its latest task's id and end state, no stagedAt, startedAt, version or
// ports (it runs nothing).
type reservedTaskWire struct {
	ID           string            `json:"id"`
	AppID        string            `json:"appId"`
	Host         string            `json:"host"`
	IPAddresses  []ipAddress       `json:"ipAddresses"`
	Ports        []int             `json:"ports"`
	ServicePorts []int             `json:"servicePorts"`
	SlaveID      string            `json:"slaveId"`
	State        string            `json:"state"`
	LocalVolumes []localVolumeWire `json:"localVolumes"`
	Region       string            `json:"region,omitempty"`
	Zone         string            `json:"zone,omitempty"`
	Role         string            `json:"role"`
}

// reservedTaskWireOf is a suspended instance's entry; role is the framework's.
func reservedTaskWireOf(r *ReservationRecord, role string, st *leaderState) reservedTaskWire {
	t := reservedTaskWire{ID: r.shownID(), AppID: r.AppID, Host: r.Host, IPAddresses: []ipAddress{}, Ports: []int{}, ServicePorts: []int{},
		SlaveID: r.AgentID, State: r.LastState, LocalVolumes: localVolumesOf(r), Region: r.Attributes["region"], Zone: r.Attributes["zone"], Role: role}
	if t.State == "" {
		t.State = "TASK_STAGING" // Marathon's state for a task whose condition has no Mesos state
	}
	if as := st.apps[r.AppID]; as != nil {
		t.ServicePorts = append(t.ServicePorts, as.app.ServicePorts()...)
	}
	return t
}

// shownID is the id a suspended instance is listed (and killed or wiped) by: its latest
// task's.
func (r *ReservationRecord) shownID() string {
	if r.LastTaskID != "" {
		return r.LastTaskID
	}
	return r.ID
}

// ipAddress is one of a task's addresses.
type ipAddress struct {
	IPAddress string `json:"ipAddress"`
	Protocol  string `json:"protocol"`
}

// healthWire is Marathon's result of a task's health checks. Agora's agents report whether a
// task is healthy, not the times of each probe: those are null.
type healthWire struct {
	Alive               bool      `json:"alive"`
	ConsecutiveFailures int       `json:"consecutiveFailures"`
	FirstSuccess        *wireTime `json:"firstSuccess"`
	LastSuccess         *wireTime `json:"lastSuccess"`
	LastFailure         *wireTime `json:"lastFailure"`
	LastFailureCause    *string   `json:"lastFailureCause"`
	InstanceID          string    `json:"instanceId"`
	TaskID              string    `json:"taskId"`
}

// taskWireOf is an instance's task; role is the framework's, st has its app's service ports.
func taskWireOf(in *instance, role string, st *leaderState) taskWire {
	t := taskWire{ID: in.rec.ID, AppID: in.rec.AppID, Host: in.rec.Host, Ports: in.rec.Ports, SlaveID: in.rec.AgentID,
		StagedAt: wireTime(in.rec.StagedAt), Version: in.rec.Version, State: string(in.state),
		IPAddresses: []ipAddress{}, LocalVolumes: localVolumesOf(st.reservations[in.rec.Reservation]), Role: role,
		Region: in.rec.Attributes["region"], Zone: in.rec.Attributes["zone"]}
	if in.startedAt != nil {
		ts := wireTime(*in.startedAt)
		t.StartedAt = &ts
	}
	if t.Ports == nil {
		t.Ports = []int{}
	}
	t.ServicePorts = []int{}
	if as := st.apps[in.rec.AppID]; as != nil {
		t.ServicePorts = append(t.ServicePorts, as.app.ServicePorts()...)
	}
	if ip := net.ParseIP(in.rec.Host); ip != nil {
		proto := "IPv4"
		if ip.To4() == nil {
			proto = "IPv6"
		}
		t.IPAddresses = append(t.IPAddresses, ipAddress{IPAddress: ip.String(), Protocol: proto})
	}
	if in.healthy != nil {
		h := healthWire{Alive: *in.healthy, InstanceID: in.rec.ID, TaskID: in.rec.ID}
		if !h.Alive {
			h.ConsecutiveFailures = 1
		}
		t.HealthCheckResults = []healthWire{h}
	}
	return t
}

// taskFailureWire is Marathon's lastTaskFailure.
type taskFailureWire struct {
	AppID     string   `json:"appId"`
	Host      string   `json:"host"`
	Message   string   `json:"message"`
	State     string   `json:"state"`
	TaskID    string   `json:"taskId"`
	Timestamp wireTime `json:"timestamp"`
	Version   string   `json:"version"`
	SlaveID   string   `json:"slaveId,omitempty"`
}

func taskFailureWireOf(f *TaskFailure) taskFailureWire {
	return taskFailureWire{AppID: f.AppID, Host: f.Host, Message: f.Message, State: f.State, TaskID: f.TaskID,
		Timestamp: wireTime(f.Timestamp), Version: f.Version, SlaveID: f.SlaveID}
}

// infoWire is GET /v2/info: Marathon's sections with Agora's values. leader is the address the
// request reached (the leader answers /v2); httpPort its port.
func (s *Service) infoWire(frameworkID, leader string, httpPort int) map[string]any {
	v := version.Get()
	return map[string]any{
		"name": "marathon", "version": v.Version, "buildref": v.GitSHA, "elected": true,
		"leader": leader, "frameworkId": frameworkID,
		"marathon_config": map[string]any{
			"framework_name": s.cfg.Name, "mesos_role": s.cfg.Role, "failover_timeout": int64(s.cfg.FailoverTimeout.Seconds()),
			"checkpoint": true, "executor": "//cmd", "ha": true, "hostname": strings.Split(leader, ":")[0],
			"master": "agora", "mesos_user": "", "webui_url": nil, "mesos_leader_ui_url": "/",
			"features": []string{}, "local_port_min": 10000, "local_port_max": 20000,
			"task_launch_timeout": 300000, "task_reservation_timeout": 20000,
			"reconciliation_initial_delay": 15000, "reconciliation_interval": 10000,
			"task_lost_expunge_initial_delay": 300000, "task_lost_expunge_interval": 30000,
			"leader_proxy_connection_timeout_ms": 5000, "leader_proxy_read_timeout_ms": 10000,
			"decline_offer_duration": 120000, "env_vars_prefix": "", "max_instances_per_offer": 5,
			"access_control_allow_origin": []string{},
		},
		// Agora keeps its state in raft, not ZooKeeper: the section is there, with what stands
		// for it (the replicated store).
		"zookeeper_config": map[string]any{
			"zk": "", "zk_timeout": 10000, "zk_connection_timeout": 10000, "zk_session_timeout": 10000,
			"zk_max_versions": 50, "zk_compression": false, "zk_compression_threshold": 65536, "zk_max_node_size": 1024000,
		},
		"http_config":      map[string]any{"http_port": httpPort, "https_port": 8443},
		"event_subscriber": map[string]any{"type": "sse", "http_endpoints": nil},
	}
}

// planWire is a deployment plan as events carry it: id, version and steps — Marathon 1.10's
// light plan — and, as Marathon wrote them until 1.8 dropped them (and marathon-python's
// event parser still needs them), the original and target trees of what the change touches
// (plantree.go), apps in their API form. A stream asked with ?plan-format=light gets the light
// plan only (the bus strips them). role is the framework's.
func planWire(d *Deployment, role string) map[string]any {
	steps := d.Steps
	if steps == nil {
		steps = []Step{}
	}
	out := map[string]any{"id": d.ID, "version": d.Version, "steps": steps}
	if d.Original != nil && d.Target != nil {
		out["original"], out["target"] = planGroupWire(d.Original, role), planGroupWire(d.Target, role)
	}
	return out
}

// planGroupWire is a tree of a plan as Marathon's group JSON: apps as the API shows them.
func planGroupWire(g *PlanGroup, role string) map[string]any {
	apps := make([]map[string]any, 0, len(g.Apps))
	for _, def := range g.Apps {
		def = def.withDefaults()
		if a, err := def.App(); err == nil {
			apps = append(apps, appWire(def, a, role))
		}
	}
	groups := make([]map[string]any, 0, len(g.Groups))
	for _, sub := range g.Groups {
		groups = append(groups, planGroupWire(sub, role))
	}
	deps := g.Dependencies
	if deps == nil {
		deps = []string{}
	}
	return map[string]any{"id": g.ID, "apps": apps, "pods": []any{}, "groups": groups, "dependencies": deps, "version": g.Version}
}

// deploymentWire is a deployment as GET /v2/deployments writes it.
func deploymentWire(d *Deployment) map[string]any {
	actions := []map[string]any{}
	for _, a := range d.CurrentActions {
		actions = append(actions, map[string]any{"action": a.Action, "app": a.App, "readinessCheckResults": []any{}})
	}
	steps, apps := d.Steps, d.AffectedApps
	if steps == nil {
		steps = []Step{}
	}
	if apps == nil {
		apps = []string{}
	}
	return map[string]any{
		"id": d.ID, "version": d.Version, "affectedApps": apps, "affectedPods": []string{},
		"steps": steps, "currentActions": actions, "currentStep": d.CurrentStep, "totalSteps": d.TotalSteps,
	}
}

// caller is who made an API request, for api_post_event: the client's address and the URI.
type caller struct{ clientIP, uri string }

type callerKey struct{}

// withCaller keeps r's caller in its context.
func withCaller(r *http.Request) *http.Request {
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{clientIP: ip, uri: r.URL.RequestURI()}))
}

// apiPostEvent is Marathon's api_post_event for an app a request created or changed.
func apiPostEvent(ctx context.Context, app map[string]any) map[string]any {
	c, _ := ctx.Value(callerKey{}).(caller)
	return map[string]any{"clientIp": c.clientIP, "uri": c.uri, "appDefinition": app}
}

// deploymentHeader is the response header Marathon names a write's deployment by.
const deploymentHeader = "Marathon-Deployment-Id"

// setDeploymentHeader names the deployment a write started, if it started one.
func setDeploymentHeader(w http.ResponseWriter, res changeResult) {
	if res.DeploymentID != "" {
		w.Header().Set(deploymentHeader, res.DeploymentID)
	}
}

// fieldError answers with Marathon's error body naming one path: {"message", "details": [{"path",
// "errors"}]}.
func fieldError(w http.ResponseWriter, code int, path, msg string) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	httpjson.Write(w, code, &ValidationError{Message: path + ": " + msg, Details: []ErrorDetails{{Path: path, Errors: []string{msg}}}})
}
