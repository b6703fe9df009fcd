package api

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// Reservations and persistent volumes, as Mesos's dynamic reservations: a framework turns part
// of an offer into resources reserved for its role on that agent (RESERVE), gives them back
// (UNRESERVE), makes a persistent volume of reserved disk (CREATE) and removes one (DESTROY).
// These operations come in an ACCEPT, beside LAUNCH; the leader commits each through raft
// before it takes effect, and reserved resources are offered to frameworks of their role only.
// Reservations are of scalars (cpus, mem, disk); ports are never reserved.

// The reservation operations of an Accept.
const (
	OperationReserve   OperationType = "RESERVE"
	OperationUnreserve OperationType = "UNRESERVE"
	OperationCreate    OperationType = "CREATE"
	OperationDestroy   OperationType = "DESTROY"
)

// Reserve reserves (or, in UNRESERVE, gives back) scalar resources of the offers' agent for the
// framework's role. A RESERVE takes them from the offers' unreserved part; an UNRESERVE from
// their reserved part that no volume holds.
type Reserve struct {
	Resources resources.Resources `json:"resources"`
}

// CreateVolumes makes persistent volumes of the offers' reserved disk.
type CreateVolumes struct {
	Volumes []PersistentVolume `json:"volumes"`
}

// DestroyVolumes removes persistent volumes of the framework's role on the offers' agent; each
// must be in the offers (no task uses it). Its disk goes back to the role's reservation.
type DestroyVolumes struct {
	VolumeIDs []string `json:"volume_ids"`
}

// PersistentVolume is reserved disk of one agent that outlives the tasks that use it: the agent
// keeps it under its data dir, bounded to Size, until a DESTROY. Its ID is the framework's
// choice (Mesos's persistence id), unique on its agent.
type PersistentVolume struct {
	ID   string  `json:"id"`
	Size float64 `json:"size"` // MiB of the role's reserved disk
	// Role and Principal are the master's: the creating framework's role and principal.
	Role      string            `json:"role,omitempty"`
	Principal string            `json:"principal,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at,omitzero"`
}

// VolumeMount is a task's use of a persistent volume of its agent: mounted at ContainerPath
// (relative: inside the task's sandbox). A volume serves one task at a time. Size and Role are
// filled in by the master for the agent, which makes the volume if it does not have it yet.
type VolumeMount struct {
	VolumeID      string  `json:"volume_id"`
	ContainerPath string  `json:"container_path"`
	ReadOnly      bool    `json:"read_only,omitempty"`
	Size          float64 `json:"size,omitempty"`
	Role          string  `json:"role,omitempty"`
}

// AgentReservations is what is reserved on one agent: GET /v1/reservations, and the replicated
// store's record of it. Reserved counts the volumes' disk too.
type AgentReservations struct {
	AgentID  string                         `json:"agent_id"`
	Hostname string                         `json:"hostname,omitempty"`
	Reserved map[string]resources.Resources `json:"reserved"` // by role
	Volumes  []PersistentVolume             `json:"volumes,omitempty"`
	// Destroying are volumes destroyed in the store that the agent has not yet confirmed
	// removing: the leader tells it again until it does.
	Destroying []PersistentVolume `json:"destroying,omitempty"`
}

// AgentVolume is a persistent volume as its agent has it: GET /v1/volumes on an agent.
type AgentVolume struct {
	PersistentVolume
	Path string  `json:"path"`           // where the agent keeps it on the host
	Used float64 `json:"used_mib"`       // MiB used of Size
	Task string  `json:"task,omitempty"` // the live task that mounts it, if any
}

// ValidateVolumeID checks a persistence id: 1 to 64 letters, digits, '-', '_' and '.', not
// starting with '.', so that it is a safe file name on the agent.
func ValidateVolumeID(id string) error {
	if id == "" || len(id) > 64 || strings.HasPrefix(id, ".") {
		return fmt.Errorf("%q: want 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: want 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'", id)
		}
	}
	return nil
}

// ValidateVolumeMounts checks a task's persistent volume mounts; errors name field[i].
func ValidateVolumeMounts(field string, ms []VolumeMount, hasImage bool) error {
	seenID, seenPath := map[string]bool{}, map[string]bool{}
	for i, m := range ms {
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := ValidateVolumeID(m.VolumeID); err != nil {
			return &FieldError{Field: f + ".volume_id", Msg: err.Error()}
		}
		if seenID[m.VolumeID] {
			return &FieldError{Field: f + ".volume_id", Msg: fmt.Sprintf("%s is mounted twice", m.VolumeID)}
		}
		p := m.ContainerPath
		switch {
		case p == "":
			return &FieldError{Field: f + ".container_path", Msg: "is required"}
		case path.Clean(p) != p || strings.HasPrefix(p, "../") || p == "..":
			return &FieldError{Field: f + ".container_path", Msg: fmt.Sprintf("%q: want a clean path, not out of the sandbox", p)}
		case path.IsAbs(p) && !hasImage:
			return &FieldError{Field: f + ".container_path", Msg: fmt.Sprintf("%q: an absolute path needs an image (a task without one sees the host read-only); use a path relative to the sandbox", p)}
		case seenPath[p]:
			return &FieldError{Field: f + ".container_path", Msg: fmt.Sprintf("%q is mounted twice", p)}
		}
		if m.Size < 0 {
			return &FieldError{Field: f + ".size", Msg: "must be >= 0"}
		}
		seenID[m.VolumeID], seenPath[p] = true, true
	}
	return nil
}
