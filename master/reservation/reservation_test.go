package reservation

import (
	"errors"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

var now = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

func ops(o ...api.Operation) Apply {
	return Apply{AgentID: "a1", Role: "db", Principal: "p", Operations: o}
}

func reserve(r resources.Resources) api.Operation {
	return api.Operation{Type: api.OperationReserve, Reserve: &api.Reserve{Resources: r}}
}

func unreserve(r resources.Resources) api.Operation {
	return api.Operation{Type: api.OperationUnreserve, Unreserve: &api.Reserve{Resources: r}}
}

func create(id string, size float64) api.Operation {
	return api.Operation{Type: api.OperationCreate, Create: &api.CreateVolumes{Volumes: []api.PersistentVolume{{ID: id, Size: size}}}}
}

func destroy(id string) api.Operation {
	return api.Operation{Type: api.OperationDestroy, Destroy: &api.DestroyVolumes{VolumeIDs: []string{id}}}
}

// TestOperateChecksAgainstTheRecord: the record takes operations in order, all or none, and
// refuses what it does not hold — the check that keeps two accepts that raced from both
// applying past it.
func TestOperateChecksAgainstTheRecord(t *testing.T) {
	rec := api.AgentReservations{AgentID: "a1"}
	if err := Operate(&rec, ops(reserve(resources.Resources{CPUs: 1, Disk: 100}), create("v1", 60)), now); err != nil {
		t.Fatal(err)
	}
	if v, ok := Find(rec, "v1"); !ok || v.Role != "db" || v.Principal != "p" || !v.CreatedAt.Equal(now) {
		t.Fatalf("volume %+v", v)
	}
	for _, c := range []struct {
		in    Apply
		field string
	}{
		{ops(create("v2", 60)), "accept.operations[0].create.volumes[0].size"},                      // 40 left outside v1
		{ops(create("v1", 10)), "accept.operations[0].create.volumes[0].id"},                        // taken
		{ops(unreserve(resources.Resources{Disk: 50})), "accept.operations[0].unreserve.resources"}, // v1 holds 60 of 100
		{ops(destroy("nope")), "accept.operations[0].destroy.volume_ids[0]"},
		{ops(reserve(resources.Resources{CPUs: 1}), reserve(resources.Resources{Ports: resources.Ranges{{Begin: 1, End: 1}}})), "accept.operations[1].reserve.resources"},
		{Apply{AgentID: "a1", Role: "*", Operations: []api.Operation{reserve(resources.Resources{CPUs: 1})}}, "role"},
	} {
		before := Clone(rec)
		err := Operate(&rec, c.in, now)
		var fe *api.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Fatalf("%+v: %v, want an error naming %s", c.in.Operations, err, c.field)
		}
		if !rec.Reserved["db"].Equal(before.Reserved["db"]) || len(rec.Volumes) != len(before.Volumes) {
			t.Fatalf("a refused apply changed the record: %+v", rec)
		}
	}
	// Destroy: the volume waits for its agent as destroying; then unreserve all.
	if err := Operate(&rec, ops(destroy("v1"), unreserve(resources.Resources{CPUs: 1, Disk: 100})), now); err != nil {
		t.Fatal(err)
	}
	if len(rec.Volumes) != 0 || len(rec.Destroying) != 1 || len(rec.Reserved) != 0 {
		t.Fatalf("after destroy and unreserve: %+v", rec)
	}
}
