package marathon

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// offerUse is what one offer is used for: the instances to record (record, recs) and then
// launch (infos), whether any app waits (how long to refuse the offer if nothing is
// launched), and the log lines to write.
type offerUse struct {
	recs    []InstanceRecord
	infos   []api.TaskInfo
	waiting bool
	// reserved are the reservations the offer makes (RESERVE and CREATE before the launch);
	// destroyed those it destroys (DESTROY and UNRESERVE first), with what it unreserves.
	reserved   []ReservationRecord
	destroyed  []ReservationRecord
	unreserves []resources.Resources
	actions
}

// operations are the offer's ACCEPT in order: what is destroyed and unreserved first, then
// the new reservations and their volumes, then every launch.
func (u *offerUse) operations() []api.Operation {
	var ops []api.Operation
	for i, r := range u.destroyed {
		if ids := r.volumeIDs(); len(ids) > 0 {
			ops = append(ops, api.Operation{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: ids}})
		}
		if !u.unreserves[i].IsEmpty() {
			ops = append(ops, api.Operation{Type: api.OperationUnreserve, Unreserve: &api.Reserve{Resources: u.unreserves[i]}})
		}
	}
	for _, r := range u.reserved {
		ops = append(ops, api.Operation{Type: api.OperationReserve, Reserve: &api.Reserve{Resources: r.Resources}})
		var vols []api.PersistentVolume
		for _, v := range r.Volumes {
			vols = append(vols, api.PersistentVolume{ID: v.PersistenceID, Size: v.Size, Labels: volumeLabels(r.AppID, r.ID, v.ContainerPath)})
		}
		ops = append(ops, api.Operation{Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: vols}})
	}
	if len(u.infos) > 0 {
		ops = append(ops, api.Operation{Type: api.OperationLaunch, Launch: &api.Launch{TaskInfos: u.infos}})
	}
	return ops
}

// placeOffer decides, without I/O, which instances of the apps that wait go into one offer:
// as many as fit it (resources, ports, constraints), each app in turn. secrets reads an app's
// secrets (the caller's lookup in the master's secret store: an app whose secret is missing
// waits 5 s, saying why in lastTaskFailure); newID names a task. The instances are added to
// the state only once recorded (launched).
func (st *leaderState) placeOffer(o api.Offer, now time.Time, secrets func(App) (frameworks.Resolved, string), newID func(appID string) string) offerUse {
	u := offerUse{actions: actions{now: now, record: &change{}}}
	pool := newOfferPool(o)
	st.destroyInOffer(o, pool, &u)
	place := Place{Hostname: o.Hostname, Attributes: o.Attributes}
	for _, appID := range sortedKeys(st.waiting) {
		as := st.apps[appID]
		if as == nil || as.deleted || as.want == 0 || now.Before(as.delayUntil) {
			continue
		}
		u.waiting = true
		st.touch(appID)
		resolved, missing := secrets(as.app)
		if missing != "" {
			// Nothing can run without its secrets: wait, and say why in lastTaskFailure.
			as.delayUntil = now.Add(5 * time.Second)
			as.lastFail = &TaskFailure{AppID: as.app.ID, Message: missing, State: string(task.Error), Timestamp: now, Version: as.configAt}
			u.log(slog.LevelWarn, "app cannot launch", "app", as.app.ID, "why", missing)
			continue
		}
		var placed []Place
		for _, in := range st.appInstances(appID) {
			placed = append(placed, Place{Hostname: in.rec.Host, Attributes: in.rec.Attributes})
		}
		launched := 0
		var why []frameworks.Mismatch
		if as.app.Resident() {
			launched, why = st.placeResident(as, o, pool, placed, now, resolved, newID, &u)
		}
		for as.want > 0 && !as.app.Resident() {
			left := pool.unreserved // the role's reserved resources are resident instances'
			var ports pickedPorts
			if ports, why = fit(as, left, o, placed); len(why) > 0 {
				break
			}
			need := resources.Resources{CPUs: as.app.CPUs, Mem: as.app.Mem, Disk: as.app.Disk, Ports: ports.ranges}
			pool.unreserved, _ = left.Subtract(need)
			rec := InstanceRecord{
				ID: newID(as.app.ID), AppID: as.app.ID, Version: as.configAt, AgentID: o.AgentID,
				Host: o.Hostname, Attributes: o.Attributes, Ports: ports.list, StagedAt: now,
			}
			u.record.put(instanceKey(rec.ID), rec)
			u.recs = append(u.recs, rec)
			ti := taskInfo(as, rec, need)
			ti.SecretEnv, ti.SecretFiles = resolved.Env, resolved.Files
			u.infos = append(u.infos, ti)
			placed = append(placed, place)
			as.want--
			launched++
		}
		if as.offers != nil {
			if launched > 0 {
				as.offers.Used(o, now)
			} else {
				as.offers.NotUsed(o, why, now)
			}
		}
	}
	return u
}

// launched adds instances, once recorded, to the state: launched by this leader, the master
// knows them.
func (st *leaderState) launched(recs []InstanceRecord) {
	for _, rec := range recs {
		st.add(&instance{rec: rec, state: task.Staging, reconciled: true})
	}
}

// fit says whether one more instance of an app fits what is left of an offer, given where its
// instances are (placed), with the host ports it would take; if not, every reason why, in
// Marathon's names and Agora's words.
func fit(as *appState, left resources.Resources, o api.Offer, placed []Place) (pickedPorts, []frameworks.Mismatch) {
	return fitNeed(as, resources.Resources{CPUs: as.app.CPUs, Mem: as.app.Mem, Disk: as.app.Disk}, left, o, placed)
}

// fitNeed is fit for an instance that needs need (cpus, mem, disk) besides its ports.
func fitNeed(as *appState, need resources.Resources, left resources.Resources, o api.Offer, placed []Place) (pickedPorts, []frameworks.Mismatch) {
	var why []frameworks.Mismatch
	place := Place{Hostname: o.Hostname, Attributes: o.Attributes}
	for _, c := range as.constraints {
		if !c.Allows(place, placed) {
			why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: c.why(place, placed)})
		}
	}
	for _, u := range as.needs.Unmet(o.Attributes) {
		why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: frameworks.UnmetDetail(as.needs, u, o.Hostname)})
	}
	a := as.app
	why = append(why, frameworks.ShortOf(need, left, o.Hostname)...)
	want := a.RequiredPorts()
	ports, ok := pickPorts(left.Ports, want)
	if !ok {
		why = append(why, frameworks.Mismatch{Reason: frameworks.InsufficientPorts, Detail: portsDetail(want, left.Ports, o.Hostname)})
	}
	return ports, why
}

// portsDetail says which host ports an instance needs that an offer lacks.
func portsDetail(want []int, free resources.Ranges, host string) string {
	var fixed []string
	for _, p := range want {
		if p != 0 {
			fixed = append(fixed, strconv.Itoa(p))
		}
	}
	offered := free.String()
	if len(free) == 0 {
		offered = "none"
	}
	if len(fixed) > 0 {
		return fmt.Sprintf("needs %d ports, fixed %s; %s offers %s", len(want), strings.Join(fixed, ","), host, offered)
	}
	return fmt.Sprintf("needs %d ports, %s offers %s", len(want), host, offered)
}

func parseConstraints(a App) []Constraint {
	var out []Constraint
	for _, raw := range a.Constraints {
		if c, err := ParseConstraint(raw); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// taskIDFor makes a task id as Marathon does: the app's path with '_' for '/', a dot, a uuid.
func taskIDFor(appID string, ids *id.Generator) string {
	u, err := ids.UUID()
	if err != nil {
		u = fmt.Sprint(time.Now().UnixNano())
	}
	return strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_") + "." + u
}

// taskInfo is the launch of one instance.
func taskInfo(as *appState, rec InstanceRecord, res resources.Resources) api.TaskInfo {
	a := as.app
	env := frameworks.PlainEnv(a.Env)
	env["MARATHON_APP_ID"] = a.ID
	env["MARATHON_APP_VERSION"] = rec.Version
	if img := a.Image(); img != "" {
		env["MARATHON_APP_DOCKER_IMAGE"] = img
	}
	ti := api.TaskInfo{
		TaskID: rec.ID, Name: a.ID, Resources: res, Image: a.Image(), Cmd: a.Cmd, Args: a.Args, Env: env,
		Labels: a.Labels, PortNames: a.PortNames(), PortProtocols: a.PortProtocols(), HealthChecks: a.HealthChecks,
		Privileged: as.needs.Privileged, User: as.needs.User, Volumes: as.needs.Volumes,
		Artifacts: a.Artifacts(),
	}
	if a.Container != nil && a.Container.Docker != nil {
		ti.ForcePull = a.Container.Docker.ForcePullImage
	}
	if ti.Image == "" && ti.Cmd == "" && len(a.Args) > 0 {
		ti.Cmd, ti.Args = shellJoin(a.Args), nil // no image: the args are the command
	}
	if g := a.TaskKillGracePeriodSeconds; g != nil {
		ti.KillGracePeriodSeconds = *g
	}
	return ti
}

// shellJoin quotes words for sh -c.
func shellJoin(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("'" + strings.ReplaceAll(w, "'", `'\''`) + "'")
	}
	return b.String()
}

// pickedPorts are the host ports chosen for an instance.
type pickedPorts struct {
	list   []int
	ranges resources.Ranges
}

// pickPorts chooses host ports from what an offer has: each wanted port that is fixed must be
// free in the offer; each 0 takes the lowest free one.
func pickPorts(free resources.Ranges, want []int) (pickedPorts, bool) {
	var out pickedPorts
	taken := map[uint64]bool{}
	inOffer := func(p uint64) bool {
		for _, r := range free {
			if p >= r.Begin && p <= r.End {
				return true
			}
		}
		return false
	}
	for _, w := range want {
		if w == 0 {
			continue
		}
		p := uint64(w)
		if !inOffer(p) || taken[p] {
			return out, false
		}
		taken[p] = true
	}
	for _, w := range want {
		p := uint64(w)
		if w == 0 {
			found := false
			for _, r := range free {
				for q := r.Begin; q <= r.End && !found; q++ {
					if !taken[q] {
						p, found = q, true
					}
				}
				if found {
					break
				}
			}
			if !found {
				return out, false
			}
			taken[p] = true
		}
		out.list = append(out.list, int(p))
		out.ranges = out.ranges.Add(resources.Ranges{{Begin: p, End: p}})
	}
	return out, true
}
