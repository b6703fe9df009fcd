package scheduler

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/agora-sched/agora/master/allocator"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// The term's state: what the leader knows for one leadership term (agents, frameworks, offers,
// tasks, questions waiting for an agent), the task table's books, and pure helpers on them.
// Nothing here calls out of the term: the other files build on it (doc.go lists them).

// schedTerm is the scheduler's state for one leadership term.
type schedTerm struct {
	ctx        context.Context // ends with the term
	wg         *sync.WaitGroup // the term's goroutines
	started    time.Time
	alloc      *allocator.Allocator
	agents     map[string]*agentEntry
	frameworks map[string]*fwEntry
	offers     map[string]*offerEntry
	tasks      map[string]*taskEntry
	byAgent    map[string]map[string]*taskEntry // agent id → its tasks; kept by putTask and dropTask
	ended      []string                         // ids of ended tasks kept for listing, oldest first
	// failedLaunch is, per framework and task name (launchKey), the id of the latest failed
	// launch kept for listing: the next one of the same name takes its place.
	failedLaunch map[launchKey]string
	// waiting holds explicit reconciliation questions about, and kills of, tasks on agents that
	// have not registered with this leader yet ("" : on no agent named), answered (or sent)
	// when they do or when they are declared unreachable.
	waiting map[string][]waitingQuery
	// reservations is the replicated record of each agent's reservations and volumes, as
	// committed (reservations.go); volOffer, the outstanding offer each free volume went into
	// (agent id/volume id; an entry whose offer is gone is stale).
	reservations map[string]*api.AgentReservations
	volOffer     map[string]string
	// pendingKills are kills that have not reached their agents yet, by task id
	// (killOnAgentLocked): sent again while the agent is active, until the task ends.
	pendingKills map[string]pendingKill
	// fresh are the ids of the offers the last cycle made (the scheduler's loop waits a little
	// for them to be answered before an event-started cycle).
	fresh []string
}

// agentState is where an agent stands with this leader.
//
//	recovered ──(registers)──► active ◄──(registers / gossip alive again)──┐
//	    │                        │                                          │
//	    └─(no registration in  ──┴─(gossip: dead or left, or no member  ──► unreachable ───┘
//	       --agent-reregister-timeout)  with its id for AgentGossipGrace)       │
//	                                       (--agent-removal-timeout)──► removed (tombstone)
//
//	recovered, active or unreachable ──(a new agent registers from its hostname and API
//	                                    address: sameHostAddress)──► removed at once (superseded)
//
// Apart from its state, an agent may say through gossip that it takes no tasks for now (its
// container runtime does not answer: agentEntry.unavailable): while active it then gets no
// offers, and shows as "unavailable"; its tasks keep their states.
type agentState int

const (
	agentRecovered   agentState = iota // known from the registry; not heard by this leader yet
	agentActive                        // registered with this leader and alive
	agentUnreachable                   // gone from gossip, or never came back
)

func (s agentState) String() string {
	return [...]string{"recovered", "active", "unreachable"}[s]
}

type agentEntry struct {
	info             api.Agent
	state            agentState
	inAlloc          bool      // added to the allocator (it registered with this leader once)
	unreachableSince time.Time // while unreachable
	missingSince     time.Time // while active and no gossip member carries its id
	fetching         bool      // asking it for its tasks after it came back
	// unavailable is why the agent says it takes no tasks now (gossip: its container runtime
	// does not answer), "" when it takes them: no offers of it meanwhile, its tasks as they are.
	unavailable string
}

type fwEntry struct {
	info           api.FrameworkInfo
	session        *Session  // nil while disconnected
	disconnectedAt time.Time // while disconnected
	suppressed     bool      // it asked for no offers
}

func (fw *fwEntry) partitionAware() bool {
	for _, c := range fw.info.Capabilities {
		if c == api.CapabilityPartitionAware {
			return true
		}
	}
	return false
}

type offerEntry struct {
	offer   api.Offer
	expires time.Time
}

type taskEntry struct {
	info    api.TaskInfo // FrameworkID set; Resources what it holds
	agentID string
	status  api.TaskStatus // the latest, from the agent or the master
	agentTS time.Time      // timestamp of the latest update from the agent
	// statuses are the states it went through, oldest first, as Mesos lists a task's statuses:
	// the latest update of each run of updates in one state, TASK_STAGING left out; at most
	// maxStatuses, the oldest dropped first. A new leader starts them from what agents report.
	statuses []StatusMark
	// unacked is the agent's update last sent to the framework and not acknowledged yet; it is
	// sent again when the framework subscribes again.
	unacked *api.TaskStatus
	// heldBy is the allocator framework its resources are held under: its own framework, or
	// unmanagedFramework for tasks no framework owns (any more); "" when not held.
	heldBy        string
	killRequested bool // a kill came while the launch was on its way
	ran           bool // it has been TASK_RUNNING
}

// StatusMark is one entry of a task's statuses.
type StatusMark struct {
	State     task.State
	Timestamp time.Time
	Healthy   *bool
	FromAgent bool // the agent's (or its executor's) update, not one the master made
}

// maxStatuses bounds a task's statuses: a task's life has a handful of states, but one on an
// agent that keeps being cut off and coming back would go UNREACHABLE, RUNNING, ... for ever.
const maxStatuses = 16

// noteStatus adds st to the task's statuses, taking the place of the last one when it is in
// the same state.
func (e *taskEntry) noteStatus(st api.TaskStatus) {
	if st.State == task.Staging {
		return
	}
	m := StatusMark{State: st.State, Timestamp: st.Timestamp, FromAgent: st.Source != task.SourceMaster}
	if st.Healthy != nil {
		h := *st.Healthy
		m.Healthy = &h
	}
	if n := len(e.statuses); n > 0 && e.statuses[n-1].State == st.State {
		e.statuses[n-1] = m
		return
	}
	if len(e.statuses) == maxStatuses {
		e.statuses = append(e.statuses[:0], e.statuses[1:]...)
	}
	e.statuses = append(e.statuses, m)
}

// launchKey names the launches that take one another's place when they fail: a framework's
// tasks of one name (an app's instances, a job's runs).
type launchKey struct{ fwID, name string }

// failedLaunch says whether a task ended without ever running, for a reason other than its
// own success or a kill: its launch failed (TASK_ERROR, TASK_DROPPED, TASK_FAILED before
// TASK_RUNNING, an agent that went away before it started, ...).
func (e *taskEntry) failedLaunch() bool {
	st := e.status.State
	return st.IsTerminal() && !e.ran && st != task.Finished && st != task.Killed && e.info.Name != ""
}

type waitingQuery struct {
	fwID, taskID, agentID string
	kill                  *api.KillTask // a kill, not a question
}

// unmanagedFramework holds, in the allocator, the resources of tasks that run on agents but
// belong to no framework the leader knows: launched on an agent's own API, or of a framework
// removed while they are being killed. It is never offered anything; its id cannot be a
// framework's (generated ids have no ':').
const unmanagedFramework = "agora:unmanaged"

// putTask adds a task to the table (replacing an ended one of the same id).
func (t *schedTerm) putTask(e *taskEntry) {
	id := e.info.TaskID
	if old := t.tasks[id]; old != nil && old != e {
		delete(t.byAgent[old.agentID], id)
	}
	t.tasks[id] = e
	m := t.byAgent[e.agentID]
	if m == nil {
		m = map[string]*taskEntry{}
		t.byAgent[e.agentID] = m
	}
	m[id] = e
}

// dropTask takes a task out of the table.
func (t *schedTerm) dropTask(id string) {
	if e := t.tasks[id]; e != nil {
		delete(t.byAgent[e.agentID], id)
		if len(t.byAgent[e.agentID]) == 0 {
			delete(t.byAgent, e.agentID)
		}
		delete(t.tasks, id)
	}
}

// keepEndedLocked lists a task that has just ended among the ended ones, and forgets what falls
// out of the history: the failed launch of the same framework and name it follows, and the
// oldest ended tasks beyond keep. A failed launch whose update its framework has yet to
// acknowledge is forgotten only once it has been (forgetReplacedLocked): until then it is
// resent when the framework subscribes again.
func (t *schedTerm) keepEndedLocked(e *taskEntry, keep int) {
	id := e.info.TaskID
	if e.failedLaunch() {
		k := launchKey{e.info.FrameworkID, e.info.Name}
		prev, ok := t.failedLaunch[k]
		t.failedLaunch[k] = id
		if old := t.tasks[prev]; ok && old != nil && prev != id {
			t.forgetReplacedLocked(old)
		}
	}
	t.ended = append(t.ended, id)
	for len(t.ended) > keep {
		gone := t.ended[0]
		t.ended = t.ended[1:]
		old := t.tasks[gone]
		if old == nil || !old.status.State.IsTerminal() {
			continue // forgotten already, or the id was launched again
		}
		if k := (launchKey{old.info.FrameworkID, old.info.Name}); t.failedLaunch[k] == gone {
			delete(t.failedLaunch, k)
		}
		t.dropTask(gone)
	}
}

// forgetReplacedLocked forgets an ended failed launch that a later one of its framework and
// name has taken the place of, once its framework has acknowledged it.
func (t *schedTerm) forgetReplacedLocked(e *taskEntry) {
	id := e.info.TaskID
	if !e.failedLaunch() || e.unacked != nil || t.failedLaunch[launchKey{e.info.FrameworkID, e.info.Name}] == id {
		return
	}
	t.dropTask(id)
	for i := len(t.ended) - 1; i >= 0; i-- { // most likely among the last ended
		if t.ended[i] == id {
			t.ended = slices.Delete(t.ended, i, i+1)
			break
		}
	}
}

// goLocked runs fn in a goroutine of the term (calls to agents, raft proposals).
func (t *schedTerm) goLocked(fn func(ctx context.Context)) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn(t.ctx)
	}()
}

// mayHaveLocked says whether a task this leader does not know may still be on the agent (or,
// with no agent named, on any agent): one that has not registered with this leader yet.
func (t *schedTerm) mayHaveLocked(agentID string) bool {
	if agentID == "" {
		return t.anyRecovered()
	}
	ag := t.agents[agentID]
	return ag != nil && ag.state == agentRecovered
}

func (t *schedTerm) anyRecovered() bool {
	for _, e := range t.agents {
		if e.state == agentRecovered {
			return true
		}
	}
	return false
}

func failoverTimeout(fw api.FrameworkInfo) time.Duration {
	return time.Duration(fw.FailoverTimeout * float64(time.Second))
}

// lostState is how a task that cannot be found ends for its framework: TASK_GONE for
// partition-aware frameworks, TASK_LOST for the others, as in Mesos.
func lostState(fw *fwEntry) task.State {
	if fw != nil && fw.partitionAware() {
		return task.Gone
	}
	return task.Lost
}

// masterStatus is an update the master makes itself.
func masterStatus(e *taskEntry, state task.State, reason task.Reason, msg string, now time.Time) api.TaskStatus {
	return api.TaskStatus{
		TaskID: e.info.TaskID, FrameworkID: e.info.FrameworkID, AgentID: e.agentID, State: state,
		Reason: reason, Source: task.SourceMaster, Message: msg, Timestamp: now, Healthy: e.status.Healthy,
	}
}

// reconciled is an agent's status as the master passes it on outside the agent's own update
// stream: it needs no acknowledgement.
func reconciled(st api.TaskStatus) api.TaskStatus {
	st.UUID = ""
	return st
}

func reconciledAnswer(st api.TaskStatus) api.TaskStatus {
	st = reconciled(st)
	st.Reason = task.ReasonReconciliation
	return st
}

func graceOf(ti api.TaskInfo) time.Duration {
	return time.Duration(ti.KillGracePeriodSeconds * float64(time.Second))
}
