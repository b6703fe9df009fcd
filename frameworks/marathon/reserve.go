package marathon

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// The leader's decisions about resident instances' reservations (residency.go), without I/O,
// as the rest of decide.go and offer.go: each changes the state in memory (or, for an offer,
// says what to record and do once recorded) and leaves the records to commit in its actions.

// offerPool is what is left of one offer while it is being used: its unreserved part (with the
// ports), the part reserved for the framework's role that no volume holds, and the role's free
// volumes on the agent.
type offerPool struct {
	unreserved resources.Resources
	reserved   resources.Resources
	volumes    map[string]bool
}

func newOfferPool(o api.Offer) *offerPool {
	p := &offerPool{reserved: resources.Resources{CPUs: o.Reserved.CPUs, Mem: o.Reserved.Mem, Disk: o.Reserved.Disk}, volumes: map[string]bool{}}
	p.unreserved = o.Resources
	p.unreserved.CPUs = max(0, o.Resources.CPUs-o.Reserved.CPUs)
	p.unreserved.Mem = max(0, o.Resources.Mem-o.Reserved.Mem)
	p.unreserved.Disk = max(0, o.Resources.Disk-o.Reserved.Disk)
	for _, v := range o.Volumes {
		p.volumes[v.ID] = true
	}
	return p
}

// all is the offer's resources left, reserved and unreserved.
func (p *offerPool) all() resources.Resources { return p.unreserved.Add(p.reserved) }

// take takes a task's resources: its scalars from the reserved part first (the master counts
// reservations as sums, so any part of them serves), its ports from the unreserved part.
func (p *offerPool) take(need resources.Resources) {
	fromR := resources.Resources{CPUs: min(need.CPUs, p.reserved.CPUs), Mem: min(need.Mem, p.reserved.Mem), Disk: min(need.Disk, p.reserved.Disk)}
	p.reserved, _ = p.reserved.Subtract(fromR)
	rest := resources.Resources{CPUs: need.CPUs - fromR.CPUs, Mem: need.Mem - fromR.Mem, Disk: need.Disk - fromR.Disk, Ports: need.Ports}
	p.unreserved, _ = p.unreserved.Subtract(rest)
}

// hasVolumes says whether every volume of r is free in the offer.
func (p *offerPool) hasVolumes(r *ReservationRecord) bool {
	for _, v := range r.Volumes {
		if !p.volumes[v.PersistenceID] {
			return false
		}
	}
	return true
}

// reservationInUse says whether a live instance (a task) runs on the reservation.
func (st *leaderState) reservationInUse(r *ReservationRecord) bool {
	for _, in := range st.byApp[r.AppID] {
		if in.rec.Reservation == r.ID {
			return true
		}
	}
	return false
}

// appReservations lists an app's reservations, oldest first.
func (st *leaderState) appReservations(appID string) []*ReservationRecord {
	var out []*ReservationRecord
	for _, r := range st.reservations {
		if r.AppID == appID {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// suspended lists an app's reservations no task runs on that are kept for it (not to destroy):
// Marathon's suspended (reserved) instances, which its next instances take first.
func (st *leaderState) suspended(appID string) []*ReservationRecord {
	var out []*ReservationRecord
	for _, r := range st.appReservations(appID) {
		if !r.Destroy && !st.reservationInUse(r) {
			out = append(out, r)
		}
	}
	return out
}

// placeResident starts instances of a resident app into an offer: on its suspended
// reservations on the offer's agent whose volumes the offer lists, then — only for instances
// no suspended reservation is left for, anywhere — on a new reservation (RESERVE, CREATE) of
// the offer's unreserved part. It answers how many it started, and why the offer did not do
// for the rest.
func (st *leaderState) placeResident(as *appState, o api.Offer, pool *offerPool, placed []Place, now time.Time,
	resolved frameworks.Resolved, newID func(string) string, u *offerUse) (int, []frameworks.Mismatch) {
	a := as.app
	launched := 0
	var why []frameworks.Mismatch
	var free []*ReservationRecord
	for _, r := range st.suspended(a.ID) {
		if !u.uses(r.ID) {
			free = append(free, r)
		}
	}
	// Reservations whose task is being killed (replaced on request) are free soon: the instances
	// they are for wait for them rather than reserve anew.
	freeSoon := 0
	for _, r := range st.appReservations(a.ID) {
		if in := st.taskOn(r); in != nil && in.rec.Killing && !r.Destroy {
			freeSoon++
		}
	}
	task := resources.Resources{CPUs: a.CPUs, Mem: a.Mem, Disk: a.Disk}
	for as.want > 0 {
		// A suspended instance of this agent whose volumes the offer has: relaunch it there.
		i := -1
		for j, r := range free {
			if r.AgentID == o.AgentID && pool.hasVolumes(r) {
				i = j
				break
			}
		}
		if i >= 0 {
			r := free[i]
			ports, ok := pickPorts(pool.unreserved.Ports, a.RequiredPorts())
			if !ok {
				why = append(why, frameworks.Mismatch{Reason: frameworks.InsufficientPorts, Detail: portsDetail(a.RequiredPorts(), pool.unreserved.Ports, o.Hostname)})
				break
			}
			if short := frameworks.ShortOf(task, pool.all(), o.Hostname); len(short) > 0 {
				why = append(why, short...)
				break
			}
			free = append(free[:i], free[i+1:]...)
			need := task
			need.Ports = ports.ranges
			pool.take(need)
			for _, v := range r.Volumes {
				delete(pool.volumes, v.PersistenceID)
			}
			st.launchOn(as, r, o, ports, need, now, resolved, newID, u)
			launched++
			continue
		}
		if len(free)+freeSoon >= as.want {
			// Every instance still wanted has its reservation elsewhere, or one whose task is
			// still ending: it waits for it.
			hosts := map[string]bool{}
			for _, r := range free {
				hosts[r.Host] = true
			}
			detail := fmt.Sprintf("its instances' reservations and volumes are on %s, not %s", strings.Join(sortedKeys(hosts), ", "), o.Hostname)
			if len(free) == 0 {
				detail = "its instances' reservations are held by tasks still being killed"
			}
			why = append(why, frameworks.Mismatch{Reason: frameworks.NoCorrespondingReservationFound, Detail: detail})
			break
		}
		// A new instance: reserve what it needs, its volumes' disk included, and make them.
		rec := InstanceRecord{ID: newID(a.ID)}
		r := newReservation(a, rec.ID, o, now)
		ports, w := fitNeed(as, r.Resources, pool.unreserved, o, placed)
		if len(w) > 0 {
			why = append(why, w...)
			break
		}
		pool.unreserved, _ = pool.unreserved.Subtract(r.Resources.Add(resources.Resources{Ports: ports.ranges}))
		u.reserved = append(u.reserved, r)
		u.record.put(reservationKey(r.ID), r)
		need := task
		need.Ports = ports.ranges
		st.launchOnWithID(as, &r, rec.ID, o, ports, need, now, resolved, u)
		placed = append(placed, Place{Hostname: o.Hostname, Attributes: o.Attributes})
		u.log(slog.LevelInfo, "reserving resources and making volumes for a new resident instance", "app", a.ID, "instance", r.ID,
			"agent", o.AgentID, "host", o.Hostname, "resources", r.Resources.String(), "volumes", strings.Join(r.volumeIDs(), ","))
		launched++
	}
	return launched, why
}

// uses says whether the offer already uses the reservation.
func (u *offerUse) uses(id string) bool {
	for _, rec := range u.recs {
		if rec.Reservation == id {
			return true
		}
	}
	return false
}

// launchOn launches a task of a new instance of the app on reservation r (suspended).
func (st *leaderState) launchOn(as *appState, r *ReservationRecord, o api.Offer, ports pickedPorts, need resources.Resources, now time.Time,
	resolved frameworks.Resolved, newID func(string) string, u *offerUse) {
	st.launchOnWithID(as, r, newID(as.app.ID), o, ports, need, now, resolved, u)
	u.log(slog.LevelInfo, "relaunching a resident instance on its reservation", "app", as.app.ID, "instance", r.ID, "agent", r.AgentID,
		"volumes", strings.Join(r.volumeIDs(), ","))
}

func (st *leaderState) launchOnWithID(as *appState, r *ReservationRecord, taskID string, o api.Offer, ports pickedPorts, need resources.Resources, now time.Time,
	resolved frameworks.Resolved, u *offerUse) {
	rec := InstanceRecord{
		ID: taskID, AppID: as.app.ID, Version: as.configAt, AgentID: o.AgentID, Host: o.Hostname, Attributes: o.Attributes,
		Ports: ports.list, StagedAt: now, Reservation: r.ID,
	}
	u.record.put(instanceKey(rec.ID), rec)
	u.recs = append(u.recs, rec)
	ti := taskInfo(as, rec, need)
	ti.SecretEnv, ti.SecretFiles = resolved.Env, resolved.Files
	ti.PersistentVolumes = r.mounts()
	u.infos = append(u.infos, ti)
	as.want--
}

// destroyInOffer destroys, in an offer of their agent, the reservations to destroy (wiped, or
// of a deleted app) that no task uses: DESTROY their volumes and UNRESERVE what they hold, the
// records deleted first. One whose volumes the offer lacks waits for an offer that has them —
// unless it was never confirmed (no task of it ever ran): then the agent may never have made
// them, and the record goes (what the offer shows reserved is not known to be its).
func (st *leaderState) destroyInOffer(o api.Offer, pool *offerPool, u *offerUse) {
	for _, id := range sortedKeys(st.reservations) {
		r := st.reservations[id]
		if !r.Destroy || r.AgentID != o.AgentID || st.reservationInUse(r) {
			continue
		}
		if !pool.hasVolumes(r) {
			if !r.Confirmed && !anyVolume(pool, r) {
				u.record.del(reservationKey(r.ID))
				gone := *r
				gone.Volumes = nil
				u.destroyed = append(u.destroyed, gone)
				u.unreserves = append(u.unreserves, resources.Resources{})
				u.log(slog.LevelInfo, "forgetting a reservation its agent never made", "app", r.AppID, "instance", r.ID, "agent", r.AgentID)
			}
			continue
		}
		for _, v := range r.Volumes {
			delete(pool.volumes, v.PersistenceID)
			pool.reserved.Disk += v.Size // a destroyed volume's disk is the role's again
		}
		unreserve := resources.Resources{CPUs: min(r.Resources.CPUs, pool.reserved.CPUs), Mem: min(r.Resources.Mem, pool.reserved.Mem), Disk: min(r.Resources.Disk, pool.reserved.Disk)}
		pool.reserved, _ = pool.reserved.Subtract(unreserve)
		u.record.del(reservationKey(r.ID))
		u.destroyed = append(u.destroyed, *r)
		u.unreserves = append(u.unreserves, unreserve)
		u.log(slog.LevelInfo, "destroying a resident instance's volumes and reservation", "app", r.AppID, "instance", r.ID, "agent", r.AgentID,
			"volumes", strings.Join(r.volumeIDs(), ","), "unreserved", unreserve.String())
	}
}

func anyVolume(p *offerPool, r *ReservationRecord) bool {
	for _, v := range r.Volumes {
		if p.volumes[v.PersistenceID] {
			return true
		}
	}
	return false
}

// offerRecorded takes what an offer did to reservations, once recorded, into the state.
func (st *leaderState) offerRecorded(u offerUse) {
	for _, r := range u.reserved {
		st.reservations[r.ID] = &r
	}
	for _, r := range u.destroyed {
		delete(st.reservations, r.ID)
	}
}

// taskEnded takes the end of a resident instance's task: its reservation is suspended (kept for
// its next task), or, when its agent was removed for good, forgotten (its volumes are gone with
// it); a task that never ran on a reservation never confirmed leaves it to be destroyed, and
// the instance starts afresh.
func (st *leaderState) taskEnded(in *instance, ts api.TaskStatus, a *actions) {
	r := st.reservations[in.rec.Reservation]
	if r == nil {
		return
	}
	r.LastTaskID, r.LastState = in.rec.ID, string(ts.State)
	switch {
	case ts.Reason == task.ReasonAgentRemoved:
		st.dropReservations(r.AgentID, "its agent was removed", a)
		return
	case !r.Confirmed && in.startedAt == nil && !r.Destroy:
		r.Destroy = true
		a.log(slog.LevelWarn, "a resident instance's first task never ran; destroying what it reserved, a new instance starts afresh",
			"app", r.AppID, "instance", r.ID, "agent", r.AgentID, "state", ts.State, "message", ts.Message)
	}
	a.record.put(reservationKey(r.ID), r)
}

// confirmReservation records that a task of the instance's reservation ran: the agent has its
// volumes.
func (st *leaderState) confirmReservation(in *instance, a *actions) {
	r := st.reservations[in.rec.Reservation]
	if r == nil || r.Confirmed {
		return
	}
	r.Confirmed = true
	a.record.put(reservationKey(r.ID), r)
}

// dropReservations forgets every reservation on an agent removed for good: its volumes are gone
// with it. Their apps start fresh instances elsewhere.
func (st *leaderState) dropReservations(agentID, why string, a *actions) {
	for _, id := range sortedKeys(st.reservations) {
		r := st.reservations[id]
		if r.AgentID != agentID {
			continue
		}
		delete(st.reservations, id)
		a.record.del(reservationKey(id))
		st.touch(r.AppID)
		a.log(slog.LevelWarn, "a resident instance's volumes are gone: "+why+"; a new instance starts elsewhere",
			"app", r.AppID, "instance", r.ID, "agent", r.AgentID, "host", r.Host, "volumes", strings.Join(r.volumeIDs(), ","))
		a.publish(EventInstanceChanged, map[string]any{
			"instanceId": r.ID, "condition": "Gone", "runSpecId": r.AppID, "agentId": r.AgentID, "host": r.Host,
			"runSpecVersion": "", "message": "the agent was removed for good: the instance's persistent volumes are gone",
		})
	}
}

// wipeApp marks every reservation of an app (deleted) to be destroyed.
func (st *leaderState) wipeApp(appID string, a *actions) {
	for _, r := range st.appReservations(appID) {
		if !r.Destroy {
			r.Destroy = true
			a.record.put(reservationKey(r.ID), r)
		}
	}
}

// destroying says whether a reservation waits to be destroyed (offers are wanted for it).
func (st *leaderState) destroying() bool {
	for _, r := range st.reservations {
		if r.Destroy {
			return true
		}
	}
	return false
}
