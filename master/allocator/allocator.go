// Package allocator decides which framework is offered which agent's free resources: Dominant
// Resource Fairness, hierarchically across roles (with weights) and across the frameworks of a
// role, as Mesos's hierarchical allocator does. It does no I/O and reads no clock: the leader
// master feeds it events and the time, and turns the offers it returns into messages.
//
// Use:
//
//  1. New(Config{Seed}); AddAgent and AddFramework as they register; SetWeight for roles.
//  2. Allocate(...) for what is already in use when the allocator starts (tasks a new leader
//     learns from re-registering agents).
//  3. Cycle(now) on a timer and after events that free resources: it returns offers. Each holds
//     part or all of one agent's free resources for one framework, and counts as allocated to
//     that framework from then on — an offered resource is never offered again meanwhile.
//  4. Recover(...) whatever comes back: a declined offer or the unused part of an accepted one
//     (with the framework's refuse filter for those resources), a rescinded offer, an ended
//     task.
//  5. Suppress and Revive a framework's wish for offers; DeactivateAgent stops offers of an
//     agent (unreachable, draining) and ActivateAgent resumes them.
//
// Ordering: for each agent with something free, in an order shuffled anew each cycle, the role
// with the lowest weighted dominant share among those with a framework that may take this
// agent, then its framework with the lowest dominant share (ties by name). A share is the
// largest fraction of the cluster's cpus, mem or disk allocated to the role or framework, an
// offer counting in full from the moment it is made.
//
// Splitting an agent (progressive filling): the framework put first is offered no more of the
// agent than brings its dominant share, were it to use the whole offer, up to the share s of
// the one that comes next and a step past it — the next role's (its weighted share times this
// role's weight) and the next framework's of its role, whichever allows less. A step is
// FairStep of s plus MinFairStep of the cluster, and at least 1/AgentTurns of the agent. The
// offer is the agent's free resources scaled down as a whole, every resource by the same
// fraction, so that what is left keeps the agent's proportions: clipping each resource on its
// own would let a cpu-heavy framework, whose memory share is low, take all the free memory in
// its first slice and leave the memory-heavy one nothing of use. A shared offer is then trimmed
// to the framework's own proportions (balance): an agent whose cpus are taken can be mostly
// memory, which would count as the dominant share of a framework of cpu-bound tasks and hand
// its turns to others until the offer came back. What is left of the agent goes, in the same
// cycle, to whoever is first then, and a framework picked again has its offer grown, so that
// one cycle splits an agent among its claimants by turns: two frameworks tied at 0 end with
// half each, not one with all. A framework is never offered less than the minimum offer
// (MinCPUs and MinMem) nor more than is free, so every turn takes something and a cycle ends;
// a turn held back by a cap raises a dominant share by a step, which bounds the turns of an
// agent by about AgentTurns per resource. On a large cluster an agent is a small part of the
// whole and the caps rarely hold one back: one offer per agent, as before.
//
// Filters, as Mesos's: a decline or the unused part of an accepted offer, with a refuse time,
// keeps exactly those resources of that agent from the framework until then — an offer whose
// resources all lie within what it refused (a subset) is not made; a larger one, or one with
// something it did not refuse, is. A framework whose fair slice of an agent is such a subset is
// passed over for that agent in that cycle and its slice goes to the others; when every
// claimant is passed over so, the whole of what is free goes to the first of them that did not
// refuse all of it. So a framework that declined the rest of a small slice is still offered a
// larger slice of that agent later, and one that can use nothing of an agent stops being
// offered it. Frameworks and roles sit in heaps by share, so a cycle costs about agents ×
// log(frameworks).
package allocator

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// DefaultRefuse is how long a decline keeps the declined resources from the framework when it
// names no time (Mesos's default filter).
const DefaultRefuse = 5 * time.Second

// Minimum offer: resources below either amount are not worth offering (Mesos's defaults, which
// Mesos takes either of; an Agora task needs both cpus and mem).
const (
	MinCPUs = 0.01
	MinMem  = 32
)

// How far past the next claimant's dominant share s an offer may bring a framework: to
// s×(1+FairStep)+MinFairStep (see the package doc). It is the grain of a split — the turns by
// which one agent is shared out within a cycle, and how far apart two claimants' shares may
// end: 0.2 % of their shares and 0.15 % of the cluster. Finer splits leave more pieces too
// small for a task; coarser ones (a whole agent of 100 at once) let a cpu-heavy framework
// take all of an agent's cpus and strand its memory, which the memory-heavy one cannot use
// without a little cpu. These values did best over the tests' clusters of 1 to 300 agents.
const (
	FairStep    = 0.002
	MinFairStep = 0.0015
)

// AgentTurns bounds the turns that share out one agent: a step is at least this part of the
// agent (its dominant share of the cluster, part).
const AgentTurns = 16

// stepPast is the dominant share an offer of an agent that is part of the cluster may bring a
// framework to when the next claimant has share s.
func stepPast(s, part float64) float64 { return max(s*(1+FairStep)+MinFairStep, s+part/AgentTurns) }

// Errors for events that name what the allocator does not know.
var (
	ErrUnknownAgent     = errors.New("allocator: unknown agent")
	ErrUnknownFramework = errors.New("allocator: unknown framework")
	ErrExists           = errors.New("allocator: already added")
)

// Offer is one agent's free resources offered to one framework.
type Offer struct {
	FrameworkID string
	AgentID     string
	Resources   resources.Resources
	Reserved    resources.Resources // the part of Resources reserved for the framework's role
}

// Config configures an Allocator.
type Config struct {
	Seed uint64 // shuffles the agents of each cycle; fixed in tests
}

type agentState struct {
	id        string
	total     resources.Resources
	allocated resources.Resources            // offered or in use, all frameworks
	byFw      map[string]resources.Resources // the same, per framework
	active    bool
	reserved  map[string]resources.Resources // by role (reserved.go)
	volumes   map[string]float64             // by role: the disk of its persistent volumes
}

type frameworkState struct {
	id         string
	role       *roleState
	allocated  resources.Resources // scalars, all agents
	suppressed bool                // by the framework: no offers wanted
	inactive   bool                // by the master: disconnected, no offers until it is back
	filters    map[string][]filter // agent id → what it refused there, until when
	share      float64
	index      int // in role.heap; -1 when out
}

// filter is a refusal: the framework is not offered a subset of res on the agent until then.
type filter struct {
	res   resources.Resources
	until time.Time
}

type roleState struct {
	name      string
	weight    float64
	allocated resources.Resources
	heap      fwHeap // frameworks that want offers
	share     float64
	index     int        // in the allocator's role heap; -1 when out
	quota     *roleQuota // nil: none (quota.go)
	lack      vec        // what it lacks of its guarantee (below it: it comes first), as counted in the allocator's head
	slack     vec        // what it reserved and does not use, over every agent (reserved.go)
}

// Allocator is the allocator's state. It is not safe for concurrent use: the leader's
// allocation loop owns it.
type Allocator struct {
	rng        *rand.Rand
	agents     map[string]*agentState
	agentIDs   []string // every agent, for the shuffle
	frameworks map[string]*frameworkState
	roles      map[string]*roleState
	roleHeap   roleHeap
	total      resources.Resources   // scalars of every agent, active or not
	quotaRoles map[string]*roleState // the roles with a quota
	cycleFree  vec                   // during a cycle: the active agents' free cpus, mem, disk
	head       vec                   // what every role lacks of its guarantee (quota.go's headroom)
}

// New makes an empty allocator.
func New(cfg Config) *Allocator {
	return &Allocator{
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		agents:     map[string]*agentState{},
		frameworks: map[string]*frameworkState{},
		roles:      map[string]*roleState{},
	}
}

// AddAgent adds an agent, active, with nothing allocated.
func (a *Allocator) AddAgent(id string, total resources.Resources) error {
	if _, ok := a.agents[id]; ok {
		return fmt.Errorf("%w: agent %s", ErrExists, id)
	}
	a.agents[id] = &agentState{id: id, total: total, byFw: map[string]resources.Resources{}, active: true}
	a.agentIDs = append(a.agentIDs, id)
	a.total = a.total.Add(scalars(total))
	a.reshareAll()
	return nil
}

// RemoveAgent forgets an agent and everything allocated on it; the caller has rescinded its
// offers and written off its tasks.
func (a *Allocator) RemoveAgent(id string) error {
	ag, ok := a.agents[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	}
	for role := range ag.reserved { // its reservations go with it
		if r := a.roles[role]; r != nil {
			r.slack = r.slack.minus(vecOf(a.slack(ag, role)))
			a.reshareRole(r)
		}
	}
	for fwID, res := range ag.byFw {
		if fw := a.frameworks[fwID]; fw != nil {
			a.release(fw, res)
		}
	}
	delete(a.agents, id)
	a.agentIDs = slices.DeleteFunc(a.agentIDs, func(s string) bool { return s == id })
	a.total, _ = a.total.Subtract(scalars(ag.total))
	for _, fw := range a.frameworks {
		delete(fw.filters, id)
	}
	a.reshareAll()
	return nil
}

// DeactivateAgent stops offers of the agent; what is allocated there stays allocated.
func (a *Allocator) DeactivateAgent(id string) error { return a.setActive(id, false) }

// ActivateAgent resumes offers of the agent.
func (a *Allocator) ActivateAgent(id string) error { return a.setActive(id, true) }

func (a *Allocator) setActive(id string, on bool) error {
	ag, ok := a.agents[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	}
	ag.active = on
	return nil
}

// AddFramework adds a framework of a role; it wants offers until suppressed.
func (a *Allocator) AddFramework(id, role string) error {
	if _, ok := a.frameworks[id]; ok {
		return fmt.Errorf("%w: framework %s", ErrExists, id)
	}
	r := a.role(role)
	fw := &frameworkState{id: id, role: r, filters: map[string][]filter{}, index: -1}
	a.frameworks[id] = fw
	a.enqueue(fw)
	return nil
}

// RemoveFramework forgets a framework and releases all it holds; the caller has rescinded its
// offers and killed its tasks.
func (a *Allocator) RemoveFramework(id string) error {
	fw, err := a.framework(id)
	if err != nil {
		return err
	}
	a.dequeue(fw)
	for _, ag := range a.agents {
		if res, ok := ag.byFw[id]; ok {
			ag.allocated, _ = ag.allocated.Subtract(res)
			delete(ag.byFw, id)
			a.release(fw, res)
		}
	}
	delete(a.frameworks, id)
	return nil
}

// SetWeight sets a role's weight (default 1): a role of weight 2 gets twice the share of a role
// of weight 1.
// role is the role's state, made (weight 1) when there is none.
func (a *Allocator) role(name string) *roleState {
	r := a.roles[name]
	if r == nil {
		r = &roleState{name: name, weight: 1, index: -1}
		a.roles[name] = r
	}
	return r
}

func (a *Allocator) SetWeight(role string, w float64) error {
	if !(w > 0) {
		return fmt.Errorf("allocator: weight of %s must be > 0, got %v", role, w)
	}
	r := a.role(role)
	r.weight = w
	a.reshareRole(r)
	return nil
}

// Suppress stops offers to the framework until Revive.
func (a *Allocator) Suppress(id string) error {
	fw, err := a.framework(id)
	if err != nil {
		return err
	}
	fw.suppressed = true
	a.dequeue(fw)
	return nil
}

// Revive clears the framework's filters and has it offered again.
func (a *Allocator) Revive(id string) error {
	fw, err := a.framework(id)
	if err != nil {
		return err
	}
	clear(fw.filters)
	fw.suppressed = false
	a.enqueue(fw)
	return nil
}

// framework finds a framework by id.
func (a *Allocator) framework(id string) (*frameworkState, error) {
	fw, ok := a.frameworks[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownFramework, id)
	}
	return fw, nil
}

// DeactivateFramework stops offers to a framework that disconnected; what it holds stays held.
func (a *Allocator) DeactivateFramework(id string) error {
	fw, err := a.framework(id)
	if err != nil {
		return err
	}
	fw.inactive = true
	a.dequeue(fw)
	return nil
}

// ActivateFramework resumes offers to a framework that is back (unless it suppressed them).
func (a *Allocator) ActivateFramework(id string) error {
	fw, err := a.framework(id)
	if err != nil {
		return err
	}
	fw.inactive = false
	a.enqueue(fw)
	return nil
}

// Allocated is what the framework holds in all, offered or in use (cpus, mem and disk).
func (a *Allocator) Allocated(fwID string) resources.Resources {
	if fw, ok := a.frameworks[fwID]; ok {
		return fw.allocated
	}
	return resources.Resources{}
}

// Allocate records resources on an agent as held by a framework without offering them: the
// tasks a new leader learns of, or launches it has placed itself.
func (a *Allocator) Allocate(fwID, agentID string, res resources.Resources) error {
	fw, ok := a.frameworks[fwID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownFramework, fwID)
	}
	ag, ok := a.agents[agentID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, agentID)
	}
	free, err := ag.total.Subtract(ag.allocated)
	if err == nil && !free.Contains(res) {
		err = resources.ErrInsufficient
	}
	if err != nil {
		return fmt.Errorf("allocator: %s on %s: %w", res, agentID, err)
	}
	a.hold(fw, ag, res)
	return nil
}

// Recover gives back resources a framework held on an agent (a declined offer, the unused part
// of an accepted one, a rescinded offer, an ended task). A refuse time above zero keeps these
// resources from the framework until now+refuse: no offer of the agent that is a subset of
// them is made to it meanwhile (a larger one is).
func (a *Allocator) Recover(fwID, agentID string, res resources.Resources, refuse time.Duration, now time.Time) error {
	fw, ok := a.frameworks[fwID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownFramework, fwID)
	}
	ag, ok := a.agents[agentID]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownAgent, agentID)
	}
	held := ag.byFw[fwID]
	if !held.Contains(res) {
		return fmt.Errorf("allocator: %s does not hold %s on %s (it holds %s)", fwID, res, agentID, held)
	}
	a.unhold(fw, ag, res)
	if refuse > 0 && !res.IsEmpty() {
		fw.refuse(agentID, filter{res: res, until: now.Add(refuse)}, now)
	}
	return nil
}

// refuse adds a filter for the agent, dropping those that ended or that it covers (a subset
// refused no longer); one that covers it already makes it needless.
func (fw *frameworkState) refuse(agentID string, f filter, now time.Time) {
	kept := fw.filters[agentID][:0]
	for _, old := range fw.filters[agentID] {
		switch {
		case !now.Before(old.until), f.res.Contains(old.res) && !f.until.Before(old.until):
			continue
		case old.res.Contains(f.res) && !old.until.Before(f.until):
			return
		}
		kept = append(kept, old)
	}
	fw.filters[agentID] = append(kept, f)
}

// filtered says whether the framework refused, until after now, resources of the agent that
// hold all of res. Filters that ended are dropped.
func (fw *frameworkState) filtered(agentID string, res resources.Resources, now time.Time) bool {
	fs, ok := fw.filters[agentID]
	if !ok {
		return false
	}
	kept, hit := fs[:0], false
	for _, f := range fs {
		if !now.Before(f.until) {
			continue
		}
		kept = append(kept, f)
		hit = hit || f.res.Contains(res)
	}
	if len(kept) == 0 {
		delete(fw.filters, agentID)
	} else {
		fw.filters[agentID] = kept
	}
	return hit
}

// Cycle shares out every active agent's free resources among the frameworks DRF puts first
// for it, by progressive filling (see the package doc).
func (a *Allocator) Cycle(now time.Time) []Offer {
	if a.roleHeap.Len() == 0 {
		return nil // nobody wants offers
	}
	var offers []Offer
	a.cycleFree = vec{}
	for _, ag := range a.agents {
		if ag.active && len(a.quotaRoles) > 0 { // only quotas need it
			a.cycleFree = a.cycleFree.plus(vecOf(a.free(ag)))
		}
	}
	order := slices.Clone(a.agentIDs)
	a.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, id := range order {
		ag := a.agents[id]
		if !ag.active {
			continue
		}
		if len(ag.reserved) > 0 {
			offers = a.offerReserved(ag, offers, now)
		}
		if free := a.free(ag); worthOffering(free) {
			offers = a.shareOut(ag, free, offers, now)
		}
	}
	return offers
}

// worthOffering: resources below either minimum are not offered — no task runs without cpus
// and mem (Mesos offers either; an Agora task needs both).
func worthOffering(r resources.Resources) bool { return r.CPUs >= MinCPUs && r.Mem >= MinMem }

// shareOut offers the agent's free resources, free, by turns: each turn to the framework put
// first, as much as its caps allow, growing its offer of this cycle when it already has one.
// Offers a framework refused in full (a subset of a filter) are taken back and their framework
// passed over for this agent, and the rest shared out again among the others; when no one is
// left, all that is free goes to the first of those passed over that did not refuse all of it.
func (a *Allocator) shareOut(ag *agentState, free resources.Resources, offers []Offer, now time.Time) []Offer {
	first := len(offers) // this agent's offers are offers[first:]
	var passed []*frameworkState
	for {
		for worthOffering(free) {
			c, ok := a.pick(ag, free, passed, now)
			if !ok {
				break
			}
			part := a.slice(c, free)
			if !worthOffering(part) { // its quota leaves it nothing of use here
				passed = append(passed, c.fw)
				continue
			}
			a.hold(c.fw, ag, part)
			a.cycleFree = a.cycleFree.minus(vecOf(part))
			if part.Equal(free) {
				free = resources.Resources{}
			} else {
				free, _ = free.Subtract(part)
			}
			if i := slices.IndexFunc(offers[first:], func(o Offer) bool { return o.FrameworkID == c.fw.id }); i >= 0 {
				offers[first+i].Resources = offers[first+i].Resources.Add(part)
			} else {
				offers = append(offers, Offer{FrameworkID: c.fw.id, AgentID: ag.id, Resources: part})
			}
		}
		passedBefore := len(passed)
		for i := first; i < len(offers); i++ {
			fw := a.frameworks[offers[i].FrameworkID]
			if fw.filtered(ag.id, offers[i].Resources, now) {
				a.unhold(fw, ag, offers[i].Resources)
				a.cycleFree = a.cycleFree.plus(vecOf(offers[i].Resources))
				passed = append(passed, fw)
				offers = slices.Delete(offers, i, i+1)
				i--
			}
		}
		if len(passed) == passedBefore {
			break
		}
		free = a.free(ag)
	}
	if len(passed) == 0 {
		return offers
	}
	if free = a.free(ag); !worthOffering(free) {
		return offers
	}
	var best *frameworkState
	var bestPart resources.Resources
	for _, fw := range passed {
		if fw.filtered(ag.id, free, now) || best != nil && !before(fw, best) {
			continue
		}
		if part := a.quotaClip(fw.role, free, a.cycleFree); worthOffering(part) && !fw.filtered(ag.id, part, now) {
			best, bestPart = fw, part
		}
	}
	if best != nil {
		a.hold(best, ag, bestPart)
		a.cycleFree = a.cycleFree.minus(vecOf(bestPart))
		offers = append(offers, Offer{FrameworkID: best.id, AgentID: ag.id, Resources: bestPart})
	}
	return offers
}

// before says whether DRF puts x before y: its role's weighted share, then its own, then names.
func before(x, y *frameworkState) bool {
	if x.role != y.role {
		if x.role.share != y.role.share {
			return x.role.share < y.role.share
		}
		return x.role.name < y.role.name
	}
	if x.share != y.share {
		return x.share < y.share
	}
	return x.id < y.id
}

// choice is the framework put first for an agent and the dominant shares (of the cluster, not
// weighted) that an offer may bring its role and it up to; +Inf: no cap.
type choice struct {
	fw             *frameworkState
	roleCap, fwCap float64
}

// pick finds, without changing any share, the framework DRF puts first for this agent: the
// lowest role, then its lowest framework, among those that did not refuse all of free and are
// not passed over. Its caps come from the role and the framework that come next.
func (a *Allocator) pick(ag *agentState, free resources.Resources, passed []*frameworkState, now time.Time) (choice, bool) {
	var rolesAside []*roleState
	defer func() {
		for _, r := range rolesAside {
			a.roleHeap.push(r)
		}
	}()
	for a.roleHeap.Len() > 0 {
		r := a.roleHeap.pop()
		rolesAside = append(rolesAside, r)
		if !r.underLimit() {
			continue // at its limit (quota.go)
		}
		var fwsAside []*frameworkState
		c := choice{roleCap: math.Inf(1), fwCap: math.Inf(1)}
		for r.heap.Len() > 0 {
			fw := r.heap.pop()
			fwsAside = append(fwsAside, fw)
			if !slices.Contains(passed, fw) && !fw.filtered(ag.id, free, now) {
				c.fw = fw
				break
			}
		}
		if c.fw != nil {
			if r.heap.Len() > 0 {
				c.fwCap = stepPast(r.heap.items[0].share, a.share(ag.total))
			}
			if a.roleHeap.Len() > 0 && !r.below() { // a role below its guarantee takes what it lacks first
				c.roleCap = stepPast(a.roleHeap.items[0].share*r.weight, a.share(ag.total))
			}
		}
		for _, fw := range fwsAside {
			r.heap.push(fw)
		}
		if c.fw != nil {
			return c, true
		}
	}
	return choice{}, false
}

// slice is what of free the choice is offered: free scaled down as a whole to the largest part
// that keeps its role's and its own dominant share within their caps, but never below the
// minimum offer.
func (a *Allocator) slice(c choice, free resources.Resources) resources.Resources {
	part := min(1, a.room(c.fw.role.allocated, c.roleCap, free), a.room(c.fw.allocated, c.fwCap, free))
	part = max(part, MinCPUs/free.CPUs, MinMem/free.Mem) // the smallest part worth offering
	out := free
	if part < 1 {
		out = resources.Resources{CPUs: floor3(free.CPUs * part), Mem: floor3(free.Mem * part), Disk: floor3(free.Disk * part)}
		if n := float64(free.Ports.Count()); n > 0 {
			out.Ports, _, _ = free.Ports.Take(int(math.Ceil(n * part)))
		}
	}
	if !math.IsInf(c.roleCap, 1) || !math.IsInf(c.fwCap, 1) {
		out = a.balance(c.fw.allocated, out)
	}
	return a.quotaClip(c.fw.role, out, a.cycleFree)
}

// balance trims what a shared offer holds beyond the framework's own proportions: no resource
// of it may be a larger part of the cluster's than the resource the framework holds most of.
// An agent whose cpus are spoken for can have most of its memory free; offered in full, that
// memory, of no use to a framework of cpu-bound tasks, would count as its dominant share and
// hand its turns to others until the offer came back. With nothing held yet there are no
// proportions to keep, and an offer trimmed below the minimum is brought up to it.
func (a *Allocator) balance(held, out resources.Resources) resources.Resources {
	type dim struct{ held, total, out *float64 }
	dims := []dim{{&held.CPUs, &a.total.CPUs, &out.CPUs}, {&held.Mem, &a.total.Mem, &out.Mem}, {&held.Disk, &a.total.Disk, &out.Disk}}
	top, s := -1, 0.0
	for i, d := range dims {
		if *d.total > 0 && *d.held / *d.total > s {
			top, s = i, *d.held / *d.total
		}
	}
	if top < 0 {
		return out
	}
	part := *dims[top].out / *dims[top].total // the offer's part of the cluster in that resource
	full := out
	for i, d := range dims {
		if i != top && *d.total > 0 {
			*d.out = min(*d.out, floor3(part**d.total))
		}
	}
	out.CPUs = min(full.CPUs, max(out.CPUs, MinCPUs))
	out.Mem = min(full.Mem, max(out.Mem, MinMem))
	return out
}

// room is the largest part of free that keeps the dominant share of allocated+part×free within
// limit, 1 when there is no limit.
func (a *Allocator) room(allocated resources.Resources, limit float64, free resources.Resources) float64 {
	if math.IsInf(limit, 1) {
		return 1
	}
	part := math.Inf(1)
	for _, p := range [][3]float64{{allocated.CPUs, a.total.CPUs, free.CPUs}, {allocated.Mem, a.total.Mem, free.Mem}, {allocated.Disk, a.total.Disk, free.Disk}} {
		if p[1] > 0 && p[2] > 0 {
			part = min(part, (limit*p[1]-p[0])/p[2])
		}
	}
	return max(part, 0)
}

// floor3 rounds down to the three decimals resources keep, so a part never exceeds the whole.
func floor3(v float64) float64 { return math.Floor(v*1000+1e-6) / 1000 }

// hold counts res on the agent as the framework's.
func (a *Allocator) hold(fw *frameworkState, ag *agentState, res resources.Resources) {
	if _, ok := ag.reserved[fw.role.name]; ok {
		defer a.reslack(ag, fw.role.name)()
	}
	ag.allocated = ag.allocated.Add(res)
	ag.byFw[fw.id] = ag.byFw[fw.id].Add(res)
	fw.allocated = fw.allocated.Add(scalars(res))
	fw.role.allocated = fw.role.allocated.Add(scalars(res))
	a.reshare(fw)
}

// unhold gives res on the agent back from the framework.
func (a *Allocator) unhold(fw *frameworkState, ag *agentState, res resources.Resources) {
	if _, ok := ag.reserved[fw.role.name]; ok {
		defer a.reslack(ag, fw.role.name)()
	}
	left, _ := ag.byFw[fw.id].Subtract(res)
	if left.IsEmpty() {
		delete(ag.byFw, fw.id)
	} else {
		ag.byFw[fw.id] = left
	}
	ag.allocated, _ = ag.allocated.Subtract(res)
	a.release(fw, res)
}

// release takes res off the framework's and its role's totals (the agent's are the caller's).
func (a *Allocator) release(fw *frameworkState, res resources.Resources) {
	fw.allocated, _ = fw.allocated.Subtract(scalars(res))
	fw.role.allocated, _ = fw.role.allocated.Subtract(scalars(res))
	a.reshare(fw)
}

// scalars drops the ports: a framework's or role's totals add up several agents, whose port
// numbers are not the same ports, and DRF shares count only cpus, mem and disk.
func scalars(r resources.Resources) resources.Resources {
	return resources.Resources{CPUs: r.CPUs, Mem: r.Mem, Disk: r.Disk}
}

// share is the dominant share of allocated in the cluster's total.
func (a *Allocator) share(allocated resources.Resources) float64 {
	s := 0.0
	for _, p := range [][2]float64{{allocated.CPUs, a.total.CPUs}, {allocated.Mem, a.total.Mem}, {allocated.Disk, a.total.Disk}} {
		if p[1] > 0 {
			s = max(s, p[0]/p[1])
		}
	}
	return s
}

func (a *Allocator) reshare(fw *frameworkState) {
	fw.share = a.share(fw.allocated)
	if fw.index >= 0 {
		fw.role.heap.fix(fw)
	}
	a.reshareRole(fw.role)
}

func (a *Allocator) reshareRole(r *roleState) {
	r.share = a.share(r.allocated) / r.weight
	lack := r.lacking()
	a.head = a.head.minus(r.lack).plus(lack)
	r.lack = lack
	if r.quota != nil {
		if a.quotaRoles == nil {
			a.quotaRoles = map[string]*roleState{}
		}
		a.quotaRoles[r.name] = r
	} else {
		delete(a.quotaRoles, r.name)
	}
	if r.index >= 0 {
		a.roleHeap.fix(r)
	}
}

// reshareAll recomputes every share: the cluster's total changed.
func (a *Allocator) reshareAll() {
	for _, fw := range a.frameworks {
		fw.share = a.share(fw.allocated)
	}
	for _, r := range a.roles {
		r.share = a.share(r.allocated) / r.weight
		r.heap.init()
	}
	a.roleHeap.init()
}

// enqueue puts a framework that wants offers into its role's heap, and the role into the
// allocator's when it was out.
func (a *Allocator) enqueue(fw *frameworkState) {
	if fw.suppressed || fw.inactive || fw.index >= 0 {
		return
	}
	fw.role.heap.push(fw)
	if fw.role.index < 0 {
		a.roleHeap.push(fw.role)
	}
}

// dequeue takes a framework out of its role's heap, and the role out when it has no framework
// left that wants offers.
func (a *Allocator) dequeue(fw *frameworkState) {
	if fw.index < 0 {
		return
	}
	fw.role.heap.remove(fw)
	if fw.role.heap.Len() == 0 && fw.role.index >= 0 {
		a.roleHeap.remove(fw.role)
	}
}

// Share is the framework's dominant share, for operators and tests.
func (a *Allocator) Share(fwID string) float64 {
	if fw, ok := a.frameworks[fwID]; ok {
		return fw.share
	}
	return 0
}

// RoleShare is the role's weighted dominant share.
func (a *Allocator) RoleShare(role string) float64 {
	if r, ok := a.roles[role]; ok {
		return r.share
	}
	return 0
}

// Held is what the framework holds on the agent, offered or in use.
func (a *Allocator) Held(fwID, agentID string) resources.Resources {
	if ag, ok := a.agents[agentID]; ok {
		return ag.byFw[fwID]
	}
	return resources.Resources{}
}

// Free is what the agent has that nobody holds and no role has reserved.
func (a *Allocator) Free(agentID string) resources.Resources {
	ag, ok := a.agents[agentID]
	if !ok {
		return resources.Resources{}
	}
	return a.free(ag)
}
