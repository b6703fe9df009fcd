package allocator

import (
	"math"

	"github.com/agora-sched/agora/pkg/resources"
)

// Quota per role, as Mesos's allocator enforces it:
//
//   - A limit: a role is never offered past it. Each offer to one of its frameworks is clipped,
//     resource by resource, to what the limit leaves (limit − what the role holds, offers
//     included); a role with less left than the minimum offer is offered nothing.
//   - A guarantee: a role that holds less than its guarantee (of some resource) comes before
//     every role that does not, whatever the shares (DRF orders the roles below their
//     guarantees among themselves, and the others among themselves); and no role is offered
//     what the unsatisfied guarantees need: of the active agents' free resources, the
//     headroom — the sum over roles of what each still lacks of its guarantee — is kept back from
//     offers that do not go towards a guarantee. Mesos lays resources away so; declined or not,
//     they are there when the guaranteed role's framework asks.
//
// The guarantee of a role without a framework is kept back too: that is what a guarantee is.
//
// What a role consumes of its quota is what it holds (offered or in use) and what it reserved
// and does not use (its slack, reserved.go), as Mesos 1.9 and later count it: reserved
// resources are the role's whether its frameworks use them or not, so a role at its limit
// cannot reserve past it, and a guarantee is met by what the role reserved too.

// Quota is a role's guarantee and limit. Quantities are by resource name: "cpus", "mem" and
// "disk"; a resource the limit does not name is not limited.
type Quota struct {
	Guarantee map[string]float64
	Limit     map[string]float64
}

// vec is a role's cpus, mem and disk.
type vec [3]float64

func vecOf(r resources.Resources) vec { return vec{r.CPUs, r.Mem, r.Disk} }

func (v vec) plus(o vec) vec  { return vec{v[0] + o[0], v[1] + o[1], v[2] + o[2]} }
func (v vec) minus(o vec) vec { return vec{v[0] - o[0], v[1] - o[1], v[2] - o[2]} }

var quotaNames = [3]string{"cpus", "mem", "disk"}

// roleQuota is a role's quota as the allocator keeps it: unlimited resources at +Inf.
type roleQuota struct {
	guarantee, limit vec
}

// SetQuota sets a role's quota (a role no framework has yet is made), replacing any before.
func (a *Allocator) SetQuota(role string, q Quota) {
	r := a.role(role)
	rq := &roleQuota{}
	for i, name := range quotaNames {
		rq.guarantee[i] = q.Guarantee[name]
		rq.limit[i] = math.Inf(1)
		if v, ok := q.Limit[name]; ok {
			rq.limit[i] = v
		}
	}
	r.quota = rq
	a.reshareRole(r)
}

// RemoveQuota takes a role's quota away: it is neither guaranteed nor limited.
func (a *Allocator) RemoveQuota(role string) {
	if r, ok := a.roles[role]; ok {
		r.quota = nil
		a.reshareRole(r)
	}
}

// Lacking is what a role still lacks of its guarantee (nothing without one).
func (a *Allocator) Lacking(role string) resources.Resources {
	r, ok := a.roles[role]
	if !ok {
		return resources.Resources{}
	}
	l := r.lacking()
	return resources.Resources{CPUs: l[0], Mem: l[1], Disk: l[2]}
}

// consumed is what the role consumes of its quota: what it holds and its reservations' slack.
func (r *roleState) consumed() vec { return vecOf(r.allocated).plus(r.slack) }

// below says whether the role holds less than its guarantee of some resource: it lacks some of
// it (lack, kept by reshareRole).
func (r *roleState) below() bool { return r.lack[0] > 1e-9 || r.lack[1] > 1e-9 || r.lack[2] > 1e-9 }

// lacking is what the role still lacks of its guarantee.
func (r *roleState) lacking() vec {
	var out vec
	if r.quota == nil {
		return out
	}
	held := r.consumed()
	for i := range out {
		out[i] = max(0, r.quota.guarantee[i]-held[i])
	}
	return out
}

// underLimit says whether the role may be offered the minimum offer under its limit.
func (r *roleState) underLimit() bool {
	if r.quota == nil {
		return true
	}
	held := r.consumed()
	return r.quota.limit[0]-held[0] >= MinCPUs && r.quota.limit[1]-held[1] >= MinMem
}

// headroom is what the unsatisfied guarantees of every role need: kept as roles' holdings
// change (reshareRole), not summed over the roles for every offer.
func (a *Allocator) headroom() vec {
	return vec{max(0, a.head[0]), max(0, a.head[1]), max(0, a.head[2])}
}

// quotaClip clips an offer to a framework's role by its limit and by the headroom the others'
// guarantees need of free (the active agents' free resources this cycle): a role below its
// guarantee may take what it lacks and what is spare besides; another only what is spare.
func (a *Allocator) quotaClip(r *roleState, out resources.Resources, free vec) resources.Resources {
	if len(a.quotaRoles) == 0 {
		return out
	}
	room := vec{math.Inf(1), math.Inf(1), math.Inf(1)}
	head := a.headroom()
	own := r.lacking()
	held := r.consumed()
	// A role below its guarantee of one resource may hold the minimum offer of the others past
	// its guarantee, from the headroom: an offer needs some of each (MinCPUs and MinMem), and
	// two roles each short of what the other's guarantee holds back would otherwise wait for
	// each other. The minimum in all, not in each offer.
	least := vec{}
	if r.below() {
		least = vec{MinCPUs, MinMem, 0}
	}
	for i := range room {
		spare := max(0, free[i]-head[i])
		var guaranteed float64
		if r.quota != nil {
			guaranteed = r.quota.guarantee[i]
		}
		room[i] = max(spare+own[i], least[i]-max(0, held[i]-guaranteed))
		if r.quota != nil {
			room[i] = min(room[i], max(0, r.quota.limit[i]-held[i]))
		}
	}
	v := vecOf(out)
	if v[0] <= room[0] && v[1] <= room[1] && v[2] <= room[2] {
		return out
	}
	out.CPUs, out.Mem, out.Disk = floor3(min(v[0], room[0])), floor3(min(v[1], room[1])), floor3(min(v[2], room[2]))
	return out
}
