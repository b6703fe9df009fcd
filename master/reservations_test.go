package master

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// expectAgentOffers waits for an OFFERS event and answers its offers (all of one agent here),
// with their ids, total, reserved part and free volumes summed.
func expectAgentOffers(t *testing.T, ss *Session) (ids []string, all, reserved resources.Resources, vols []string) {
	t.Helper()
	ev := expect(t, ss, "an offer", func(ev api.Event) bool { return ev.Type == api.EventOffers })
	for _, o := range ev.Offers.Offers {
		ids = append(ids, o.ID)
		all, reserved = all.Add(o.Resources), reserved.Add(o.Reserved)
		for _, v := range o.Volumes {
			vols = append(vols, v.ID)
		}
	}
	return ids, all, reserved, vols
}

// offersUntil declines offers until one comes that cond accepts, and answers it.
func offersUntil(t *testing.T, ss *Session, what string, cond func(all, reserved resources.Resources, vols []string) bool) ([]string, resources.Resources, resources.Resources, []string) {
	t.Helper()
	for range 20 {
		ids, all, reserved, vols := expectAgentOffers(t, ss)
		if cond(all, reserved, vols) {
			return ids, all, reserved, vols
		}
		if err := ss.Decline(ids, refuse(0)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("no offer with %s in 20", what)
	return nil, resources.Resources{}, resources.Resources{}, nil
}

func reserveOp(r resources.Resources) api.Operation {
	return api.Operation{Type: api.OperationReserve, Reserve: &api.Reserve{Resources: r}}
}

func withVolume(ti api.TaskInfo, id string) api.TaskInfo {
	ti.PersistentVolumes = []api.VolumeMount{{VolumeID: id, ContainerPath: "data"}}
	return ti
}

// TestReservationsThroughTheScheduler: a framework reserves part of an agent for its role and
// makes a persistent volume of it in one accept with the launch that mounts it; once the task
// ends, its role is offered the reservation again, with the volume, and another framework of
// another role never is; the reservation and the volume survive a restart of the master; a
// destroyed volume is removed from its agent and the reservation given back.
func TestReservationsThroughTheScheduler(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	db := e.subscribe(api.FrameworkInfo{Name: "db", Role: "db", FailoverTimeout: 3600})
	ids, _, _, _ := expectAgentOffers(t, db)

	// Wrong operations are refused whole, naming the operation, and change nothing.
	for _, c := range []struct {
		ops   []api.Operation
		field string
	}{
		{[]api.Operation{reserveOp(resources.Resources{CPUs: 8})}, "accept.operations[0].reserve.resources"},
		{[]api.Operation{reserveOp(resources.Resources{CPUs: 1, Ports: resources.Ranges{{Begin: 31000, End: 31000}}})}, "accept.operations[0].reserve.resources"},
		{[]api.Operation{reserveOp(resources.Resources{Disk: 100}), {Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: []api.PersistentVolume{{ID: "v", Size: 200}}}}}, "accept.operations[1].create.volumes"},
		{[]api.Operation{{Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: []api.PersistentVolume{{ID: "../x", Size: 1}}}}}, "accept.operations[0].create.volumes[0].id"},
		{[]api.Operation{{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: []string{"nope"}}}}, "accept.operations[0].destroy.volume_ids[0]"},
	} {
		err := db.Accept(ids, c.ops, nil)
		var fe *api.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Fatalf("%+v: got %v, want an error naming %s", c.ops, err, c.field)
		}
	}

	// Reserve, create, launch: one accept.
	reserve := resources.Resources{CPUs: 1, Mem: 512, Disk: 300}
	t1 := withVolume(sleepTask("t1", 1, 512), "data-1")
	t1.Resources.Disk = 100
	ops := []api.Operation{
		reserveOp(reserve),
		{Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: []api.PersistentVolume{{ID: "data-1", Size: 200, Labels: map[string]string{"app": "db"}}}}},
		launch(t1)[0],
	}
	if err := db.Accept(ids, ops, refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, db, "t1", task.Running)
	if !e.sim.hasVolume(agentID, "data-1") {
		t.Fatal("the launch did not carry the volume to the agent")
	}
	recs, err := e.r.m.sched.Reservations()
	if err != nil || len(recs) != 1 || !recs[0].Reserved["db"].Equal(reserve) || len(recs[0].Volumes) != 1 ||
		recs[0].Volumes[0].Role != "db" || recs[0].Volumes[0].Principal == "" || recs[0].Volumes[0].CreatedAt.IsZero() {
		t.Fatalf("reservations %+v %v", recs, err)
	}

	// Another role is offered the unreserved part only.
	web := e.subscribe(api.FrameworkInfo{Name: "web", Role: "web"})
	if err := db.Call(api.Call{Type: api.CallSuppress}); err != nil {
		t.Fatal(err)
	}
	if err := db.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: "t1"}}); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, db, "t1", task.Killed)
	unreserved, _ := agentRes.Subtract(reserve)
	for range 3 {
		wids, all, res, vols := expectAgentOffers(t, web)
		if !unreserved.Contains(all) || !res.IsEmpty() || len(vols) > 0 {
			t.Fatalf("web offered %s (reserved %s, volumes %v); the unreserved part is %s", all, res, vols, unreserved)
		}
		if err := web.Decline(wids, refuse(0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := web.Call(api.Call{Type: api.CallSuppress}); err != nil {
		t.Fatal(err)
	}

	// The master restarts: the reservation and the volume are still the role's.
	e.restart()
	db = e.subscribe(api.FrameworkInfo{ID: db.FrameworkID(), Name: "db", Role: "db", FailoverTimeout: 3600})
	e.sim.register(t, agentID, "host-a", agentRes)
	wantReserved := resources.Resources{CPUs: 1, Mem: 512, Disk: 100} // the volume's 200 held
	ids, _, _, _ = offersUntil(t, db, "the reservation and the volume", func(all, reserved resources.Resources, vols []string) bool {
		return reserved.Equal(wantReserved) && slices.Equal(vols, []string{"data-1"})
	})
	t2 := withVolume(sleepTask("t2", 1, 512), "data-1")
	if err := db.Accept(ids, launch(t2), refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, db, "t2", task.Running)
	// In use, the volume is in no offer; a second task may not mount it.
	ids, _, _, vols := expectAgentOffers(t, db)
	if len(vols) > 0 {
		t.Fatalf("volumes %v offered while t2 mounts them", vols)
	}
	if err := db.Accept(ids, launch(withVolume(sleepTask("t3", 0.5, 64), "data-1")), refuse(0)); err != nil {
		t.Fatal(err)
	}
	if st := expectUpdate(t, db, "t3", task.Error); !strings.Contains(st.Message, "data-1") {
		t.Fatalf("t3's error %q does not name the volume", st.Message)
	}

	// Destroy and unreserve: the agent is told, the record emptied, the agent whole again.
	if err := db.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: "t2"}}); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, db, "t2", task.Killed)
	ids, _, _, _ = offersUntil(t, db, "the volume free", func(all, reserved resources.Resources, vols []string) bool {
		return slices.Contains(vols, "data-1")
	})
	ops = []api.Operation{
		{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: []string{"data-1"}}},
		{Type: api.OperationUnreserve, Unreserve: &api.Reserve{Resources: reserve}},
	}
	if err := db.Accept(ids, ops, refuse(0)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the volume removed from the agent and the record", 10*time.Second, func() bool {
		recs, err := e.r.m.sched.Reservations()
		return err == nil && len(recs) == 0 && !e.sim.hasVolume(agentID, "data-1")
	})
	offersUntil(t, db, "the whole agent unreserved", func(all, reserved resources.Resources, vols []string) bool {
		return all.Equal(agentRes) && reserved.IsEmpty()
	})
}

// TestTheDefaultRoleCannotReserve: as in Mesos, reservations are for a named role.
func TestTheDefaultRoleCannotReserve(t *testing.T) {
	e := newSchedEnv(t, nil)
	e.sim.register(t, "", "host-a", agentRes)
	ss := e.subscribe(api.FrameworkInfo{Name: "fw"})
	ids, _, _, _ := expectAgentOffers(t, ss)
	err := ss.Accept(ids, []api.Operation{reserveOp(resources.Resources{CPUs: 1})}, nil)
	if err == nil || !strings.Contains(err.Error(), "named role") {
		t.Fatalf("a framework of role * reserved: %v", err)
	}
}

// TestReservationsOverHTTP: an external framework reserves and makes a volume over the HTTP
// scheduler API; a reservation past its offer is a 400 naming the operation; GET
// /v1/reservations shows the record.
func TestReservationsOverHTTP(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	base := "http://" + e.r.m.HTTPAddr()
	f := subscribeHTTP(t, base, api.FrameworkInfo{Name: "ext", Role: "store"}, "")
	o := f.next(api.EventOffers).Offers.Offers[0]
	accept := func(ops ...api.Operation) (int, string) {
		return f.call(api.Call{Type: api.CallAccept, Accept: &api.Accept{OfferIDs: []string{o.ID}, Operations: ops}}, f.streamID)
	}
	if code, body := accept(reserveOp(resources.Resources{Mem: 1 << 20})); code != 400 || !strings.Contains(body, "accept.operations[0].reserve.resources") {
		t.Fatalf("reserving past the offer: %d %s", code, body)
	}
	create := api.Operation{Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: []api.PersistentVolume{{ID: "blob-0", Size: 64}}}}
	if code, body := accept(reserveOp(resources.Resources{CPUs: 0.5, Disk: 64}), create); code != 202 {
		t.Fatalf("accept: %d %s", code, body)
	}
	waitUntil(t, "the agent to make the volume", 10*time.Second, func() bool { return e.sim.hasVolume(agentID, "blob-0") })
	var got struct {
		Reservations []api.AgentReservations `json:"reservations"`
	}
	getJSON(t, base+"/v1/reservations", &got)
	if len(got.Reservations) != 1 || got.Reservations[0].AgentID != agentID || got.Reservations[0].Hostname != "host-a" ||
		!got.Reservations[0].Reserved["store"].Equal(resources.Resources{CPUs: 0.5, Disk: 64}) ||
		len(got.Reservations[0].Volumes) != 1 || got.Reservations[0].Volumes[0].ID != "blob-0" {
		t.Fatalf("GET /v1/reservations: %+v", got)
	}
}

// TestDestroysInOneAcceptCountOnce: two DESTROY operations in one accept free each volume's
// disk once (the third volume's stays held), and a volume made by the accept that launches on
// it reaches the agent with its role.
func TestDestroysInOneAcceptCountOnce(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	db := e.subscribe(api.FrameworkInfo{Name: "db", Role: "db"})
	ids, _, _, _ := expectAgentOffers(t, db)
	create := func(id string) api.Operation {
		return api.Operation{Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: []api.PersistentVolume{{ID: id, Size: 100}}}}
	}
	t1 := withVolume(sleepTask("t1", 0.5, 64), "v1")
	ops := []api.Operation{reserveOp(resources.Resources{CPUs: 1, Mem: 256, Disk: 300}), create("v1"), create("v2"), create("v3"), launch(t1)[0]}
	if err := db.Accept(ids, ops, refuse(0)); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, db, "t1", task.Running)
	for _, tk := range e.sim.list(agentID) {
		if tk.Info.TaskID == "t1" && (len(tk.Info.PersistentVolumes) != 1 || tk.Info.PersistentVolumes[0].Role != "db" || tk.Info.PersistentVolumes[0].Size != 100) {
			t.Fatalf("t1 reached the agent with volumes %+v, want v1 of role db, 100 MiB", tk.Info.PersistentVolumes)
		}
	}
	if err := db.Call(api.Call{Type: api.CallKill, Kill: &api.KillTask{TaskID: "t1"}}); err != nil {
		t.Fatal(err)
	}
	expectUpdate(t, db, "t1", task.Killed)
	ids, _, _, _ = offersUntil(t, db, "the three volumes free", func(all, reserved resources.Resources, vols []string) bool {
		return len(vols) == 3
	})
	ops = []api.Operation{
		{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: []string{"v1"}}},
		{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: []string{"v2"}}},
		{Type: api.OperationUnreserve, Unreserve: &api.Reserve{Resources: resources.Resources{CPUs: 1, Mem: 256, Disk: 200}}},
	}
	if err := db.Accept(ids, ops, refuse(0)); err != nil {
		t.Fatal(err)
	}
	// Nothing runs: db holds nothing but what it is offered (v3's disk is held by nobody).
	waitUntil(t, "db to hold nothing outside its offers", 10*time.Second, func() bool {
		fws, err := e.r.m.sched.FrameworksView()
		for _, fw := range fws {
			if fw.Info.ID == db.FrameworkID() {
				return err == nil && fw.Allocated.Disk == fw.Offered.Disk && fw.Allocated.CPUs == fw.Offered.CPUs
			}
		}
		return false
	})
	want, _ := agentRes.Subtract(resources.Resources{Disk: 100}) // v3's disk, held while it lives
	ids, _, _, _ = offersUntil(t, db, "all but v3's disk, nothing reserved outside it", func(all, reserved resources.Resources, vols []string) bool {
		return all.Equal(want) && reserved.IsEmpty() && slices.Equal(vols, []string{"v3"})
	})
	// The last volume and reservation go: the whole agent is offered again.
	ops = []api.Operation{
		{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: []string{"v3"}}},
		{Type: api.OperationUnreserve, Unreserve: &api.Reserve{Resources: resources.Resources{Disk: 100}}},
	}
	if err := db.Accept(ids, ops, refuse(0)); err != nil {
		t.Fatal(err)
	}
	offersUntil(t, db, "the whole agent", func(all, reserved resources.Resources, vols []string) bool {
		return all.Equal(agentRes) && reserved.IsEmpty() && len(vols) == 0
	})
}

// TestReservationsOfARemovedAgentAreForgottenByTheNextLeader: an agent's removal committed
// without the forgetting of its reservations (the leader died between the two) — the next
// leader forgets them.
func TestReservationsOfARemovedAgentAreForgottenByTheNextLeader(t *testing.T) {
	e := newSchedEnv(t, nil)
	agentID := e.sim.register(t, "", "host-a", agentRes)
	db := e.subscribe(api.FrameworkInfo{Name: "db", Role: "db"})
	ids, _, _, _ := expectAgentOffers(t, db)
	if err := db.Accept(ids, []api.Operation{reserveOp(resources.Resources{CPUs: 1})}, refuse(0)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the reservation", 10*time.Second, func() bool {
		recs, err := e.r.m.sched.Reservations()
		return err == nil && len(recs) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.r.m.store.Apply(ctx, registry.RemoveAgent(agentID)); err != nil {
		t.Fatal(err)
	}
	e.restart()
	waitUntil(t, "the next leader to forget the removed agent's reservations", 10*time.Second, func() bool {
		recs, err := e.r.m.sched.Reservations()
		return err == nil && len(recs) == 0
	})
	var got struct {
		Reservations []api.AgentReservations `json:"reservations"`
	}
	waitUntil(t, "the store to forget them", 10*time.Second, func() bool {
		getJSON(t, "http://"+e.r.m.HTTPAddr()+"/v1/reservations", &got)
		return len(got.Reservations) == 0
	})
}
