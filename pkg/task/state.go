// Package task holds the task states and reasons Agora shares with Mesos and Marathon, and the
// one function that says which state may follow which.
package task

import (
	"encoding/json"
	"fmt"
	"strings"
)

// State is a task's state with Mesos's name; its JSON is that name ("TASK_RUNNING"), as in
// Mesos's and Marathon's APIs.
type State string

// The states.
const (
	Staging        State = "TASK_STAGING"  // the master sent the task to the agent
	Starting       State = "TASK_STARTING" // the agent is starting its container
	Running        State = "TASK_RUNNING"
	Killing        State = "TASK_KILLING" // asked to stop; in its grace period
	Finished       State = "TASK_FINISHED"
	Failed         State = "TASK_FAILED"
	Killed         State = "TASK_KILLED"
	Error          State = "TASK_ERROR" // could not be launched as described
	Lost           State = "TASK_LOST"
	Dropped        State = "TASK_DROPPED" // never reached the agent
	Unreachable    State = "TASK_UNREACHABLE"
	Gone           State = "TASK_GONE"
	GoneByOperator State = "TASK_GONE_BY_OPERATOR"
	Unknown        State = "TASK_UNKNOWN" // the master knows nothing of it (reconciliation)
)

// All lists every state.
var All = []State{Staging, Starting, Running, Killing, Finished, Failed, Killed, Error, Lost, Dropped, Unreachable, Gone, GoneByOperator, Unknown}

// IsTerminal reports whether the state is final: the task is over and its resources are free.
func (s State) IsTerminal() bool {
	switch s {
	case Finished, Failed, Killed, Error, Lost, Dropped, Gone, GoneByOperator:
		return true
	}
	return false
}

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	for _, v := range All {
		if s == v {
			return true
		}
	}
	return false
}

// The lifecycle. Transitions happen only where CanTransition allows them:
//
//	STAGING --> STARTING --> RUNNING --> KILLING
//	   |           |            |           |
//	   +-----------+------------+-----------+--> any terminal state:
//	   |           |            |           |    FINISHED FAILED KILLED ERROR
//	   |           |            |           |    LOST DROPPED GONE GONE_BY_OPERATOR
//	   v           v            v           v
//	   '---------> UNREACHABLE <-------------'   (the agent is cut off)
//	                  |
//	                  +--> RUNNING or KILLING (the agent came back) or any terminal state
//
//	UNKNOWN (what reconciliation answers for a task the master does not know)
//	   --> any non-terminal or terminal state, once the agent reports it
//
// Terminal states never change. A repeat of the same non-terminal state is allowed, as
// agents re-send updates until they are acknowledged.

// CanTransition reports whether a task in state from may move to state to.
func CanTransition(from, to State) bool {
	if !from.Valid() || !to.Valid() || from.IsTerminal() {
		return false
	}
	if from == to {
		return true
	}
	if to.IsTerminal() {
		return true
	}
	switch from {
	case Staging:
		return to == Starting || to == Running || to == Killing || to == Unreachable
	case Starting:
		return to == Running || to == Killing || to == Unreachable
	case Running:
		return to == Killing || to == Unreachable
	case Killing:
		return to == Unreachable
	case Unreachable:
		return to == Running || to == Killing
	case Unknown:
		return to != Unknown
	}
	return false
}

// ParseState reads a state: "TASK_RUNNING", "RUNNING" or "running".
func ParseState(s string) (State, error) {
	v := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(v, "TASK_") {
		v = "TASK_" + v
	}
	if st := State(v); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("task: unknown state %q", s)
}

// UnmarshalJSON accepts only known states.
func (s *State) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("task: state: %w", err)
	}
	st, err := ParseState(v)
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// Reason says why a task reached its state, with Mesos's names.
type Reason string

// The reasons Agora reports.
const (
	ReasonCommandExecutorFailed   Reason = "REASON_COMMAND_EXECUTOR_FAILED"
	ReasonContainerLimitationMem  Reason = "REASON_CONTAINER_LIMITATION_MEMORY"
	ReasonContainerLaunchFailed   Reason = "REASON_CONTAINER_LAUNCH_FAILED"
	ReasonTaskInvalid             Reason = "REASON_TASK_INVALID"
	ReasonAgentRemoved            Reason = "REASON_AGENT_REMOVED"
	ReasonAgentDisconnected       Reason = "REASON_AGENT_DISCONNECTED"
	ReasonReconciliation          Reason = "REASON_RECONCILIATION"
	ReasonExecutorTerminated      Reason = "REASON_EXECUTOR_TERMINATED"
	ReasonTaskKilledDuringLaunch  Reason = "REASON_TASK_KILLED_DURING_LAUNCH"
	ReasonFrameworkRemoved        Reason = "REASON_FRAMEWORK_REMOVED"
	ReasonInvalidOffers           Reason = "REASON_INVALID_OFFERS"
	ReasonHealthCheckUpdated      Reason = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
	ReasonContainerPreemptedOrOOM Reason = "REASON_CONTAINER_PREEMPTED"
)

// Source says who reported a status update.
type Source string

// The sources.
const (
	SourceMaster   Source = "SOURCE_MASTER"
	SourceAgent    Source = "SOURCE_AGENT"
	SourceExecutor Source = "SOURCE_EXECUTOR"
)
