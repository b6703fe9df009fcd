// Package reservation keeps what is reserved on each agent in the replicated store: the
// resources reserved for each role (Mesos's dynamic reservations) and the persistent volumes
// made of them. The leader's scheduler checks a framework's RESERVE, UNRESERVE, CREATE and
// DESTROY operations against its offers, and this package's applier checks them again against
// the record as it is when the command commits, so that two accepts racing for one agent's
// reservation can never both be applied past what it holds. A destroyed volume stays listed as
// destroying until its agent says it removed it: the leader tells the agent again (at each
// registration) until then. An agent removed for good takes its reservations and volumes with
// it (forget).
package reservation

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/raft"
)

// Namespace is the replicated store's namespace of reservations: one key per agent id.
const Namespace = "reservations"

// Apply is the data of a reservation.apply command: reservation operations of one framework
// (of Role, registered by Principal) on one agent, applied in order, all or none.
type Apply struct {
	AgentID    string          `json:"agent_id"`
	Hostname   string          `json:"hostname,omitempty"`
	Role       string          `json:"role"`
	Principal  string          `json:"principal,omitempty"`
	Operations []api.Operation `json:"operations"`
}

// Destroyed is the data of a reservation.destroyed command: the agent removed the volume.
type Destroyed struct {
	AgentID  string `json:"agent_id"`
	VolumeID string `json:"volume_id"`
}

// Applier applies the reservation commands.
//
//	reservation.apply:     the operations of an Apply, checked against the agent's record;
//	                       answers the new api.AgentReservations (or the first error, changing
//	                       nothing)
//	reservation.destroyed: drop a volume from the agent's destroying list
//	reservation.forget:    forget the agent whose id is the data (it was removed for good)
func Applier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "reservation.apply":
			var in Apply
			if err := json.Unmarshal(cmd.Data, &in); err != nil {
				return nil, fmt.Errorf("reservation: apply: %w", err)
			}
			rec, err := get(tx, in.AgentID)
			if err != nil {
				return nil, err
			}
			if in.Hostname != "" {
				rec.Hostname = in.Hostname
			}
			if err := Operate(&rec, in, tx.Time()); err != nil {
				return nil, err
			}
			return rec, put(tx, rec)
		case "reservation.destroyed":
			var in Destroyed
			if err := json.Unmarshal(cmd.Data, &in); err != nil {
				return nil, fmt.Errorf("reservation: destroyed: %w", err)
			}
			rec, err := get(tx, in.AgentID)
			if err != nil {
				return nil, err
			}
			rec.Destroying = slices.DeleteFunc(rec.Destroying, func(v api.PersistentVolume) bool { return v.ID == in.VolumeID })
			return rec, put(tx, rec)
		case "reservation.forget":
			tx.Delete(string(cmd.Data))
			return nil, nil
		}
		return nil, fmt.Errorf("reservation: unknown command %q", cmd.Type)
	})
}

func get(tx *raft.Txn, agentID string) (api.AgentReservations, error) {
	rec := api.AgentReservations{AgentID: agentID}
	if data, ok := tx.Get(agentID); ok {
		if err := json.Unmarshal(data, &rec); err != nil {
			return rec, fmt.Errorf("reservation: %s: %w", agentID, err)
		}
	}
	return rec, nil
}

// put stores the record, or deletes it when nothing is left in it.
func put(tx *raft.Txn, rec api.AgentReservations) error {
	if len(rec.Reserved) == 0 && len(rec.Volumes) == 0 && len(rec.Destroying) == 0 {
		tx.Delete(rec.AgentID)
		return nil
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tx.Put(rec.AgentID, data)
	return nil
}

// Error is an operation the record cannot take; Field names it within the accept.
type Error = api.FieldError

// Operate applies reservation operations to an agent's record in order, all or none: the
// checks of Mesos that need only the record (the scheduler has checked them against the offers
// first). Operations of other types are skipped.
func Operate(rec *api.AgentReservations, in Apply, now time.Time) error {
	if err := ValidRole(in.Role); err != nil {
		return &Error{Field: "role", Msg: err.Error()}
	}
	work := Clone(*rec)
	if work.Reserved == nil {
		work.Reserved = map[string]resources.Resources{}
	}
	for i, op := range in.Operations {
		field := fmt.Sprintf("accept.operations[%d]", i)
		r, err := Body(op, field)
		if err != nil {
			return err
		}
		held := work.Reserved[in.Role]
		switch op.Type {
		case api.OperationReserve:
			work.Reserved[in.Role] = held.Add(r)
		case api.OperationUnreserve:
			free, err := held.Subtract(resources.Resources{Disk: VolumesDisk(work, in.Role)})
			if err == nil && !free.Contains(r) {
				err = resources.ErrInsufficient
			}
			if err != nil {
				return &Error{Field: field + ".unreserve.resources", Msg: fmt.Sprintf("%s is more than role %s has reserved on agent %s outside its volumes (%s)", r, in.Role, rec.AgentID, free)}
			}
			if left, _ := held.Subtract(r); left.IsEmpty() {
				delete(work.Reserved, in.Role)
			} else {
				work.Reserved[in.Role] = left
			}
		case api.OperationCreate:
			for j, v := range op.Create.Volumes {
				vf := fmt.Sprintf("%s.create.volumes[%d]", field, j)
				if _, ok := Find(work, v.ID); ok || slices.ContainsFunc(work.Destroying, func(d api.PersistentVolume) bool { return d.ID == v.ID }) {
					return &Error{Field: vf + ".id", Msg: fmt.Sprintf("agent %s has a volume %s already", rec.AgentID, v.ID)}
				}
				if free := work.Reserved[in.Role].Disk - VolumesDisk(work, in.Role); v.Size > free+1e-9 {
					return &Error{Field: vf + ".size", Msg: fmt.Sprintf("%v MiB is more than role %s's reserved disk on agent %s outside its volumes (%v MiB): RESERVE it first", v.Size, in.Role, rec.AgentID, free)}
				}
				v.Role, v.Principal, v.CreatedAt = in.Role, in.Principal, now
				work.Volumes = append(work.Volumes, v)
			}
		case api.OperationDestroy:
			for j, id := range op.Destroy.VolumeIDs {
				v, ok := Find(work, id)
				if !ok || v.Role != in.Role {
					return &Error{Field: fmt.Sprintf("%s.destroy.volume_ids[%d]", field, j), Msg: fmt.Sprintf("role %s has no volume %s on agent %s", in.Role, id, rec.AgentID)}
				}
				work.Volumes = slices.DeleteFunc(work.Volumes, func(x api.PersistentVolume) bool { return x.ID == id })
				work.Destroying = append(work.Destroying, v)
			}
		}
	}
	*rec = work
	return nil
}

// Body checks what a reservation operation says by itself, before it is held against offers
// (the scheduler) or against an agent's record (Operate): a RESERVE's or UNRESERVE's resources
// are scalars, some of them; a CREATE names volumes of valid ids and sizes; a DESTROY names
// volumes. field is the operation's place ("accept.operations[i]"); it answers the resources of
// a RESERVE or UNRESERVE.
func Body(op api.Operation, field string) (resources.Resources, error) {
	switch op.Type {
	case api.OperationReserve, api.OperationUnreserve:
		b, name := op.Reserve, "reserve"
		if op.Type == api.OperationUnreserve {
			b, name = op.Unreserve, "unreserve"
		}
		rf := field + "." + name + ".resources"
		switch {
		case b == nil:
			return resources.Resources{}, &Error{Field: field + "." + name, Msg: fmt.Sprintf("is required for a %s operation", op.Type)}
		case len(b.Resources.Ports) > 0:
			return resources.Resources{}, &Error{Field: rf, Msg: "ports are not reserved, only cpus, mem and disk"}
		case b.Resources.Validate() != nil:
			return resources.Resources{}, &Error{Field: rf, Msg: b.Resources.Validate().Error()}
		case b.Resources.IsEmpty():
			return resources.Resources{}, &Error{Field: rf, Msg: "names nothing"}
		}
		return b.Resources, nil
	case api.OperationCreate:
		if op.Create == nil || len(op.Create.Volumes) == 0 {
			return resources.Resources{}, &Error{Field: field + ".create.volumes", Msg: "names no volume"}
		}
		for j, v := range op.Create.Volumes {
			vf := fmt.Sprintf("%s.create.volumes[%d]", field, j)
			if err := api.ValidateVolumeID(v.ID); err != nil {
				return resources.Resources{}, &Error{Field: vf + ".id", Msg: err.Error()}
			}
			if !(v.Size > 0) || v.Size > 1<<40 {
				return resources.Resources{}, &Error{Field: vf + ".size", Msg: fmt.Sprintf("must be more than 0 MiB, got %v", v.Size)}
			}
		}
	case api.OperationDestroy:
		if op.Destroy == nil || len(op.Destroy.VolumeIDs) == 0 {
			return resources.Resources{}, &Error{Field: field + ".destroy.volume_ids", Msg: "names no volume"}
		}
	}
	return resources.Resources{}, nil
}

// ValidRole: a reservation's role is a role name and not the default role "*" (as Mesos).
func ValidRole(r string) error {
	switch r {
	case "", api.DefaultRole:
		return fmt.Errorf("a framework of role %q cannot reserve: reservations are for a named role (as in Mesos)", r)
	}
	return api.ValidateRole(r)
}

// VolumesDisk is the disk of the role's volumes on the agent.
func VolumesDisk(rec api.AgentReservations, role string) float64 {
	var d float64
	for _, v := range rec.Volumes {
		if v.Role == role {
			d += v.Size
		}
	}
	return d
}

// Find is the agent's volume of that id.
func Find(rec api.AgentReservations, id string) (api.PersistentVolume, bool) {
	i := slices.IndexFunc(rec.Volumes, func(v api.PersistentVolume) bool { return v.ID == id })
	if i < 0 {
		return api.PersistentVolume{}, false
	}
	return rec.Volumes[i], true
}

// Clone is a deep copy of a record.
func Clone(rec api.AgentReservations) api.AgentReservations {
	out := rec
	if rec.Reserved != nil {
		out.Reserved = make(map[string]resources.Resources, len(rec.Reserved))
		for k, v := range rec.Reserved {
			out.Reserved[k] = v
		}
	}
	out.Volumes = slices.Clone(rec.Volumes)
	out.Destroying = slices.Clone(rec.Destroying)
	return out
}

// List reads every agent's reservations from a view of the store.
func List(v *raft.View) ([]api.AgentReservations, error) {
	return raft.ListJSON[api.AgentReservations](v, Namespace, "")
}
