package marathon

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/frameworktest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// TestResidentScripts runs the scripts of testdata/resident: resident apps (persistent volumes)
// driven through the leader's decisions, against a naive master (fakeMaster) that keeps
// reservations and volumes per agent as pkg/api's contract says and fails the script on any
// operation the contract refuses. The commands are TestDeployScripts' (an offer there comes
// from a1), and:
//
//	agent id host cpus mem disk   an agent registers
//	offers                        every agent offers what it has free (in id order)
//	wipe ids                      DELETE the tasks ?wipe=true (ids: tasks, or suspended instances' listed ids)
//	kill ids                      DELETE the tasks (replaced)
//	delete /id                    DELETE the app
//	agentgone id                  the master removes the agent for good: FAILURE, TASK_GONE for its tasks
//	failover                      a new leader loads instances and reservations from the records
//	                              the decisions committed (the script's store), none reconciled
//
// After each command the state shows, besides apps and instances, each reservation and what
// the master holds on each agent.
func TestResidentScripts(t *testing.T) {
	frameworktest.Scripts(t, "testdata/resident/*.txt", func(t *testing.T) func(string) string {
		w := &residentWorld{scriptWorld: &scriptWorld{t: t, st: newLeaderState(nil), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), seq: map[string]int{}},
			m: &fakeMaster{agents: map[string]*fakeAgent{}}, store: map[string][]byte{}}
		w.ended = w.m.end
		w.recorded = w.record
		return w.do
	})
}

type residentWorld struct {
	*scriptWorld
	m     *fakeMaster
	store map[string][]byte // the records committed: instances and reservations
}

// record commits a batch of records to the script's store.
func (w *residentWorld) record(c *change) {
	for _, key := range c.Deletes {
		delete(w.store, key)
	}
	for _, prefix := range c.DeletePrefixes {
		for key := range w.store {
			if strings.HasPrefix(key, prefix) {
				delete(w.store, key)
			}
		}
	}
	for key, data := range c.Puts {
		w.store[key] = data
	}
}

// failover makes a new leader: instances and reservations loaded from the records alone (apps
// and deployments as they were), every instance unreconciled, just asked about.
func (w *residentWorld) failover() {
	st, err := loadState(nil, func(prefix string, fn func(string, []byte) bool) {
		for _, key := range sortedKeys(w.store) {
			if strings.HasPrefix(key, prefix) && !fn(key, w.store[key]) {
				return
			}
		}
	})
	if err != nil {
		w.t.Fatalf("failover: %v", err)
	}
	for id, as := range w.st.apps {
		fresh, err := appStateOf(mustJSON(as.def))
		if err != nil {
			w.t.Fatal(err)
		}
		fresh.deleted = as.deleted
		st.apps[id] = fresh
	}
	st.deployments = w.st.deployments
	st.reconcileAsked = w.now
	w.st = st
}

func (w *residentWorld) do(cmd string) string {
	name, arg, _ := strings.Cut(cmd, " ")
	var out []string
	switch name {
	case "agent":
		var id, host string
		var r resources.Resources
		fmt.Sscan(arg, &id, &host, &r.CPUs, &r.Mem, &r.Disk)
		r.Ports = resources.Ranges{{Begin: 31000, End: 31010}}
		w.m.agents[id] = &fakeAgent{t: w.t, id: id, host: host, total: r, volumes: map[string]float64{}, volumeTask: map[string]string{}, tasks: map[string]fakeTask{}}
	case "offers":
		for _, id := range sortedKeys(w.m.agents) {
			out = append(out, w.offerFrom(w.m.agents[id])...)
		}
	case "wipe", "kill":
		kr := w.st.requestKills(strings.Fields(arg), name == "wipe", "marathon", w.now)
		out = append(out, w.actions(&actions{record: kr.record})...)
		for _, k := range kr.kills {
			out = append(out, "kill "+k.TaskID)
		}
	case "failover":
		w.failover()
	case "delete":
		w.st.apps[arg].deleted = true
		w.st.touch(arg)
	case "agentgone":
		a := actions{record: &change{}}
		w.st.dropReservations(arg, "its agent was removed", &a)
		out = append(out, w.actions(&a)...)
		for _, in := range w.instances() {
			if in.rec.AgentID == arg {
				o := w.st.observe(api.TaskStatus{TaskID: in.rec.ID, State: task.Gone, Reason: task.ReasonAgentRemoved, Timestamp: w.now}, w.now)
				out = append(out, "forget "+in.rec.ID)
				o.record.del(instanceKey(in.rec.ID))
				out = append(out, w.actions(&o.actions)...)
			}
		}
		delete(w.m.agents, arg)
	default:
		return joinLines(w.scriptWorld.do(cmd), w.residentState())
	}
	return joinLines(strings.Join(append(out, w.state()...), "\n"), w.residentState())
}

// joinLines joins blocks of lines, skipping empty ones.
func joinLines(blocks ...string) string {
	var out []string
	for _, b := range blocks {
		if b != "" {
			out = append(out, b)
		}
	}
	return strings.Join(out, "\n")
}

// offerFrom hands the leader one offer of the agent and applies what it accepts.
func (w *residentWorld) offerFrom(ag *fakeAgent) []string {
	w.offers++
	o := ag.offer(fmt.Sprintf("o%d", w.offers))
	noSecrets := func(App) (frameworks.Resolved, string) { return frameworks.Resolved{}, "" }
	u := w.st.placeOffer(o, w.now, noSecrets, func(appID string) string {
		w.seq[appID]++
		return fmt.Sprintf("%s.%d", strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_"), w.seq[appID])
	})
	w.st.launched(u.recs)
	w.st.offerRecorded(u)
	ops := u.operations()
	var out []string
	for _, op := range ops {
		out = append(out, ag.id+": "+ag.apply(op))
	}
	if len(ops) == 0 {
		out = append(out, ag.id+": decline")
	}
	return append(out, w.actions(&u.actions)...)
}

// residentState shows each reservation and what the master holds on each agent.
func (w *residentWorld) residentState() string {
	var out []string
	for _, id := range sortedKeys(w.st.reservations) {
		r := w.st.reservations[id]
		line := fmt.Sprintf("  reservation %s of %s on %s %s volumes %s", r.ID, r.AppID, r.AgentID, r.Resources, strings.Join(r.volumeIDs(), ","))
		if in := w.st.taskOn(r); in != nil {
			line += " task " + in.rec.ID
		} else {
			line += " suspended"
		}
		if r.Destroy {
			line += " destroy"
		}
		if !r.Confirmed {
			line += " unconfirmed"
		}
		out = append(out, line)
	}
	for _, id := range sortedKeys(w.m.agents) {
		ag := w.m.agents[id]
		var vols []string
		for _, v := range sortedKeys(ag.volumes) {
			if t := ag.volumeTask[v]; t != "" {
				v += "(" + t + ")"
			}
			vols = append(vols, v)
		}
		out = append(out, fmt.Sprintf("  master %s reserved %s volumes [%s]", id, ag.reserved, strings.Join(vols, " ")))
	}
	return strings.Join(out, "\n")
}

// fakeMaster is the master's side of reservations as pkg/api describes it, naively: per agent,
// what is reserved for the role (one role: the framework's), the volumes, the tasks and which
// part of the reservation or not each uses.
type fakeMaster struct {
	agents map[string]*fakeAgent
}

type fakeAgent struct {
	id, host   string
	total      resources.Resources
	reserved   resources.Resources // scalars, the volumes' disk included
	volumes    map[string]float64  // id → size
	volumeTask map[string]string   // volume → the task that mounts it
	tasks      map[string]fakeTask
	t          *testing.T
}

type fakeTask struct {
	fromReserved, fromUnreserved resources.Resources
	volumes                      []string
}

func (m *fakeMaster) end(taskID string) {
	for _, ag := range m.agents {
		if tk, ok := ag.tasks[taskID]; ok {
			delete(ag.tasks, taskID)
			for _, v := range tk.volumes {
				delete(ag.volumeTask, v)
			}
		}
	}
}

// usedBy sums what the tasks use of the reserved and the unreserved parts.
func (ag *fakeAgent) used() (fromR, fromU resources.Resources) {
	for _, tk := range ag.tasks {
		fromR, fromU = fromR.Add(tk.fromReserved), fromU.Add(tk.fromUnreserved)
	}
	return fromR, fromU
}

// freeReserved is the reserved part no volume holds and no task uses.
func (ag *fakeAgent) freeReserved() resources.Resources {
	fromR, _ := ag.used()
	r := ag.reserved
	for _, size := range ag.volumes {
		r.Disk -= size
	}
	r, err := r.Subtract(fromR)
	if err != nil {
		panic(err)
	}
	return r
}

// freeUnreserved is the unreserved part no task uses (with the ports).
func (ag *fakeAgent) freeUnreserved() resources.Resources {
	_, fromU := ag.used()
	u, err := ag.total.Subtract(ag.reserved)
	if err == nil {
		u, err = u.Subtract(fromU)
	}
	if err != nil {
		panic(err)
	}
	return u
}

func (ag *fakeAgent) offer(id string) api.Offer {
	o := api.Offer{ID: id, AgentID: ag.id, Hostname: ag.host, Reserved: ag.freeReserved()}
	o.Resources = ag.freeUnreserved().Add(o.Reserved)
	for _, v := range sortedKeys(ag.volumes) {
		if ag.volumeTask[v] == "" {
			o.Volumes = append(o.Volumes, api.PersistentVolume{ID: v, Size: ag.volumes[v], Role: "marathon"})
		}
	}
	return o
}

// apply applies one operation as the contract says, failing the test on one it refuses; it
// answers a line that says what was done.
func (ag *fakeAgent) apply(op api.Operation) string {
	fail := func(format string, args ...any) string {
		ag.t.Helper()
		ag.t.Fatalf("the master refuses %s on %s: %s", op.Type, ag.id, fmt.Sprintf(format, args...))
		return ""
	}
	switch op.Type {
	case api.OperationReserve:
		r := op.Reserve.Resources
		if !ag.freeUnreserved().Contains(resources.Resources{CPUs: r.CPUs, Mem: r.Mem, Disk: r.Disk}) || len(r.Ports) > 0 {
			fail("%s not in the unreserved part %s", r, ag.freeUnreserved())
		}
		ag.reserved = ag.reserved.Add(r)
		return "reserve " + r.String()
	case api.OperationUnreserve:
		r := op.Unreserve.Resources
		if !ag.freeReserved().Contains(r) {
			fail("%s not in the free reserved part %s", r, ag.freeReserved())
		}
		ag.reserved, _ = ag.reserved.Subtract(r)
		return "unreserve " + r.String()
	case api.OperationCreate:
		var ids []string
		for _, v := range op.Create.Volumes {
			if err := api.ValidateVolumeID(v.ID); err != nil {
				fail("%v", err)
			}
			if _, ok := ag.volumes[v.ID]; ok {
				fail("volume %s exists", v.ID)
			}
			if ag.freeReserved().Disk < v.Size {
				fail("volume %s of %v MiB: %v MiB of reserved disk free", v.ID, v.Size, ag.freeReserved().Disk)
			}
			ag.volumes[v.ID] = v.Size
			ids = append(ids, v.ID)
		}
		return "create " + strings.Join(ids, ",")
	case api.OperationDestroy:
		for _, v := range op.Destroy.VolumeIDs {
			if _, ok := ag.volumes[v]; !ok || ag.volumeTask[v] != "" {
				fail("volume %s not there or in use", v)
			}
			delete(ag.volumes, v)
		}
		return "destroy " + strings.Join(op.Destroy.VolumeIDs, ",")
	case api.OperationLaunch:
		var lines []string
		for _, ti := range op.Launch.TaskInfos {
			if err := api.ValidateVolumeMounts("persistent_volumes", ti.PersistentVolumes, ti.Image != ""); err != nil {
				fail("%v", err)
			}
			var vols []string
			for _, m := range ti.PersistentVolumes {
				if _, ok := ag.volumes[m.VolumeID]; !ok || ag.volumeTask[m.VolumeID] != "" {
					fail("task %s mounts %s, which is not a free volume", ti.TaskID, m.VolumeID)
				}
				vols = append(vols, m.VolumeID+":"+m.ContainerPath)
			}
			need := ti.Resources
			fr := ag.freeReserved()
			fromR := resources.Resources{CPUs: min(need.CPUs, fr.CPUs), Mem: min(need.Mem, fr.Mem), Disk: min(need.Disk, fr.Disk)}
			fromU, err := need.Subtract(fromR)
			if err != nil || !ag.freeUnreserved().Contains(fromU) {
				fail("task %s needs %s: free %s reserved, %s unreserved", ti.TaskID, need, fr, ag.freeUnreserved())
			}
			for _, m := range ti.PersistentVolumes {
				ag.volumeTask[m.VolumeID] = ti.TaskID
			}
			ag.tasks[ti.TaskID] = fakeTask{fromReserved: fromR, fromUnreserved: fromU, volumes: sortedVolumes(ti.PersistentVolumes)}
			line := "launch " + ti.TaskID
			if len(vols) > 0 {
				line += " mounting " + strings.Join(vols, ",")
			}
			lines = append(lines, line)
		}
		return strings.Join(lines, "; ")
	}
	return fail("not a reservation operation")
}

func sortedVolumes(ms []api.VolumeMount) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.VolumeID)
	}
	sort.Strings(out)
	return out
}
