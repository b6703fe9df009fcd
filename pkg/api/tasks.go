package api

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/health"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// TaskInfo is one task to launch on an agent: what the master sends the agent (POST /v1/tasks on
// the agent's API) once a framework's launch has been checked against an offer.
type TaskInfo struct {
	TaskID      string              `json:"task_id"`
	FrameworkID string              `json:"framework_id,omitempty"`
	Name        string              `json:"name,omitempty"`
	Resources   resources.Resources `json:"resources"` // cpus, mem (MiB), disk (MiB), the ports it was given
	// Image is a registry reference or an imported image's name; empty runs Cmd on the host's
	// root filesystem, read-only.
	Image     string `json:"image,omitempty"`
	ForcePull bool   `json:"force_pull,omitempty"`
	Cmd       string `json:"cmd,omitempty"` // run as sh -c CMD
	// Args, without Cmd, follow the image's entrypoint; without an image, they are the program
	// and its arguments.
	Args []string          `json:"args,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	// SecretEnv are env variables whose values are secrets: they reach the container's env but
	// are never shown (Masked) nor kept on disk by the agent.
	SecretEnv map[string]string `json:"secret_env,omitempty"`
	// SecretFiles are secrets the task reads as files: each value is written to a tmpfs (never
	// the agent's disk), owned by the task's user with mode 0400, and mounted read-only at its
	// path in the container. Never shown (Masked) nor kept on disk by the agent.
	SecretFiles []SecretFile      `json:"secret_files,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Volumes are host directories mounted into the container.
	Volumes []Volume `json:"volumes,omitempty"`
	// PersistentVolumes are persistent volumes of the agent (api.PersistentVolume) the task
	// mounts; their disk is the volume's, not counted in Resources.
	PersistentVolumes []VolumeMount `json:"persistent_volumes,omitempty"`
	// PortNames names the task's ports in order, for PORT_<NAME>.
	PortNames []string `json:"port_names,omitempty"`
	// PortProtocols are the protocols of its ports in order, as service discovery shows them
	// (the Mesos-shaped state's discovery ports): "tcp", "udp" or "udp,tcp"; missing or "" is
	// tcp.
	PortProtocols []string       `json:"port_protocols,omitempty"`
	HealthChecks  []health.Check `json:"health_checks,omitempty"`
	// Privileged runs the container with every capability, the host's devices and no seccomp
	// filter; an agent refuses it unless started with --allow-privileged (it then has the
	// attribute PrivilegedAttribute, which the service framework places such tasks by).
	Privileged bool `json:"privileged,omitempty"`
	// User runs the task as this user of its image or of the agent's host: a name, a uid,
	// name:group or uid:gid. Empty: the image's user unless root, else the agent's default task
	// user (nobody). Root only on agents started with --allow-root-tasks.
	User string `json:"user,omitempty"`
	// KillGracePeriodSeconds is the time between SIGTERM and SIGKILL (default 5 s, Mesos's own).
	KillGracePeriodSeconds float64 `json:"kill_grace_period_seconds,omitempty"`
	// Artifacts are downloaded into the sandbox before the task starts; a failed download
	// fails the launch (TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED, naming the URI).
	Artifacts []Artifact `json:"artifacts,omitempty"`
}

// PortProtocols lists a port's protocols as TaskInfo.PortProtocols may: Marathon's.
var PortProtocols = []string{"tcp", "udp", "udp,tcp"}

// ValidatePortProtocols checks a task's port protocols: each one of PortProtocols or "", and
// no more of them than it has ports.
func ValidatePortProtocols(protocols []string, ports int) error {
	if len(protocols) > ports {
		return &FieldError{Field: "port_protocols", Msg: fmt.Sprintf("%d protocols for %d ports", len(protocols), ports)}
	}
	for i, p := range protocols {
		if p != "" && !slices.Contains(PortProtocols, p) {
			return &FieldError{Field: fmt.Sprintf("port_protocols[%d]", i), Msg: fmt.Sprintf("%q is none of %s", p, strings.Join(PortProtocols, ", "))}
		}
	}
	return nil
}

// Volume mounts a directory of the agent's host into a task's container (Marathon's host
// volume). A relative ContainerPath is inside the task's sandbox.
type Volume struct {
	ContainerPath string `json:"container_path"`
	HostPath      string `json:"host_path"`
	ReadOnly      bool   `json:"read_only,omitempty"`
}

// ErrNoSecret: the secret store has no secret of that name (GET and DELETE /v1/secrets answer
// 404; a task that references it waits).
var ErrNoSecret = errors.New("master: no such secret")

// SecretFile is a secret a task reads as a file (Marathon's and Metronome's secret volumes). A
// relative ContainerPath is inside the task's sandbox; an absolute one needs an image (a task
// without one sees a read-only view of the host, where nothing new can be put).
type SecretFile struct {
	ContainerPath string `json:"container_path"`
	Value         string `json:"value"`
}

// SecretMask stands for a secret's value wherever a task is shown or kept.
const SecretMask = "********"

// Masked is the task with its secrets' values replaced by SecretMask.
func (t TaskInfo) Masked() TaskInfo {
	if len(t.SecretEnv) > 0 {
		masked := make(map[string]string, len(t.SecretEnv))
		for k := range t.SecretEnv {
			masked[k] = SecretMask
		}
		t.SecretEnv = masked
	}
	if len(t.SecretFiles) > 0 {
		masked := make([]SecretFile, len(t.SecretFiles))
		for i, f := range t.SecretFiles {
			masked[i] = SecretFile{ContainerPath: f.ContainerPath, Value: SecretMask}
		}
		t.SecretFiles = masked
	}
	return t
}

// DefaultKillGracePeriod is the time between SIGTERM and SIGKILL when the launch names none.
const DefaultKillGracePeriod = 5 * time.Second

// KillGrace is the task's grace period between SIGTERM and SIGKILL.
func (t TaskInfo) KillGrace() time.Duration {
	if t.KillGracePeriodSeconds <= 0 {
		return DefaultKillGracePeriod
	}
	return time.Duration(t.KillGracePeriodSeconds * float64(time.Second))
}

// TaskStatus is a task's state as an agent reports it: in status updates, in its registration,
// and at GET /v1/tasks.
type TaskStatus struct {
	TaskID      string      `json:"task_id"`
	FrameworkID string      `json:"framework_id,omitempty"`
	AgentID     string      `json:"agent_id,omitempty"`
	State       task.State  `json:"state"`
	Reason      task.Reason `json:"reason,omitempty"`
	Source      task.Source `json:"source,omitempty"`
	Message     string      `json:"message,omitempty"`
	Healthy     *bool       `json:"healthy,omitempty"`
	ExitStatus  *int        `json:"exit_status,omitempty"`
	Timestamp   time.Time   `json:"timestamp"`
	UUID        string      `json:"uuid,omitempty"` // of the status update; what is acknowledged
}

// Task is one task an agent holds, as its GET /v1/tasks lists it.
type Task struct {
	Info      TaskInfo   `json:"info"`
	Status    TaskStatus `json:"status"`
	Sandbox   string     `json:"sandbox"`
	StartedAt *time.Time `json:"started_at,omitempty"` // when it reached TASK_RUNNING
}

// KillRequest is the body of POST /v1/tasks/{id}/kill on an agent; a zero grace period uses the
// one the task was launched with.
type KillRequest struct {
	GracePeriodSeconds float64 `json:"grace_period_seconds,omitempty"`
}

// Acknowledgement acknowledges one status update (POST /v1/acknowledge on an agent).
type Acknowledgement struct {
	TaskID string `json:"task_id"`
	UUID   string `json:"uuid"`
}

// StatusAck is the leader's answer to a status update (POST /v1/agents/{id}/status).
type StatusAck struct {
	Acknowledged bool   `json:"acknowledged"`
	UUID         string `json:"uuid"`
}

// PrivilegedAttribute is the attribute ("agora.privileged": "true") of an agent that allows
// privileged containers.
const PrivilegedAttribute = "agora.privileged"

// MaxSecretFiles is the most secret files one task may have.
const MaxSecretFiles = 64

// SecretFilePath checks where a secret file goes in a task's container: a clean path inside its
// sandbox, or, for a task with an image, a clean absolute path other than /.
func SecretFilePath(p string, hasImage bool) error {
	if !strings.HasPrefix(p, "/") {
		return SandboxPath(p)
	}
	switch {
	case !hasImage:
		return fmt.Errorf("%q is absolute, which only a task with an image may have (a task without one sees a read-only view of the host): give a path relative to the sandbox", p)
	case p == "/" || path.Clean(p) != p:
		return fmt.Errorf("%q must be a clean absolute path of a file, without '..'", p)
	case len(p) > 1024:
		return fmt.Errorf("is longer than 1024 characters")
	}
	return nil
}

// ValidateSecretFiles checks a task's secret files; the error is a *FieldError naming
// prefix[i].container_path (prefix is "secret_files" in Agora's own API).
func ValidateSecretFiles(prefix string, fs []SecretFile, hasImage bool) error {
	if len(fs) > MaxSecretFiles {
		return &FieldError{Field: prefix, Msg: fmt.Sprintf("%d secret files: at most %d", len(fs), MaxSecretFiles)}
	}
	seen := make(map[string]bool, len(fs))
	for i, f := range fs {
		field := fmt.Sprintf("%s[%d].container_path", prefix, i)
		if err := SecretFilePath(f.ContainerPath, hasImage); err != nil {
			return &FieldError{Field: field, Msg: err.Error()}
		}
		if seen[f.ContainerPath] {
			return &FieldError{Field: field, Msg: fmt.Sprintf("%q is given twice", f.ContainerPath)}
		}
		seen[f.ContainerPath] = true
	}
	return nil
}
