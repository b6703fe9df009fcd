package allocator

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// Reservations (Mesos's dynamic reservations): part of an agent's scalars set aside for one
// role. The allocator keeps, per agent, what each role has reserved there and the disk of the
// role's persistent volumes; it does not track which task uses which reserved unit, only sums:
// what the frameworks of a role hold on the agent, plus its volumes' disk, draws on its
// reservation first, and only the excess on the unreserved part. So a role's slack there —
// what it reserved beyond what it uses — is kept from everyone else and offered only to the
// frameworks of that role, first in each cycle (to the one with the lowest share that did not
// refuse it), marked as reserved, with half of the agent's free ports (ports are never
// reserved, and a task that relaunches on its reservation needs some); the rest of the agent
// is shared out as before.
//
// A volume's disk is held by nobody: it counts as allocated on the agent, and as the role's
// use of its reservation, for as long as the volume lives, whether a task mounts it or not.
// Reserved resources count in shares only while offered or used, as every held resource does.

// Reserve sets aside res (scalars) of the agent for role. What the role's frameworks hold there
// now draws on it.
func (a *Allocator) Reserve(agentID, role string, res resources.Resources) error {
	ag, ok := a.agents[agentID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, agentID)
	}
	if ag.reserved == nil {
		ag.reserved = map[string]resources.Resources{}
	}
	defer a.reslack(ag, role)()
	ag.reserved[role] = ag.reserved[role].Add(scalars(res))
	return nil
}

// Unreserve gives back res of role's reservation on the agent to the unreserved part.
func (a *Allocator) Unreserve(agentID, role string, res resources.Resources) error {
	ag, ok := a.agents[agentID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, agentID)
	}
	left, err := ag.reserved[role].Subtract(scalars(res))
	if err != nil {
		return fmt.Errorf("allocator: unreserve %s of role %s on %s (reserved %s): %w", res, role, agentID, ag.reserved[role], err)
	}
	defer a.reslack(ag, role)()
	if left.IsEmpty() {
		delete(ag.reserved, role)
	} else {
		ag.reserved[role] = left
	}
	return nil
}

// AddVolume counts a persistent volume of role on the agent: size MiB of disk held for as long
// as it lives. The caller has taken that disk out of what the creating framework holds.
func (a *Allocator) AddVolume(agentID, role string, size float64) error {
	ag, ok := a.agents[agentID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, agentID)
	}
	if ag.volumes == nil {
		ag.volumes = map[string]float64{}
	}
	defer a.reslack(ag, role)()
	ag.volumes[role] += size
	ag.allocated = ag.allocated.Add(resources.Resources{Disk: size})
	return nil
}

// RemoveVolume frees a destroyed volume's disk on the agent, into role's reservation.
func (a *Allocator) RemoveVolume(agentID, role string, size float64) error {
	ag, ok := a.agents[agentID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, agentID)
	}
	if ag.volumes[role] < size-1e-9 {
		return fmt.Errorf("allocator: role %s has %v MiB of volumes on %s, not %v", role, ag.volumes[role], agentID, size)
	}
	defer a.reslack(ag, role)()
	if ag.volumes[role] -= size; ag.volumes[role] < 1e-9 {
		delete(ag.volumes, role)
	}
	ag.allocated, _ = ag.allocated.Subtract(resources.Resources{Disk: size})
	return nil
}

// Reserved is what role has reserved on the agent (its volumes' disk in it).
func (a *Allocator) Reserved(agentID, role string) resources.Resources {
	if ag, ok := a.agents[agentID]; ok {
		return ag.reserved[role]
	}
	return resources.Resources{}
}

// reslack is called before a change of the agent that may move role's slack there; the
// function it answers, called after the change, moves the role's total slack by as much (the
// role's consumption of its quota counts it: quota.go).
func (a *Allocator) reslack(ag *agentState, role string) func() {
	before := a.slack(ag, role)
	return func() {
		r := a.role(role)
		r.slack = r.slack.plus(vecOf(a.slack(ag, role))).minus(vecOf(before))
		a.reshareRole(r)
	}
}

// used is what role uses of the agent: its frameworks' holdings there and its volumes' disk.
func (a *Allocator) used(ag *agentState, role string) resources.Resources {
	u := resources.Resources{Disk: ag.volumes[role]}
	for fwID, res := range ag.byFw {
		if fw := a.frameworks[fwID]; fw != nil && fw.role.name == role {
			u = u.Add(scalars(res))
		}
	}
	return u
}

// slack is what role has reserved on the agent beyond what it uses there.
func (a *Allocator) slack(ag *agentState, role string) resources.Resources {
	res, u := ag.reserved[role], a.used(ag, role)
	return resources.Resources{CPUs: max(0, floor3(res.CPUs-u.CPUs)), Mem: max(0, floor3(res.Mem-u.Mem)), Disk: max(0, floor3(res.Disk-u.Disk))}
}

// free is what of the agent nobody holds and no role has reserved: what every framework may be
// offered.
func (a *Allocator) free(ag *agentState) resources.Resources {
	free, err := ag.total.Subtract(ag.allocated)
	if err != nil || len(ag.reserved) == 0 {
		return free
	}
	for role := range ag.reserved {
		s := a.slack(ag, role)
		free.CPUs, free.Mem, free.Disk = max(0, floor3(free.CPUs-s.CPUs)), max(0, floor3(free.Mem-s.Mem)), max(0, floor3(free.Disk-s.Disk))
	}
	return free
}

// offerReserved offers each role's slack on the agent to the framework of that role with the
// lowest share that wants offers and did not refuse it.
func (a *Allocator) offerReserved(ag *agentState, offers []Offer, now time.Time) []Offer {
	for _, role := range slices.Sorted(maps.Keys(ag.reserved)) {
		r := a.roles[role]
		if r == nil || r.heap.Len() == 0 {
			continue
		}
		s := a.slack(ag, role)
		if !worthOffering(s) {
			continue
		}
		var best *frameworkState
		for _, fw := range r.heap.items {
			if !fw.filtered(ag.id, s, now) && (best == nil || before(fw, best)) {
				best = fw
			}
		}
		if best == nil {
			continue
		}
		out := s
		if n := a.free(ag).Ports.Count(); n > 0 { // ports are never reserved: half of the free ones come along
			out.Ports, _, _ = a.free(ag).Ports.Take(int((n + 1) / 2))
		}
		a.hold(best, ag, out)
		offers = append(offers, Offer{FrameworkID: best.id, AgentID: ag.id, Resources: out, Reserved: s})
	}
	return offers
}
