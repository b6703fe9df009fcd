package marathon

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

// Resident apps, Marathon's stateful apps: an app with local persistent volumes
// (container.volumes[].persistent). Its instances are pinned to the agents they first land on.
//
// An instance's reservation (ReservationRecord, reservation/<id> in the store) is what the
// framework keeps of it across its tasks: the agent, the resources reserved there for the
// framework's role (the app's cpus, mem and disk, and its volumes' sizes) and the persistent
// volumes made of them. The master keeps reservations per role per agent as sums, so which
// volume ids and amounts are whose is the framework's record only.
//
//	first launch: RESERVE + CREATE + LAUNCH in one ACCEPT; the reservation and the instance
//	   │          committed before it (reservation unconfirmed until its task runs)
//	   ▼
//	in use ──task ends (killed, failed, agent restarted)──▶ suspended (free: no task)
//	   ▲                                                         │
//	   └──── an offer of its agent lists its volumes: LAUNCH ◀──┘ the app wants an instance
//
//	wipe=true, the app deleted, a launch that never ran on an unconfirmed reservation:
//	   Destroy set ──an offer of its agent──▶ DESTROY + UNRESERVE, record deleted
//	its agent removed for good (FAILURE, TASK_GONE for REASON_AGENT_REMOVED): record deleted,
//	   the volumes are gone with the agent; a fresh instance starts elsewhere
//
// While its agent is away (unreachable) an instance waits: a resident app's unreachable
// strategy is disabled (Marathon's WAIT_FOREVER). Scaling down suspends instances; scaling up
// takes suspended ones first, on their agents, and makes new reservations only for the rest.

// Resident says whether the app has persistent volumes.
func (a App) Resident() bool {
	return len(a.PersistentVolumes()) > 0
}

// PersistentVolumes are the app's local persistent volumes, in the definition's order.
func (a App) PersistentVolumes() []VolumeDef {
	if a.Container == nil {
		return nil
	}
	var out []VolumeDef
	for _, v := range a.Container.Volumes {
		if v.Persistent != nil {
			out = append(out, v)
		}
	}
	return out
}

// UnmarshalJSON reads a residency with Marathon's defaults for what it leaves out.
func (r *Residency) UnmarshalJSON(b []byte) error {
	type plain Residency
	p := plain{RelaunchEscalationTimeoutSeconds: DefaultRelaunchEscalationTimeoutSeconds, TaskLostBehavior: TaskLostWaitForever}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Residency(p)
	return nil
}

// checkPersistentVolume checks a persistent volume as Marathon does;
// path is the volume's JSON path.
func (a App) checkPersistentVolume(p *problems, path string, v VolumeDef) {
	info := v.Persistent
	if v.HostPath != "" || v.Secret != "" || v.External != nil {
		p.add(path, "a persistent volume has containerPath, mode and persistent only, no hostPath, secret or external")
	}
	switch cp := v.ContainerPath; {
	case cp == "" || cp == "." || cp == "..":
		p.add(path+"/containerPath", "got %q, expected a directory name in the sandbox, such as \"data\"", cp)
	case strings.Contains(cp, "/"):
		p.add(path+"/containerPath", "value must not contain \"/\": a persistent volume is a directory of the sandbox, one level deep (\"data\", not \"/data\" or \"var/data\")")
	}
	if v.Mode != "" && v.Mode != "RW" {
		p.add(path+"/mode", "got %q, expected RW: a persistent volume is read-write", v.Mode)
	}
	switch info.Type {
	case "", PersistentRoot:
		if len(info.Constraints) > 0 {
			p.add(path+"/persistent/constraints", "Constraints on root volumes are not supported")
		}
		if info.MaxSize != nil {
			p.add(path+"/persistent/maxSize", "Only mount volumes can have maxSize")
		}
	case PersistentPath, PersistentMount:
		p.add(path+"/persistent/type", "got %q: Agora's agents have a root disk only (no Mesos path or mount disks); use \"root\"", info.Type)
	default:
		p.add(path+"/persistent/type", "got %q, expected root, path or mount", info.Type)
	}
	if !(info.Size > 0) {
		p.add(path+"/persistent/size", "got %v, expected more than 0 (MiB)", info.Size)
	}
	if info.MaxSize != nil && *info.MaxSize <= info.Size {
		p.add(path+"/persistent/maxSize", "Max size must be larger than size")
	}
}

// checkResident checks what an app with persistent volumes must be: an upgrade strategy that
// never starts more instances than wanted (their volumes would be new), a disabled unreachable
// strategy, a residency that waits for a lost task.
func (a App) checkResident(p *problems) {
	if !a.Resident() {
		return
	}
	if a.UpgradeStrategy.MaximumOverCapacity != 0 {
		p.add("/upgradeStrategy/maximumOverCapacity", "got %v, expected 0: an app with persistent volumes kills an old instance before its replacement takes its volumes over", a.UpgradeStrategy.MaximumOverCapacity)
	}
	if !a.UnreachableStrategy.Disabled {
		p.add("/unreachableStrategy", "unreachableStrategy must be disabled for resident tasks")
	}
	if r := a.AcceptedResourceRoles; len(r) > 0 && (len(r) != 1 || r[0] != api.DefaultRole) {
		p.add("/acceptedResourceRoles", "A resident app must have `acceptedResourceRoles = [\"*\"]`.")
	}
	if r := a.Residency; r != nil {
		if r.RelaunchEscalationTimeoutSeconds < 0 {
			p.add("/residency/relaunchEscalationTimeoutSeconds", "got %v, expected 0 or more", r.RelaunchEscalationTimeoutSeconds)
		}
		switch r.TaskLostBehavior {
		case TaskLostWaitForever:
		case TaskLostRelaunchAfterTimeout:
			p.add("/residency/taskLostBehavior", "got %q: Agora waits for a lost task's agent (WAIT_FOREVER); delete the task with wipe=true to start it afresh elsewhere", r.TaskLostBehavior)
		default:
			p.add("/residency/taskLostBehavior", "got %q, expected WAIT_FOREVER", r.TaskLostBehavior)
		}
	}
}

// Marathon's message for a resident app's resources changed by an update.
const persistentResourcesChanged = "Services with persistent volumes configured may not change resource requirements. If you need to make this change, please create a new service."

// checkResidentUpdate checks a change of an app that has or gets persistent volumes, as
// Marathon does: its volumes and resources stay as they are (its reservations hold them).
func checkResidentUpdate(p *problems, from, to App) {
	if !from.Resident() && !to.Resident() {
		return
	}
	fv, tv := from.PersistentVolumes(), to.PersistentVolumes()
	same := len(fv) == len(tv)
	for i := 0; same && i < len(fv); i++ {
		same = sameVolume(fv[i], tv[i])
	}
	if !same {
		p.add("/container/volumes", "Persistent volumes can not be changed!")
	}
	for _, f := range []struct {
		path     string
		from, to float64
	}{{"/cpus", from.CPUs, to.CPUs}, {"/mem", from.Mem, to.Mem}, {"/disk", from.Disk, to.Disk}} {
		if f.from != f.to {
			p.add(f.path, "%s", persistentResourcesChanged)
		}
	}
	if from.RequirePorts != to.RequirePorts {
		p.add("/requirePorts", "%s", persistentResourcesChanged)
	}
	if !slices.Equal(fixedPorts(from), fixedPorts(to)) {
		p.add("/", "%s", persistentHostPortsChanged)
	}
}

// Marathon's message for a resident app's fixed host ports changed by an update.
const persistentHostPortsChanged = "Services with persistent volumes configured may not change host ports. If you need to make this change, please create a new service."

// fixedPorts are the app's fixed host ports (0s, any port, left out), in order.
func fixedPorts(a App) []int {
	var out []int
	for _, p := range a.RequiredPorts() {
		if p != 0 {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// sameVolume compares two persistent volumes with Marathon's defaults filled in (mode RW, type
// root, no constraints): what GET shows of a volume is the same volume as the one written.
func sameVolume(a, b VolumeDef) bool {
	norm := func(v VolumeDef) string {
		p := *v.Persistent
		if p.Type == "" {
			p.Type = PersistentRoot
		}
		if len(p.Constraints) == 0 {
			p.Constraints = nil
		}
		v.Persistent = &p
		if v.Mode == "" {
			v.Mode = "RW"
		}
		j, _ := json.Marshal(v)
		return string(j)
	}
	return norm(a) == norm(b)
}

// roleProblem says why a resident app cannot run under the framework's role ("" when it can):
// reservations are made for a role, never "*" (Marathon's --mesos_role).
func roleProblem(a App, role string) (path, msg string) {
	if !a.Resident() || role != api.DefaultRole {
		return "", ""
	}
	for i, v := range a.Container.Volumes {
		if v.Persistent != nil {
			return fmt.Sprintf("/container/volumes(%d)/persistent", i),
				"persistent volumes need resources reserved for the framework's role, and the framework runs as role \"*\", which cannot reserve: start the masters with --marathon-role <role> (Marathon's --mesos_role)"
		}
	}
	return "", ""
}

// checkResidentChange checks what only the framework knows of an app written: its role (a
// resident app needs one that can reserve), and, for a change, what the app was.
func checkResidentChange(a App, cur *appState, role string) error {
	var p problems
	if path, msg := roleProblem(a, role); path != "" {
		p.add(path, "%s", msg)
	}
	if cur != nil {
		checkResidentUpdate(&p, cur.app, a)
	}
	return p.err()
}

// ReservationRecord is what the store keeps of a resident instance across its tasks (store.go):
// written before the ACCEPT that reserves and creates its volumes, deleted once they are
// destroyed, or gone with their agent.
type ReservationRecord struct {
	// ID is the instance's: its first task's id. Later tasks have ids of their own and name it
	// (InstanceRecord.Reservation).
	ID         string            `json:"id"`
	AppID      string            `json:"appId"`
	AgentID    string            `json:"agentId"`
	Host       string            `json:"host"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Resources are what is reserved for it on the agent: the app's cpus, mem and disk, and
	// its volumes' sizes (the volumes hold that disk).
	Resources resources.Resources `json:"resources"`
	Volumes   []LocalVolume       `json:"volumes"`
	CreatedAt time.Time           `json:"createdAt"`
	// Confirmed: one of its tasks ran, so the agent has its volumes. A launch that never ran
	// on an unconfirmed reservation may have made none: the reservation is destroyed (what
	// the offers show of it) and the instance starts afresh.
	Confirmed bool `json:"confirmed,omitempty"`
	// Destroy: wiped (wipe=true, its app deleted); destroyed at the next offer of its agent.
	Destroy bool `json:"destroy,omitempty"`
	// LastTaskID and LastState are its latest task's, shown while it is suspended.
	LastTaskID string `json:"lastTaskId,omitempty"`
	LastState  string `json:"lastState,omitempty"`
}

// LocalVolume is one persistent volume of a reservation: Marathon's LocalVolumeId, with the
// size it was made with. PersistenceID is the volume's id on its agent: the instance's uuid and
// the volume's index among the app's persistent volumes (volumeIDFor).
type LocalVolume struct {
	ContainerPath string  `json:"containerPath"`
	PersistenceID string  `json:"persistenceId"`
	Size          float64 `json:"size"`
}

func reservationKey(id string) string { return "reservation/" + id }

// instanceUUID is the uuid part of an instance's id (<app>.<uuid>, taskIDFor).
func instanceUUID(instanceID string) string {
	if i := strings.LastIndexByte(instanceID, '.'); i >= 0 {
		return instanceID[i+1:]
	}
	return instanceID
}

// volumeIDFor is the persistence id of an instance's i-th persistent volume: "<uuid>-v<i>",
// uuid the instance's. Marathon's is "<app>#<containerPath>#<uuid>"; a Mesos persistence id of
// Agora's is at most 64 letters, digits, '-', '_' and '.' (api.ValidateVolumeID), which an
// app's path and a containerPath need not fit, so the app and the path are the volume's labels
// (volumeLabels) and the id keeps what makes it unique.
func volumeIDFor(instanceID string, i int) string {
	return fmt.Sprintf("%s-v%d", instanceUUID(instanceID), i)
}

// volumeLabels label a volume with the app and path it is for.
func volumeLabels(appID, instanceID, containerPath string) map[string]string {
	return map[string]string{"marathon.app": appID, "marathon.instance": instanceID, "marathon.containerPath": containerPath}
}

// newReservation is the reservation of a new instance of a resident app on an offer's agent.
func newReservation(a App, instanceID string, o api.Offer, now time.Time) ReservationRecord {
	r := ReservationRecord{ID: instanceID, AppID: a.ID, AgentID: o.AgentID, Host: o.Hostname, Attributes: o.Attributes, CreatedAt: now,
		Resources: resources.Resources{CPUs: a.CPUs, Mem: a.Mem, Disk: a.Disk}}
	for i, v := range a.PersistentVolumes() {
		r.Volumes = append(r.Volumes, LocalVolume{ContainerPath: v.ContainerPath, PersistenceID: volumeIDFor(instanceID, i), Size: v.Persistent.Size})
		r.Resources.Disk += v.Persistent.Size
	}
	return r
}

// mounts are the volume mounts of a task on the reservation.
func (r ReservationRecord) mounts() []api.VolumeMount {
	var out []api.VolumeMount
	for _, v := range r.Volumes {
		out = append(out, api.VolumeMount{VolumeID: v.PersistenceID, ContainerPath: v.ContainerPath})
	}
	return out
}

// volumeIDs lists the persistence ids of its volumes.
func (r ReservationRecord) volumeIDs() []string {
	var out []string
	for _, v := range r.Volumes {
		out = append(out, v.PersistenceID)
	}
	return out
}
