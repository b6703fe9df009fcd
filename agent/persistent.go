package agent

import (
	"errors"
	"fmt"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/volumes"
	"github.com/agora-sched/agora/pkg/api"
)

// Persistent volumes (agent/volumes keeps them): the tasks that mount them, launches that
// make them, and destroys refused while a live task mounts one.
//
// A live task (one not ended) holds each volume its TaskInfo mounts, from its launch on, in the
// agent's memory and, through its checkpointed record, across restarts: a volume serves one
// task at a time, and none is destroyed under a task. The claim and the check of a destroy are
// both made under ts.mu; the store's own lock (taken inside) comes after it.

// ErrVolumeInUse: a live task mounts the volume.
var ErrVolumeInUse = errors.New("agent: the volume is mounted by a live task")

// conflictError is a launch refused for what the agent has now (409), naming the field.
type conflictError struct{ api.FieldError }

func conflict(field, msg string) error { return &conflictError{api.FieldError{Field: field, Msg: msg}} }

// volumeUserLocked is the live task that mounts a volume, or "".
func (ts *taskSet) volumeUserLocked(id string) string {
	for _, r := range ts.tasks {
		if r.Status.State.IsTerminal() {
			continue
		}
		for _, m := range r.Info.PersistentVolumes {
			if m.VolumeID == id {
				return r.Info.TaskID
			}
		}
	}
	return ""
}

// checkVolumesLocked refuses a launch whose persistent volumes it cannot have: one missing
// without a size to make it (422), one another live task mounts, one of another size or role,
// or one being destroyed (409). One the agent could not mount at start is tried again when the
// task starts (persistentMounts), and fails it if it still cannot be.
func (ts *taskSet) checkVolumesLocked(info api.TaskInfo) error {
	for i, m := range info.PersistentVolumes {
		f := fmt.Sprintf("persistent_volumes[%d]", i)
		if ts.vols == nil {
			return &api.FieldError{Field: f, Msg: "this agent keeps no persistent volumes"}
		}
		if user := ts.volumeUserLocked(m.VolumeID); user != "" {
			return conflict(f+".volume_id", fmt.Sprintf("volume %s is mounted by task %s, which has not ended", m.VolumeID, user))
		}
		if m.Size > maxVolumeMiB {
			return &api.FieldError{Field: f + ".size", Msg: fmt.Sprintf("%g: want at most %d MiB", m.Size, maxVolumeMiB)}
		}
		v, ok := ts.vols.Get(m.VolumeID)
		switch {
		case !ok && m.Size <= 0:
			return &api.FieldError{Field: f + ".size", Msg: fmt.Sprintf("volume %s is not on this agent, and there is no size to make it with", m.VolumeID)}
		case !ok:
			continue // made when the task is started
		case v.State == volumes.Destroying:
			return conflict(f+".volume_id", fmt.Sprintf("volume %s is being destroyed", m.VolumeID))
		case m.Size > 0 && m.Size != v.Size:
			return conflict(f+".size", fmt.Sprintf("volume %s is %g MiB on this agent, not %g", m.VolumeID, v.Size, m.Size))
		case m.Role != "" && v.Role != "" && m.Role != v.Role:
			return conflict(f+".role", fmt.Sprintf("volume %s is of role %s, not %s", m.VolumeID, v.Role, m.Role))
		}
	}
	return nil
}

// persistentMounts makes the task's volumes it does not have yet and answers their mounts:
// each volume's root, given to the task's user when it is the first task to write to it. own
// lists the volumes given, for volumesGiven once the task runs.
func (ts *taskSet) persistentMounts(info api.TaskInfo) (mounts []containerd.Volume, own []string, err error) {
	for i, m := range info.PersistentVolumes {
		pv := api.PersistentVolume{ID: m.VolumeID, Size: m.Size, Role: m.Role}
		if v, ok := ts.vols.Get(m.VolumeID); ok {
			pv = v.PersistentVolume
		}
		v, _, err := ts.vols.Ensure(pv)
		if err != nil {
			return nil, nil, fmt.Errorf("persistent_volumes[%d]: %w", i, err)
		}
		give := !v.Given && !m.ReadOnly
		if give {
			own = append(own, m.VolumeID)
		}
		mounts = append(mounts, containerd.Volume{ContainerPath: m.ContainerPath, HostPath: ts.vols.Root(m.VolumeID), ReadOnly: m.ReadOnly, Own: give})
	}
	return mounts, own, nil
}

// volumesGiven records that a running task's user was given these volumes' roots.
func (ts *taskSet) volumesGiven(taskID string, ids []string) {
	for _, id := range ids {
		if err := ts.vols.Given(id); err != nil {
			ts.logger.Warn("record a volume given to a task's user", "task", taskID, "volume", id, "err", err)
		}
	}
}

// destroyVolume removes a volume unless a live task mounts it (ErrVolumeInUse); one the agent
// does not have is no error.
func (ts *taskSet) destroyVolume(id string) error {
	ts.mu.Lock()
	if user := ts.volumeUserLocked(id); user != "" {
		ts.mu.Unlock()
		return fmt.Errorf("%w: %s mounts %s", ErrVolumeInUse, user, id)
	}
	ok, err := ts.vols.BeginDestroy(id) // from here no launch takes it
	ts.mu.Unlock()
	if err != nil || !ok {
		return err
	}
	return ts.vols.Destroy(id)
}

// listVolumes is every volume, with the live task that mounts it.
func (ts *taskSet) listVolumes() []api.AgentVolume {
	out := ts.vols.List()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i := range out {
		out[i].Task = ts.volumeUserLocked(out[i].ID)
	}
	return out
}
