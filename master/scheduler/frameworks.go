package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/master/allocator"
	"github.com/agora-sched/agora/master/registry"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// Frameworks: subscriptions (committed to the framework registry first), disconnections,
// teardown, and who owns a framework.

// RegisterEmbedded names a framework embedded in the masters (by the name it subscribes with).
// A framework of that name that an older build registered, with no principal, is then the
// embedded one's: no API caller can take its id before it subscribes again.
func (s *Scheduler) RegisterEmbedded(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.embedded == nil {
		s.embedded = map[string]bool{}
	}
	s.embedded[name] = true
}

// Subscribe registers a framework, or re-registers it when info.ID is set (a failover, or a new
// leader): the registration is committed to the replicated registry before SUBSCRIBED is the
// session's first event. A subscription of a framework that has one open replaces it.
// info.Principal is who asks (set by the caller, never taken from a request's body): a framework
// registered by another principal is refused with an *OwnerError.
func (s *Scheduler) Subscribe(ctx context.Context, info api.FrameworkInfo) (*Session, error) {
	if err := validateFrameworkInfo(&info); err != nil {
		return nil, err
	}
	if info.Principal == "" {
		return nil, errors.New("master: a subscription without a principal")
	}
	s.mu.Lock()
	t := s.term
	if t == nil {
		s.mu.Unlock()
		return nil, ErrNotReady
	}
	reregistered := info.ID != ""
	if reregistered {
		fw := t.frameworks[info.ID]
		if fw == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %s (torn down, or removed after its failover timeout); subscribe without an id", ErrUnknownFramework, info.ID)
		}
		if err := checkOwner(fw.info, s.embedded, info.Principal); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if fw.info.Role != info.Role {
			s.mu.Unlock()
			return nil, &api.FieldError{Field: "subscribe.framework_info.role", Msg: fmt.Sprintf("is %q; it cannot change to %q", fw.info.Role, info.Role)}
		}
		info.RegisteredAt = fw.info.RegisteredAt
	} else {
		info.ID = string(s.ids.Framework())
	}
	s.mu.Unlock()

	info, err := registry.RegisterFramework(ctx, s.store, info)
	if err != nil {
		return nil, err
	}
	streamID, err := s.ids.UUID()
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.term != t {
		return nil, ErrNotReady
	}
	fw := t.frameworks[info.ID]
	if fw == nil {
		if reregistered {
			return nil, fmt.Errorf("%w: %s was removed meanwhile", ErrUnknownFramework, info.ID)
		}
		fw = &fwEntry{}
		t.frameworks[info.ID] = fw
		if err := t.alloc.AddFramework(info.ID, info.Role); err != nil {
			return nil, err
		}
	}
	fw.info = info
	if fw.session != nil {
		fw.session.end(fmt.Errorf("%w: the framework subscribed again on another stream", ErrSubscriptionEnded))
	}
	ss := newSession(s, info.ID, streamID)
	fw.session, fw.disconnectedAt = ss, time.Time{}
	if err := t.alloc.ActivateFramework(info.ID); err != nil {
		return nil, err
	}
	ss.push(api.Event{Type: api.EventSubscribed, Subscribed: &api.Subscribed{
		FrameworkID: info.ID, HeartbeatIntervalSeconds: s.cfg.HeartbeatInterval.Seconds(), Reregistered: reregistered, MasterID: s.masterID,
	}})
	// Updates sent to the session before and not acknowledged go out again now, rather than
	// when their agents resend them.
	for _, e := range t.tasks {
		if e.info.FrameworkID == info.ID && e.unacked != nil {
			ss.push(api.Event{Type: api.EventUpdate, Update: &api.Update{Status: *e.unacked}})
		}
	}
	s.logger.Info("framework subscribed", "framework", info.ID, "name", info.Name, "role", info.Role, "principal", info.Principal, "reregistered", reregistered)
	s.poke()
	return ss, nil
}

// disconnect marks a session's framework disconnected: its offers go back and its failover
// timeout starts (a framework with none is removed at the next step).
func (s *Scheduler) disconnect(ss *Session) {
	ss.end(fmt.Errorf("%w: disconnected", ErrSubscriptionEnded))
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return
	}
	fw := t.frameworks[ss.fwID]
	if fw == nil || fw.session != ss {
		return
	}
	now := s.cfg.Clock.Now()
	fw.session, fw.disconnectedAt = nil, now
	for oid, o := range t.offers {
		if o.offer.FrameworkID == ss.fwID {
			s.rescindLocked(t, oid, now)
		}
	}
	if err := t.alloc.DeactivateFramework(ss.fwID); err != nil {
		s.logger.Error("disconnect: allocator", "framework", ss.fwID, "err", err)
	}
	s.logger.Info("framework disconnected", "framework", ss.fwID, "failover_timeout", failoverTimeout(fw.info))
	s.poke()
}

// Session finds a framework's open session for an HTTP call of principal, checking that the
// framework is the principal's and the stream id is its open subscription's. The stream id, a
// random uuid only its subscriber was told, would be enough; the principal is checked as well,
// so that a stream id that leaks (a log, a proxy) is of no use to another principal.
func (s *Scheduler) Session(fwID, streamID, principal string) (*Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return nil, ErrNotReady
	}
	fw := t.frameworks[fwID]
	if fw == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownFramework, fwID)
	}
	if err := checkOwner(fw.info, s.embedded, principal); err != nil {
		return nil, err
	}
	if fw.session == nil || fw.session.streamID != streamID {
		return nil, ErrNotSubscribed
	}
	return fw.session, nil
}

// removeFrameworkLocked tears a framework down: its tasks are killed, its offers and
// resources go back, its session ends, and it leaves the registry.
func (s *Scheduler) removeFrameworkLocked(t *schedTerm, fw *fwEntry, why string) {
	fwID := fw.info.ID
	for oid, o := range t.offers {
		if o.offer.FrameworkID == fwID {
			delete(t.offers, oid)
		}
	}
	var stillRunning []*taskEntry
	for _, e := range t.tasks {
		if e.info.FrameworkID != fwID {
			continue
		}
		if e.unacked != nil {
			// Nobody will acknowledge it now: the master does, so that the agent's next
			// updates (the kills below) are not held behind it.
			s.ackOnAgentLocked(t, e.agentID, e.info.TaskID, e.unacked.UUID)
			e.unacked = nil
		}
		if e.status.State.IsTerminal() {
			continue
		}
		if e.heldBy == fwID {
			e.heldBy = "" // the allocator forgets the framework's holdings below
			stillRunning = append(stillRunning, e)
		}
		if ag := t.agents[e.agentID]; ag != nil && ag.state == agentActive && e.status.State != task.Staging {
			s.killOnAgentLocked(t, ag.info, e.info.TaskID, 0)
		} else {
			e.killRequested = true
		}
	}
	if err := t.alloc.RemoveFramework(fwID); err != nil {
		s.logger.Error("remove framework: allocator", "framework", fwID, "err", err)
	}
	delete(t.frameworks, fwID)
	for _, e := range stillRunning {
		s.holdLocked(t, e) // held as unmanaged until the kill ends them
	}
	if fw.session != nil {
		fw.session.end(fmt.Errorf("%w: framework %s was removed: %s", ErrSubscriptionEnded, fwID, why))
	}
	s.proposeLocked(t, registry.RemoveFramework(fwID))
	s.poke()
}

// knownCapabilities are the framework capabilities Agora acts on.
var knownCapabilities = []string{api.CapabilityPartitionAware}

// validateFrameworkInfo names the first field of a subscription that is wrong, and fills in
// the defaults.
func validateFrameworkInfo(fw *api.FrameworkInfo) error {
	const p = "subscribe.framework_info."
	fw.Name = strings.TrimSpace(fw.Name)
	switch {
	case fw.Name == "":
		return &api.FieldError{Field: p + "name", Msg: "is required"}
	case len(fw.Name) > 200:
		return &api.FieldError{Field: p + "name", Msg: "is longer than 200 characters"}
	case fw.FailoverTimeout < 0 || fw.FailoverTimeout > 365*24*3600:
		return &api.FieldError{Field: p + "failover_timeout", Msg: fmt.Sprintf("%v: must be 0 to a year, in seconds", fw.FailoverTimeout)}
	}
	if fw.ID != "" {
		if err := id.FrameworkID(fw.ID).Validate(); err != nil {
			return &api.FieldError{Field: p + "id", Msg: err.Error()}
		}
	}
	if fw.Role == "" {
		fw.Role = api.DefaultRole
	}
	if fw.Role != api.DefaultRole {
		if err := api.ValidateRole(fw.Role); err != nil {
			return &api.FieldError{Field: p + "role", Msg: err.Error()}
		}
	}
	for i, c := range fw.Capabilities {
		if !slices.Contains(knownCapabilities, c) {
			return &api.FieldError{Field: fmt.Sprintf("%scapabilities[%d]", p, i), Msg: fmt.Sprintf("%q is not a capability Agora knows (%s)", c, strings.Join(knownCapabilities, ", "))}
		}
	}
	return nil
}

// ownerOf is who may subscribe and call as a registered framework. A framework registered by a
// build before principals has none: if an embedded framework registers under its name
// (embedded), it is the embedded one's, so that no API caller can take it before the embedded
// framework subscribes again after the upgrade; otherwise the first principal that subscribes
// again with its id becomes its owner ("" here: anyone).
func ownerOf(fw api.FrameworkInfo, embedded map[string]bool) string {
	if fw.Principal == "" && embedded[fw.Name] {
		return auth.Embedded
	}
	return fw.Principal
}

// checkOwner refuses a principal that is not the framework's owner.
func checkOwner(fw api.FrameworkInfo, embedded map[string]bool, caller string) error {
	if owner := ownerOf(fw, embedded); owner != "" && owner != caller {
		return &registry.OwnerError{FrameworkID: fw.ID, Name: fw.Name, Owner: owner, Caller: caller}
	}
	return nil
}

// SetQuota gives the allocator a role's quota (one just committed), or takes it away (nil),
// and runs an allocation cycle soon. As Mesos does, outstanding offers of other roles are
// rescinded, all of an agent's at a time, until they hold what the guarantee lacks: resources
// offered before the guarantee was set would otherwise stay out of its reach until answered.
func (s *Scheduler) SetQuota(role string, q *api.Quota) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.term
	if t == nil {
		return // the next term reads it from the store
	}
	if q == nil {
		t.alloc.RemoveQuota(role)
		s.poke()
		return
	}
	t.alloc.SetQuota(role, allocator.Quota{Guarantee: q.Guarantee, Limit: q.Limit})
	lack := t.alloc.Lacking(role)
	byAgent := map[string][]string{}
	var agents []string
	for id, o := range t.offers {
		if fw := t.frameworks[o.offer.FrameworkID]; fw == nil || fw.info.Role == role {
			continue
		}
		if byAgent[o.offer.AgentID] == nil {
			agents = append(agents, o.offer.AgentID)
		}
		byAgent[o.offer.AgentID] = append(byAgent[o.offer.AgentID], id)
	}
	slices.Sort(agents)
	now := s.cfg.Clock.Now()
	var rescinded resources.Resources
	for _, ag := range agents {
		if rescinded.CPUs >= lack.CPUs && rescinded.Mem >= lack.Mem && rescinded.Disk >= lack.Disk {
			break
		}
		for _, id := range byAgent[ag] {
			rescinded = rescinded.Add(t.offers[id].offer.Resources)
			s.rescindLocked(t, id, now)
		}
	}
	s.poke()
}
