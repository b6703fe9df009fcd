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
//     all of one agent's free resources for one framework, and counts as allocated to that
//     framework from then on — an offered resource is never offered again meanwhile.
//  4. Recover(...) whatever comes back: a declined offer or the unused part of an accepted one
//     (with the framework's refuse filter for that agent), a rescinded offer, an ended task.
//  5. Suppress and Revive a framework's wish for offers; DeactivateAgent stops offers of an
//     agent (unreachable, draining) and ActivateAgent resumes them.
//
// Ordering: for each agent with something free, in an order shuffled anew each cycle, the role
// with the lowest weighted dominant share among those with a framework that may take this
// agent, then its framework with the lowest dominant share (ties by name). A share is the
// largest fraction of the cluster's cpus, mem or disk allocated to the role or framework.
// Frameworks and roles sit in heaps by share, so a cycle costs about agents × log(frameworks).
package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/agora-sched/agora/pkg/resources"
)

// DefaultRefuse is how long a decline keeps an agent's resources from the framework when it
// names no time (Mesos's default filter).
const DefaultRefuse = 5 * time.Second

// Minimum offer: resources below both amounts are not worth offering (Mesos's defaults).
const (
	MinCPUs = 0.01
	MinMem  = 32
)

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
}

type frameworkState struct {
	id         string
	role       *roleState
	allocated  resources.Resources  // scalars, all agents
	suppressed bool                 // by the framework: no offers wanted
	inactive   bool                 // by the master: disconnected, no offers until it is back
	filters    map[string]time.Time // agent id → refused until
	share      float64
	index      int // in role.heap; -1 when out
}

type roleState struct {
	name      string
	weight    float64
	allocated resources.Resources
	heap      fwHeap // frameworks that want offers
	share     float64
	index     int // in the allocator's role heap; -1 when out
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
	total      resources.Resources // scalars of every agent, active or not
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
	r := a.roles[role]
	if r == nil {
		r = &roleState{name: role, weight: 1, index: -1}
		a.roles[role] = r
	}
	fw := &frameworkState{id: id, role: r, filters: map[string]time.Time{}, index: -1}
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
func (a *Allocator) SetWeight(role string, w float64) error {
	if !(w > 0) {
		return fmt.Errorf("allocator: weight of %s must be > 0, got %v", role, w)
	}
	r := a.roles[role]
	if r == nil {
		r = &roleState{name: role, index: -1}
		a.roles[role] = r
	}
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
// of an accepted one, a rescinded offer, an ended task). A refuse time above zero keeps this
// agent from the framework until now+refuse.
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
	left, _ := held.Subtract(res)
	if left.IsEmpty() {
		delete(ag.byFw, fwID)
	} else {
		ag.byFw[fwID] = left
	}
	ag.allocated, _ = ag.allocated.Subtract(res)
	a.release(fw, res)
	if refuse > 0 {
		fw.filters[agentID] = now.Add(refuse)
	}
	return nil
}

// Cycle offers every active agent's free resources, each to the framework DRF puts first among
// those that may take it now.
func (a *Allocator) Cycle(now time.Time) []Offer {
	if a.roleHeap.Len() == 0 {
		return nil // nobody wants offers
	}
	var offers []Offer
	order := slices.Clone(a.agentIDs)
	a.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for _, id := range order {
		ag := a.agents[id]
		if !ag.active {
			continue
		}
		free, err := ag.total.Subtract(ag.allocated)
		if err != nil || (free.CPUs < MinCPUs && free.Mem < MinMem) {
			continue
		}
		fw := a.pick(ag, now)
		if fw == nil {
			continue
		}
		a.hold(fw, ag, free)
		offers = append(offers, Offer{FrameworkID: fw.id, AgentID: id, Resources: free})
	}
	return offers
}

// eligible says whether the framework may be offered the agent now.
func (fw *frameworkState) eligible(agentID string, now time.Time) bool {
	until, ok := fw.filters[agentID]
	if !ok {
		return true
	}
	if !now.Before(until) {
		delete(fw.filters, agentID)
		return true
	}
	return false
}

// pick finds, without changing any share, the framework DRF puts first for this agent: the
// lowest role, then its lowest framework, among those eligible.
func (a *Allocator) pick(ag *agentState, now time.Time) *frameworkState {
	var rolesAside []*roleState
	defer func() {
		for _, r := range rolesAside {
			a.roleHeap.push(r)
		}
	}()
	for a.roleHeap.Len() > 0 {
		r := a.roleHeap.pop()
		rolesAside = append(rolesAside, r)
		var fwsAside []*frameworkState
		var found *frameworkState
		for r.heap.Len() > 0 {
			fw := r.heap.pop()
			fwsAside = append(fwsAside, fw)
			if fw.eligible(ag.id, now) {
				found = fw
				break
			}
		}
		for _, fw := range fwsAside {
			r.heap.push(fw)
		}
		if found != nil {
			return found
		}
	}
	return nil
}

// hold counts res on the agent as the framework's.
func (a *Allocator) hold(fw *frameworkState, ag *agentState, res resources.Resources) {
	ag.allocated = ag.allocated.Add(res)
	ag.byFw[fw.id] = ag.byFw[fw.id].Add(res)
	fw.allocated = fw.allocated.Add(scalars(res))
	fw.role.allocated = fw.role.allocated.Add(scalars(res))
	a.reshare(fw)
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

// Free is what the agent has that nobody holds.
func (a *Allocator) Free(agentID string) resources.Resources {
	ag, ok := a.agents[agentID]
	if !ok {
		return resources.Resources{}
	}
	free, _ := ag.total.Subtract(ag.allocated)
	return free
}
