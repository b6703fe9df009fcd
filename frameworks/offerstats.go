package frameworks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/hostaccess"
	"github.com/agora-sched/agora/pkg/resources"
)

// Why something waits. A framework judges every offer against what waits for one (an app's
// instances, a job's run); an offer that fits none of it is declined, and each thing it did not
// fit records why in its OfferStats: Marathon's reason names (NoOfferMatchReason), each with
// Agora's words for the particular cause. The stats are Marathon's: offers processed and unused
// since the launch attempt began, the reasons summed over it, and the last unused offer of each
// agent. They live in the leader's memory only, as Marathon's do, and start over with each launch
// attempt.

// Reason is Marathon's name for why an offer was not used (its NoOfferMatchReason).
type Reason string

// Marathon's reasons, in the order of its reason funnel: an offer that misses for several
// reasons counts, in the summaries, under the first of them in this order.
const (
	UnfulfilledRole                 Reason = "UnfulfilledRole"
	UnfulfilledConstraint           Reason = "UnfulfilledConstraint"
	NoCorrespondingReservationFound Reason = "NoCorrespondingReservationFound"
	AgentMaintenance                Reason = "AgentMaintenance"
	InsufficientCpus                Reason = "InsufficientCpus"
	InsufficientMemory              Reason = "InsufficientMemory"
	InsufficientDisk                Reason = "InsufficientDisk"
	InsufficientGpus                Reason = "InsufficientGpus"
	InsufficientPorts               Reason = "InsufficientPorts"
	DeclinedScarceResources         Reason = "DeclinedScarceResources"
)

// reasonFunnel is Marathon's order of the reasons.
var reasonFunnel = [...]Reason{
	UnfulfilledRole, UnfulfilledConstraint, NoCorrespondingReservationFound, AgentMaintenance,
	InsufficientCpus, InsufficientMemory, InsufficientDisk, InsufficientGpus, InsufficientPorts,
	DeclinedScarceResources,
}

// funnelIndex is a reason's place in the funnel; -1 for a name Marathon does not have.
func funnelIndex(r Reason) int {
	return slices.Index(reasonFunnel[:], r)
}

// Mismatch is one reason an offer does not fit: Marathon's name for it and Agora's words for the
// cause ("needs 4 cpus, offered 2", "privileged: the agent runs no privileged containers ...").
type Mismatch struct {
	Reason Reason
	Detail string
}

// maxAgentsKept bounds the last unused offers kept for one thing that waits, one per agent:
// beyond it the oldest goes (what a thousand apps waiting on a thousand agents would keep
// stays bounded; the summary of the last offers is then of the latest agents').
const maxAgentsKept = 256

// OfferStats is what the offers judged for one launch attempt said: counts, reasons and the
// last unused offer of each agent. Decisions without I/O; not safe for concurrent use (the
// framework's lock guards it).
type OfferStats struct {
	since      time.Time
	processed  int
	unused     int
	lastUsed   time.Time
	lastUnused time.Time
	attempt    [len(reasonFunnel)]int    // unused offers by their first reason, since since
	detail     [len(reasonFunnel)]string // the latest words for each reason
	byAgent    map[string]unusedOffer    // the last unused offer of each agent
}

type unusedOffer struct {
	offer api.Offer
	why   []Mismatch
	at    time.Time
}

// NewOfferStats starts the stats of a launch attempt that began at since.
func NewOfferStats(since time.Time) *OfferStats {
	return &OfferStats{since: since} // byAgent made with the first unused offer
}

// Since is when the launch attempt began.
func (s *OfferStats) Since() time.Time { return s.since }

// Processed and Unused count the offers judged, and those not used, since the attempt began.
func (s *OfferStats) Processed() int { return s.processed }

// Unused counts the offers not used since the attempt began.
func (s *OfferStats) Unused() int { return s.unused }

// Used records an offer that was used (something was launched into it): its agent's last
// offer is no longer one that did not fit.
func (s *OfferStats) Used(o api.Offer, now time.Time) {
	s.processed++
	s.lastUsed = now
	delete(s.byAgent, o.AgentID)
}

// NotUsed records an offer that fit nothing of what waits, and why.
func (s *OfferStats) NotUsed(o api.Offer, why []Mismatch, now time.Time) {
	s.processed++
	s.unused++
	s.lastUnused = now
	for _, m := range why {
		if i := funnelIndex(m.Reason); i >= 0 && m.Detail != "" {
			s.detail[i] = m.Detail
		}
	}
	if i := firstReason(why); i >= 0 {
		s.attempt[i]++
	}
	if s.byAgent == nil {
		s.byAgent = map[string]unusedOffer{}
	}
	if _, ok := s.byAgent[o.AgentID]; !ok && len(s.byAgent) >= maxAgentsKept {
		oldest := ""
		for id, u := range s.byAgent {
			if oldest == "" || u.at.Before(s.byAgent[oldest].at) {
				oldest = id
			}
		}
		delete(s.byAgent, oldest)
	}
	s.byAgent[o.AgentID] = unusedOffer{offer: o, why: slices.Clone(why), at: now}
}

// QuietAfter is how long something may wait for its first offer before its waiting reason
// says that no offer came.
const QuietAfter = 10 * time.Second

// ShortOf says which of the scalars a task needs (cpus, mem, disk) what is left of an offer from
// host lacks: Marathon's InsufficientCpus, InsufficientMemory and InsufficientDisk.
func ShortOf(need, left resources.Resources, host string) []Mismatch {
	var why []Mismatch
	for _, r := range []struct {
		reason     Reason
		name       string
		need, have float64
		res        resources.Resources
	}{
		{InsufficientCpus, "cpus", need.CPUs, left.CPUs, resources.Resources{CPUs: need.CPUs}},
		{InsufficientMemory, "MiB of memory", need.Mem, left.Mem, resources.Resources{Mem: need.Mem}},
		{InsufficientDisk, "MiB of disk", need.Disk, left.Disk, resources.Resources{Disk: need.Disk}},
	} {
		if !left.Contains(r.res) {
			why = append(why, Mismatch{Reason: r.reason, Detail: fmt.Sprintf("needs %g %s, %s offers %g", r.need, r.name, host, r.have)})
		}
	}
	return why
}

// UnmetDetail is Agora's words for a need of a task an agent does not meet (hostaccess.Unmet):
// Marathon counts it as UnfulfilledConstraint.
func UnmetDetail(n hostaccess.Needs, u hostaccess.Unmet, host string) string {
	switch {
	case u.Part == hostaccess.PartPrivileged:
		return "privileged: " + host + " " + u.Why
	case u.Part == hostaccess.PartUser:
		return "user " + n.User + ": " + host + " " + u.Why
	case u.Part == hostaccess.PartVolume && u.Index < len(n.Volumes):
		return "hostPath " + n.Volumes[u.Index].HostPath + " on " + host + ": " + u.Why
	}
	return host + " " + u.Why
}

// firstReason is the funnel index of the first of the reasons in the funnel; -1 for none.
func firstReason(why []Mismatch) int {
	first := -1
	for _, m := range why {
		if i := funnelIndex(m.Reason); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// Timestamp is a time as Marathon writes it: UTC, milliseconds ("2016-02-28T16:41:41.090Z").
type Timestamp time.Time

// MarshalJSON writes Marathon's form.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format("2006-01-02T15:04:05.000Z") + `"`), nil
}

// UnmarshalJSON reads any RFC 3339 time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var v time.Time
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	*t = Timestamp(v)
	return nil
}

func stamp(t time.Time) *Timestamp {
	if t.IsZero() {
		return nil
	}
	ts := Timestamp(t)
	return &ts
}

// ProcessedOffersSummary is Marathon's processedOffersSummary of a queue entry.
type ProcessedOffersSummary struct {
	ProcessedOffersCount int        `json:"processedOffersCount"`
	UnusedOffersCount    int        `json:"unusedOffersCount"`
	LastUnusedOfferAt    *Timestamp `json:"lastUnusedOfferAt,omitempty"`
	LastUsedOfferAt      *Timestamp `json:"lastUsedOfferAt,omitempty"`
	// RejectSummaryLastOffers sums the last offer of each agent; RejectSummaryLaunchAttempt every
	// offer since the attempt began. Both list every reason in funnel order: processed is how
	// many offers reached that reason, declined how many stopped at it.
	RejectSummaryLastOffers    []DeclinedOfferStep `json:"rejectSummaryLastOffers"`
	RejectSummaryLaunchAttempt []DeclinedOfferStep `json:"rejectSummaryLaunchAttempt"`
}

// DeclinedOfferStep is one step of Marathon's reason funnel.
type DeclinedOfferStep struct {
	Reason    Reason `json:"reason"`
	Declined  int    `json:"declined"`
	Processed int    `json:"processed"`
}

// funnel is Marathon's declinedOfferSteps: each reason with the offers that reached it (those
// not declined for an earlier reason) and those declined for it.
func funnel(processed int, declined [len(reasonFunnel)]int) []DeclinedOfferStep {
	out := make([]DeclinedOfferStep, len(reasonFunnel))
	for i, r := range reasonFunnel {
		out[i] = DeclinedOfferStep{Reason: r, Declined: declined[i], Processed: processed}
		processed -= declined[i]
	}
	return out
}

// Summary is the stats as Marathon's processedOffersSummary.
func (s *OfferStats) Summary() ProcessedOffersSummary {
	var last [len(reasonFunnel)]int
	for _, u := range s.byAgent {
		if i := firstReason(u.why); i >= 0 {
			last[i]++
		}
	}
	return ProcessedOffersSummary{
		ProcessedOffersCount: s.processed, UnusedOffersCount: s.unused,
		LastUnusedOfferAt: stamp(s.lastUnused), LastUsedOfferAt: stamp(s.lastUsed),
		RejectSummaryLastOffers:    funnel(len(s.byAgent), last),
		RejectSummaryLaunchAttempt: funnel(s.processed, s.attempt),
	}
}

// UnusedOffer is Marathon's entry of lastUnusedOffers; Details is Agora's: its words for each
// reason, in the same order.
type UnusedOffer struct {
	Offer     Offer     `json:"offer"`
	Reason    []Reason  `json:"reason"`
	Details   []string  `json:"details"`
	Timestamp Timestamp `json:"timestamp"`
}

// Offer is an offer as Marathon shows it.
type Offer struct {
	ID         string           `json:"id"`
	Hostname   string           `json:"hostname"`
	AgentID    string           `json:"agentId"`
	Resources  []OfferResource  `json:"resources"`
	Attributes []AgentAttribute `json:"attributes"`
}

// OfferResource is one resource of an offer, as Marathon shows it.
type OfferResource struct {
	Name   string        `json:"name"`
	Role   string        `json:"role"`
	Scalar *float64      `json:"scalar,omitempty"`
	Ranges []NumberRange `json:"ranges,omitempty"`
}

// NumberRange is a range of ports.
type NumberRange struct {
	Begin uint64 `json:"begin"`
	End   uint64 `json:"end"`
}

// AgentAttribute is an agent's attribute as Marathon shows it (Agora's are text).
type AgentAttribute struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// OfferOf is an offer as Marathon shows it, its resources in the framework's role.
func OfferOf(o api.Offer, role string) Offer {
	out := Offer{ID: o.ID, Hostname: o.Hostname, AgentID: o.AgentID, Resources: []OfferResource{}, Attributes: []AgentAttribute{}}
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpus", o.Resources.CPUs}, {"mem", o.Resources.Mem}, {"disk", o.Resources.Disk}} {
		v := f.v
		out.Resources = append(out.Resources, OfferResource{Name: f.name, Role: role, Scalar: &v})
	}
	if len(o.Resources.Ports) > 0 {
		r := OfferResource{Name: "ports", Role: role}
		for _, p := range o.Resources.Ports {
			r.Ranges = append(r.Ranges, NumberRange{Begin: p.Begin, End: p.End})
		}
		out.Resources = append(out.Resources, r)
	}
	names := make([]string, 0, len(o.Attributes))
	for k := range o.Attributes {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		out.Attributes = append(out.Attributes, AgentAttribute{Name: k, Text: o.Attributes[k]})
	}
	return out
}

// LastUnusedOffers is Marathon's lastUnusedOffers: the last unused offer of each agent, newest
// first.
func (s *OfferStats) LastUnusedOffers(role string) []UnusedOffer {
	out := make([]UnusedOffer, 0, len(s.byAgent))
	for _, u := range s.byAgent {
		e := UnusedOffer{Offer: OfferOf(u.offer, role), Reason: []Reason{}, Details: []string{}, Timestamp: Timestamp(u.at)}
		for _, m := range u.why {
			e.Reason = append(e.Reason, m.Reason)
			e.Details = append(e.Details, m.Detail)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b UnusedOffer) int {
		if c := time.Time(b.Timestamp).Compare(time.Time(a.Timestamp)); c != 0 {
			return c
		}
		return strings.Compare(a.Offer.AgentID, b.Offer.AgentID)
	})
	return out
}

// Declined says in a line why offers were declined since the attempt began, "" when none was:
// "last 12 offers declined: 12 UnfulfilledConstraint (privileged: ...)", or "9 of the last 12
// offers declined: ..." when some were used; reasons by count, then funnel order.
func (s *OfferStats) Declined() string {
	if s.unused == 0 {
		return ""
	}
	type part struct {
		i, n int
	}
	var parts []part
	for i, n := range s.attempt {
		if n > 0 {
			parts = append(parts, part{i, n})
		}
	}
	slices.SortStableFunc(parts, func(a, b part) int { return b.n - a.n })
	words := make([]string, len(parts))
	for k, p := range parts {
		words[k] = fmt.Sprintf("%d %s", p.n, reasonFunnel[p.i])
		if d := s.detail[p.i]; d != "" {
			words[k] += " (" + d + ")"
		}
	}
	head := fmt.Sprintf("last %d %s declined", s.unused, Plural(s.unused, "offer", "offers"))
	if s.unused < s.processed {
		head = fmt.Sprintf("%d of the last %d offers declined", s.unused, s.processed)
	}
	return head + ": " + strings.Join(words, ", ")
}

// Plural is one or many, as n says.
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Silent says which agents make no offers at all, and why (Marathon's AgentMaintenance): those
// not active with the leader (unavailable: their container runtime does not answer; draining;
// unreachable). "" when every agent makes offers.
func Silent(agents []api.AgentView) string {
	var quiet []string
	for _, a := range agents {
		if a.RemovedAt != nil || a.State == "" || a.State == "active" {
			continue
		}
		name := a.Hostname
		if name == "" {
			name = a.ID
		}
		why := a.State
		if a.Unavailable != "" {
			why += ": " + a.Unavailable
		}
		quiet = append(quiet, name+" "+why)
	}
	if len(quiet) == 0 {
		return ""
	}
	return fmt.Sprintf("%d %s no offers: %s (%s)", len(quiet), Plural(len(quiet), "agent makes", "agents make"), AgentMaintenance, strings.Join(quiet, "; "))
}

// SilentAgents is Silent of the host's agents, "" when it cannot say. It reads the master:
// call it before taking a framework's locks.
func SilentAgents(ctx context.Context, h Host) string {
	agents, err := h.AgentViews(ctx)
	if err != nil {
		return ""
	}
	return Silent(agents)
}
