package allocator

import (
	"fmt"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// offered sums one framework's offers of a cycle, and their reserved parts.
func offered(offers []Offer, fwID string) (all, reserved resources.Resources) {
	for _, o := range offers {
		if o.FrameworkID == fwID {
			all, reserved = all.Add(o.Resources), reserved.Add(o.Reserved)
		}
	}
	return all, reserved
}

func TestReservedResourcesGoOnlyToTheirRole(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000}))
	must(t, a.AddFramework("db", "db"))
	must(t, a.AddFramework("web", "web"))
	must(t, a.Reserve("a1", "db", resources.Resources{CPUs: 2, Mem: 1024, Disk: 600}))
	must(t, a.AddVolume("a1", "db", 500)) // of the reservation's disk

	// With db away, web is offered the unreserved part only, however long it waits.
	must(t, a.Suppress("db"))
	for i := range 3 {
		offers := a.Cycle(t0.Add(time.Duration(i) * time.Minute))
		all, reserved := offered(offers, "web")
		if i == 0 && !all.Equal(resources.Resources{CPUs: 2, Mem: 3072, Disk: 400}) || !reserved.IsEmpty() {
			t.Fatalf("cycle %d: web offered %s (reserved %s), want the unreserved 2 cpus, 3072 mem, 400 disk", i, all, reserved)
		}
	}
	// db back: its reservation's slack (the volume's disk held) comes to it, marked reserved.
	must(t, a.Revive("db"))
	offers := a.Cycle(t0.Add(time.Hour))
	all, reserved := offered(offers, "db")
	want := resources.Resources{CPUs: 2, Mem: 1024, Disk: 100}
	if !reserved.Equal(want) || !all.Contains(want) {
		t.Fatalf("db offered %s, reserved %s; want its slack %s reserved", all, reserved, want)
	}
	if _, r := offered(offers, "web"); !r.IsEmpty() {
		t.Fatalf("web offered reserved %s", r)
	}
	// db uses its reservation (held), then destroys the volume and unreserves: the agent is
	// whole again for anyone.
	must(t, a.Recover("db", "a1", a.Held("db", "a1"), 0, t0))
	must(t, a.Recover("web", "a1", a.Held("web", "a1"), 0, t0))
	must(t, a.RemoveVolume("a1", "db", 500))
	must(t, a.Unreserve("a1", "db", resources.Resources{CPUs: 2, Mem: 1024, Disk: 600}))
	if got := a.Free("a1"); !got.Equal(resources.Resources{CPUs: 4, Mem: 4096, Disk: 1000}) {
		t.Fatalf("free after unreserve: %s", got)
	}
	if err := a.Unreserve("a1", "db", res(1, 0)); err == nil {
		t.Fatal("unreserved what was not reserved")
	}
}

func TestReservationIsUsedBeforeTheUnreservedPart(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(4, 4096)))
	must(t, a.AddFramework("db", "db"))
	must(t, a.AddFramework("web", "web"))
	must(t, a.Reserve("a1", "db", res(1, 1024)))
	// db runs a task of 1.5 cpus (learned from the agent): its reservation is used up, the
	// excess comes from the unreserved part, and web may have all that is left.
	must(t, a.Allocate("db", "a1", res(1.5, 1024)))
	must(t, a.Suppress("db"))
	all, _ := offered(a.Cycle(t0), "web")
	if !all.Equal(res(2.5, 3072)) {
		t.Fatalf("web offered %s, want 2.5 cpus 3072 mem", all)
	}
}

// BenchmarkCycleReservations is BenchmarkCycleQuotas's cluster with a reservation (a quarter of
// the agent) and a persistent volume on one agent in ten, for one of the roles each.
func BenchmarkCycleReservations(b *testing.B) {
	a := quotaCluster(b)
	for i := 0; i < 10000; i += 10 {
		id, role := fmt.Sprintf("agent-%05d", i), fmt.Sprintf("role-%03d", i/10%100)
		must(b, a.Reserve(id, role, resources.Resources{CPUs: 4, Mem: 16384, Disk: 25000}))
		must(b, a.AddVolume(id, role, 10000))
	}
	benchCycle(b, a)
}

// TestReservationsCountInQuota: what a role reserved and does not use counts as its own, as
// Mesos 1.9+ counts it: a role whose reservation fills its limit is offered its reservation
// and nothing unreserved; a guarantee its reservation meets keeps nothing back from others.
func TestReservationsCountInQuota(t *testing.T) {
	a := New(Config{Seed: 1})
	must(t, a.AddAgent("a1", res(8, 8192)))
	must(t, a.AddFramework("db", "db"))
	a.SetQuota("db", Quota{Limit: map[string]float64{"cpus": 2}})
	must(t, a.Reserve("a1", "db", res(2, 1024)))
	all, reserved := offered(a.Cycle(t0), "db")
	if !all.Equal(res(2, 1024)) || !reserved.Equal(res(2, 1024)) {
		t.Fatalf("db, limited to 2 cpus and with 2 reserved, offered %s (reserved %s): want its reservation only", all, reserved)
	}
	// It declines its reservation for a while: still at its limit, it is offered nothing else.
	must(t, a.Recover("db", "a1", all, time.Hour, t0))
	if all, _ := offered(a.Cycle(t0.Add(time.Second)), "db"); !all.IsEmpty() {
		t.Fatalf("db, its reservation unused and filling its limit, offered %s more", all)
	}

	b := New(Config{Seed: 1})
	must(t, b.AddAgent("a1", res(8, 8192)))
	must(t, b.AddFramework("web", "web"))
	b.SetQuota("db", Quota{Guarantee: map[string]float64{"cpus": 2, "mem": 1024}})
	must(t, b.Reserve("a1", "db", res(2, 1024)))
	if all, _ := offered(b.Cycle(t0), "web"); !all.Equal(res(6, 7168)) {
		t.Fatalf("web offered %s: want all that is not db's reservation (db's guarantee is met by it, nothing more kept back)", all)
	}
	if l := b.Lacking("db"); !l.IsEmpty() {
		t.Fatalf("db lacks %s of a guarantee its reservation meets", l)
	}
}
