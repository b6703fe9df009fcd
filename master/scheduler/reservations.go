package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/agora-sched/agora/master/reservation"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
	"github.com/agora-sched/agora/raft"
)

// Reservations and persistent volumes (Mesos's RESERVE, UNRESERVE, CREATE and DESTROY offer
// operations). The record of each agent's reservations is master/reservation's, in the
// replicated store; the term keeps a copy (schedTerm.reservations) and the allocator the sums
// it offers by. An accept with reservation operations is checked whole against its offers
// (acceptPlan), its operations are committed through raft as one command, which checks them
// again against the record, and only then do they change the allocator and do the accept's
// launches go to the agent: nothing reserved, created or destroyed is ever acted on before it
// is committed. A committed DESTROY is carried out by the agent; the record lists the volume
// as destroying until the agent confirms, and the leader asks again at each registration.
// An agent removed for good (superseded by a new agent at its address, or past the removal
// timeout) takes its reservations and volumes out of the record; the agent never removes a
// volume by itself, so what is left on its disk stays there for an operator.

// isReservation says whether an operation is one of the reservation operations.
func isReservation(t api.OperationType) bool {
	switch t {
	case api.OperationReserve, api.OperationUnreserve, api.OperationCreate, api.OperationDestroy:
		return true
	}
	return false
}

// acceptPlan follows what is left of an accept's offers as its operations take their part.
type acceptPlan struct {
	role     string                          // the framework's: its volumes'
	whole    resources.Resources             // the offers'
	pool     resources.Resources             // what is left of the offers
	reserved resources.Resources             // of pool, reserved for the framework's role (no volume's)
	vols     map[string]api.PersistentVolume // the role's volumes free to mount
	gone     map[string]api.PersistentVolume // destroyed by the accept, by id
}

func newAcceptPlan(offers []*offerEntry, role string) *acceptPlan {
	p := &acceptPlan{role: role, vols: map[string]api.PersistentVolume{}, gone: map[string]api.PersistentVolume{}}
	for _, o := range offers {
		p.pool = p.pool.Add(o.offer.Resources)
		p.reserved = p.reserved.Add(o.offer.Reserved)
		for _, v := range o.offer.Volumes {
			p.vols[v.ID] = v
		}
	}
	p.whole = p.pool
	return p
}

func (p *acceptPlan) clone() *acceptPlan {
	c := *p
	c.vols, c.gone = maps.Clone(p.vols), maps.Clone(p.gone)
	return &c
}

// checkReservations checks the accept's operations in order against a copy of the plan: each
// reservation operation must fit what the offers, and the operations before it, leave. The
// error names the first that does not.
func (p *acceptPlan) checkReservations(role string, ops []api.Operation) error {
	if err := reservation.ValidRole(role); err != nil {
		return &api.FieldError{Field: "accept.operations", Msg: err.Error()}
	}
	c := p.clone()
	for i, op := range ops {
		field := fmt.Sprintf("accept.operations[%d]", i)
		if op.Type == api.OperationLaunch {
			for _, ti := range op.Launch.TaskInfos {
				if c.pool.Contains(ti.Resources) {
					c.use(ti.Resources)
				}
				for _, m := range ti.PersistentVolumes {
					delete(c.vols, m.VolumeID)
				}
			}
			continue
		}
		r, err := reservation.Body(op, field)
		if err != nil {
			return err
		}
		switch op.Type {
		case api.OperationReserve, api.OperationUnreserve:
			from, what, name := c.unreserved(), "the offers' unreserved part", "reserve"
			if op.Type == api.OperationUnreserve {
				from, what, name = c.reserved, "the offers' reserved part outside volumes", "unreserve"
			}
			if !from.Contains(r) {
				return &api.FieldError{Field: field + "." + name + ".resources", Msg: fmt.Sprintf("%s is more than %s (%s)", r, what, from)}
			}
		case api.OperationCreate:
			need := 0.0
			for j, v := range op.Create.Volumes {
				if _, ok := c.vols[v.ID]; ok {
					return &api.FieldError{Field: fmt.Sprintf("%s.create.volumes[%d].id", field, j), Msg: fmt.Sprintf("a volume %s exists already", v.ID)}
				}
				need += v.Size
			}
			if need > c.reserved.Disk+1e-9 {
				return &api.FieldError{Field: field + ".create.volumes", Msg: fmt.Sprintf("%v MiB of volumes is more than the offers' reserved disk outside volumes (%v MiB): RESERVE it first", need, c.reserved.Disk)}
			}
		case api.OperationDestroy:
			for j, id := range op.Destroy.VolumeIDs {
				if _, ok := c.vols[id]; !ok {
					return &api.FieldError{Field: fmt.Sprintf("%s.destroy.volume_ids[%d]", field, j), Msg: fmt.Sprintf("volume %s is not in the offers (not this role's on this agent, or a task uses it)", id)}
				}
			}
		}
		c.apply(op)
	}
	return nil
}

// unreserved is the part of the pool that is not reserved.
func (p *acceptPlan) unreserved() resources.Resources {
	return resources.Resources{CPUs: max(0, p.pool.CPUs-p.reserved.CPUs), Mem: max(0, p.pool.Mem-p.reserved.Mem), Disk: max(0, p.pool.Disk-p.reserved.Disk)}
}

// apply carries a checked reservation operation out on the plan.
func (p *acceptPlan) apply(op api.Operation) {
	switch op.Type {
	case api.OperationReserve:
		p.reserved = p.reserved.Add(resources.Resources{CPUs: op.Reserve.Resources.CPUs, Mem: op.Reserve.Resources.Mem, Disk: op.Reserve.Resources.Disk})
	case api.OperationUnreserve:
		p.reserved, _ = p.reserved.Subtract(op.Unreserve.Resources)
	case api.OperationCreate:
		for _, v := range op.Create.Volumes {
			p.reserved.Disk = max(0, p.reserved.Disk-v.Size)
			p.pool.Disk = max(0, p.pool.Disk-v.Size)
			v.Role = p.role
			p.vols[v.ID] = v
		}
	case api.OperationDestroy:
		for _, id := range op.Destroy.VolumeIDs {
			v := p.vols[id]
			delete(p.vols, id)
			p.pool.Disk += v.Size
			p.reserved.Disk += v.Size
			p.gone[id] = v
		}
	}
}

// use takes a launch's resources from the pool, from its reserved part first.
func (p *acceptPlan) use(r resources.Resources) {
	p.pool, _ = p.pool.Subtract(r)
	p.reserved = resources.Resources{CPUs: max(0, p.reserved.CPUs-r.CPUs), Mem: max(0, p.reserved.Mem-r.Mem), Disk: max(0, p.reserved.Disk-r.Disk)}
}

// mount checks a launch's persistent volumes against the plan's and takes them: each must be a
// volume of the offers (or made by the accept) that nothing else mounts. It answers the mounts
// with each volume's size and role, for the agent.
func (p *acceptPlan) mount(ti api.TaskInfo) ([]api.VolumeMount, error) {
	if len(ti.PersistentVolumes) == 0 {
		return nil, nil
	}
	if err := api.ValidateVolumeMounts("persistent_volumes", ti.PersistentVolumes, ti.Image != ""); err != nil {
		return nil, err
	}
	out := make([]api.VolumeMount, len(ti.PersistentVolumes))
	for i, m := range ti.PersistentVolumes {
		v, ok := p.vols[m.VolumeID]
		if !ok {
			return nil, &api.FieldError{Field: fmt.Sprintf("persistent_volumes[%d].volume_id", i), Msg: fmt.Sprintf("volume %s is not in the offers (not this role's on this agent, or a task uses it)", m.VolumeID)}
		}
		m.Size, m.Role = v.Size, v.Role
		out[i] = m
	}
	for _, m := range out {
		delete(p.vols, m.VolumeID)
	}
	return out, nil
}

// commitReservationsLocked commits an accept's reservation operations, then carries them out
// in the allocator, sends the accept's launches and gives back what is left. If they do not
// commit, the launches end as TASK_ERROR and the offers go back whole.
func (s *Scheduler) commitReservationsLocked(t *schedTerm, fw *fwEntry, ag *agentEntry, a *api.Accept, p *acceptPlan, launches []*taskEntry, now time.Time) {
	in := reservation.Apply{AgentID: ag.info.ID, Hostname: ag.info.Hostname, Role: fw.info.Role, Principal: fw.info.Principal}
	for _, op := range a.Operations {
		if isReservation(op.Type) {
			in.Operations = append(in.Operations, op)
		}
	}
	data, _ := json.Marshal(in)
	fwID, agentID, refuse := fw.info.ID, ag.info.ID, refuseTime(a.Filters)
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := s.store.Apply(ctx, raft.Command{Namespace: reservation.Namespace, Type: "reservation.apply", Data: data})
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.term != t {
			return // the next leader starts from what committed
		}
		now := s.cfg.Clock.Now()
		if err != nil {
			s.logger.Warn("reservation operations not committed", "framework", fwID, "agent", agentID, "err", err)
			whole := p.whole // what the framework holds of the offers: the launches' part comes back as they end
			for _, e := range launches {
				whole, _ = whole.Subtract(e.info.Resources)
				if t.tasks[e.info.TaskID] == e && e.status.State == task.Staging {
					s.setStatusLocked(t, e, masterStatus(e, task.Error, task.ReasonTaskInvalid, "the accept's reservation operations were not committed: "+err.Error(), now), true, now)
				}
			}
			if t.frameworks[fwID] != nil && t.agents[agentID] != nil {
				if err := t.alloc.Recover(fwID, agentID, whole, 0, now); err != nil {
					s.logger.Error("reservation: allocator", "agent", agentID, "err", err)
				}
			}
			s.poke()
			return
		}
		rec, _ := res.Value.(api.AgentReservations)
		s.setReservationsLocked(t, rec)
		age := t.agents[agentID]
		if age == nil || !age.inAlloc {
			return // removed meanwhile: its tasks ended with it
		}
		for _, op := range in.Operations {
			s.allocReservationLocked(t, fwID, agentID, in.Role, op, p.gone, now)
		}
		mounted := map[string]bool{}
		for _, e := range launches {
			for _, m := range e.info.PersistentVolumes {
				mounted[m.VolumeID] = true
			}
			if t.tasks[e.info.TaskID] == e && e.status.State == task.Staging {
				s.launchLocked(t, age.info, e)
			}
		}
		for _, op := range in.Operations {
			if op.Type == api.OperationCreate {
				for _, v := range op.Create.Volumes {
					if !mounted[v.ID] {
						v.Role = in.Role
						s.createOnAgentLocked(t, age.info, v)
					}
				}
			}
		}
		for _, v := range p.gone {
			s.destroyOnAgentLocked(t, age.info, v)
		}
		if t.frameworks[fwID] != nil {
			s.returnRestLocked(t, t.frameworks[fwID], agentID, p.pool, refuse, now)
		}
	})
}

// allocReservationLocked carries a committed reservation operation out in the allocator.
func (s *Scheduler) allocReservationLocked(t *schedTerm, fwID, agentID, role string, op api.Operation, gone map[string]api.PersistentVolume, now time.Time) {
	var err error
	switch op.Type {
	case api.OperationReserve:
		err = t.alloc.Reserve(agentID, role, op.Reserve.Resources)
	case api.OperationUnreserve:
		err = t.alloc.Unreserve(agentID, role, op.Unreserve.Resources)
	case api.OperationCreate:
		for _, v := range op.Create.Volumes {
			if err = t.alloc.Recover(fwID, agentID, resources.Resources{Disk: v.Size}, 0, now); err == nil {
				err = t.alloc.AddVolume(agentID, role, v.Size)
			}
		}
	case api.OperationDestroy:
		for _, id := range op.Destroy.VolumeIDs {
			v := gone[id]
			if err = t.alloc.RemoveVolume(agentID, role, v.Size); err == nil {
				err = t.alloc.Allocate(fwID, agentID, resources.Resources{Disk: v.Size})
			}
		}
	}
	if err != nil {
		s.logger.Error("reservation: allocator", "agent", agentID, "op", op.Type, "err", err)
	}
}

// setReservationsLocked keeps the term's copy of an agent's record.
func (s *Scheduler) setReservationsLocked(t *schedTerm, rec api.AgentReservations) {
	if rec.AgentID == "" {
		return
	}
	if len(rec.Reserved) == 0 && len(rec.Volumes) == 0 && len(rec.Destroying) == 0 {
		delete(t.reservations, rec.AgentID)
		return
	}
	t.reservations[rec.AgentID] = &rec
}

// reserveInAllocLocked gives the allocator an agent's reservations as it adds the agent, and
// asks the agent again to remove the volumes destroyed that it has not confirmed.
func (s *Scheduler) reserveInAllocLocked(t *schedTerm, ag api.Agent) {
	rec := t.reservations[ag.ID]
	if rec == nil {
		return
	}
	for role, r := range rec.Reserved {
		if err := t.alloc.Reserve(ag.ID, role, r); err != nil {
			s.logger.Error("reservations: allocator", "agent", ag.ID, "err", err)
		}
	}
	for _, v := range rec.Volumes {
		if err := t.alloc.AddVolume(ag.ID, v.Role, v.Size); err != nil {
			s.logger.Error("reservations: allocator", "agent", ag.ID, "err", err)
		}
	}
	for _, v := range rec.Destroying {
		s.destroyOnAgentLocked(t, ag, v)
	}
}

// forgetReservationsLocked drops a removed agent's reservations and volumes from the record.
func (s *Scheduler) forgetReservationsLocked(t *schedTerm, agentID string) {
	if rec := t.reservations[agentID]; rec != nil {
		s.logger.Warn("agent removed for good: its reservations and persistent volumes are forgotten (what is left on its disk stays there)", "agent", agentID, "volumes", len(rec.Volumes))
		delete(t.reservations, agentID)
		s.proposeLocked(t, raft.Command{Namespace: reservation.Namespace, Type: "reservation.forget", Data: []byte(agentID)})
	}
}

// createOnAgentLocked tells the agent to make a volume that no launch mounts yet (a launch that
// mounts one makes it on the agent if it is missing, so this is not retried).
func (s *Scheduler) createOnAgentLocked(t *schedTerm, ag api.Agent, v api.PersistentVolume) {
	t.goLocked(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.cfg.Agents.CreateVolume(ctx, ag, v); err != nil {
			s.logger.Warn("persistent volume not made on its agent yet (its first task will make it)", "agent", ag.ID, "volume", v.ID, "err", err)
		}
	})
}

// destroyOnAgentLocked tells the agent to remove a destroyed volume, and commits that it did.
func (s *Scheduler) destroyOnAgentLocked(t *schedTerm, ag api.Agent, v api.PersistentVolume) {
	t.goLocked(func(ctx context.Context) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.cfg.Agents.DestroyVolume(cctx, ag, v.ID)
		cancel()
		if err != nil {
			s.logger.Warn("destroyed volume not removed by its agent yet; asked again when it registers", "agent", ag.ID, "volume", v.ID, "err", err)
			return
		}
		data, _ := json.Marshal(reservation.Destroyed{AgentID: ag.ID, VolumeID: v.ID})
		cctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		res, err := s.store.Apply(cctx, raft.Command{Namespace: reservation.Namespace, Type: "reservation.destroyed", Data: data})
		cancel()
		if err != nil {
			s.logger.Warn("volume removal not committed; asked again", "agent", ag.ID, "volume", v.ID, "err", err)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.term == t && t.reservations[ag.ID] != nil {
			rec, _ := res.Value.(api.AgentReservations)
			s.setReservationsLocked(t, rec)
		}
	})
}

// freeVolumesLocked are the role's volumes on the agent that no live task mounts and no other
// outstanding offer holds; they go into the offer offerID.
func (s *Scheduler) freeVolumesLocked(t *schedTerm, agentID, role, offerID string) []api.PersistentVolume {
	rec := t.reservations[agentID]
	if rec == nil {
		return nil
	}
	var out []api.PersistentVolume
	for _, v := range rec.Volumes {
		if v.Role != role || s.volumeBusyLocked(t, agentID, v.ID) {
			continue
		}
		key := agentID + "/" + v.ID
		if oid, ok := t.volOffer[key]; ok && t.offers[oid] != nil {
			continue
		}
		t.volOffer[key] = offerID
		out = append(out, v)
	}
	return out
}

// volumeBusyLocked says whether a live task on the agent mounts the volume.
func (s *Scheduler) volumeBusyLocked(t *schedTerm, agentID, volumeID string) bool {
	for _, e := range t.byAgent[agentID] {
		if e.status.State.IsTerminal() {
			continue
		}
		for _, m := range e.info.PersistentVolumes {
			if m.VolumeID == volumeID {
				return true
			}
		}
	}
	return false
}

// Reservations lists every agent's reservations and volumes as the leader has them.
func (s *Scheduler) Reservations() ([]api.AgentReservations, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	out := make([]api.AgentReservations, 0, len(t.reservations))
	for _, rec := range t.reservations {
		out = append(out, reservation.Clone(*rec))
	}
	return out, nil
}
