package master

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
)

// taskTable is the leader's view of the tasks agents run. As in Mesos, agents are the truth:
// the table lives in the leader's memory, is filled by agents' registrations (each lists its
// tasks and their latest states) and by their status updates, and is rebuilt by a new leader as
// agents register with it. It is not replicated.
type taskTable struct {
	mu    sync.Mutex // guards tasks
	tasks map[string]api.TaskStatus
}

func newTaskTable() *taskTable { return &taskTable{tasks: map[string]api.TaskStatus{}} }

// registered replaces what the table holds of an agent with what its registration lists.
func (t *taskTable) registered(agentID string, tasks []api.TaskStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, st := range t.tasks {
		if st.AgentID == agentID && !st.State.IsTerminal() {
			delete(t.tasks, id)
		}
	}
	for _, st := range tasks {
		st.AgentID = agentID
		t.tasks[st.TaskID] = st
	}
}

// update records one status update; an update older than what the table holds (a resend after
// a newer one got through) changes nothing.
func (t *taskTable) update(st api.TaskStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.tasks[st.TaskID]; ok && st.Timestamp.Before(old.Timestamp) {
		return
	}
	t.tasks[st.TaskID] = st
}

func (t *taskTable) list() []api.TaskStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]api.TaskStatus, 0, len(t.tasks))
	for _, st := range t.tasks {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TaskID < out[j].TaskID })
	return out
}

// validateStatus names the first field of a status update that is wrong.
func validateStatus(st api.TaskStatus) error {
	switch {
	case st.TaskID == "":
		return &api.FieldError{Field: "task_id", Msg: "is required"}
	case st.UUID == "":
		return &api.FieldError{Field: "uuid", Msg: "is required"}
	case !st.State.Valid():
		return &api.FieldError{Field: "state", Msg: fmt.Sprintf("%q is not a task state", st.State)}
	case st.Timestamp.IsZero():
		return &api.FieldError{Field: "timestamp", Msg: "is required"}
	}
	return nil
}

// postStatus is POST /v1/agents/{id}/status on the leader (followers forward it). The leader
// records the update and acknowledges it. Frameworks come with the two-level scheduling issue:
// then the acknowledgement waits for the task's framework.
func (a *apiHandler) postStatus(w http.ResponseWriter, r *http.Request) {
	var st api.TaskStatus
	if err := httpjson.Decode(r, &st); err != nil {
		var bad *httpjson.BadRequest
		if errors.As(err, &bad) && bad.Field != "" {
			httpjson.FieldError(w, http.StatusBadRequest, bad.Field, bad.Msg)
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := validateStatus(st); err != nil {
		var fe *api.FieldError
		errors.As(err, &fe)
		httpjson.FieldError(w, http.StatusUnprocessableEntity, fe.Field, fe.Msg)
		return
	}
	st.AgentID = r.PathValue("id")
	if _, ok := a.m.agent(r.Context(), st.AgentID); !ok {
		writeError(w, http.StatusNotFound, "no agent "+st.AgentID+" is registered; register first")
		return
	}
	a.m.tasks.update(st)
	a.logger.Debug("status update", "agent", st.AgentID, "task", st.TaskID, "state", st.State)
	writeJSON(w, http.StatusOK, api.StatusAck{Acknowledged: true, UUID: st.UUID})
}

// listTasks is GET /v1/tasks: every task the leader knows of, with its latest state. It is
// answered by the leader, whose memory holds the table; followers forward it.
func (a *apiHandler) listTasks(w http.ResponseWriter, r *http.Request) {
	if !a.m.store.IsLeader() {
		a.forward(w, r)
		return
	}
	states := r.URL.Query()["state"]
	out := []api.TaskStatus{}
	for _, st := range a.m.tasks.list() {
		if len(states) > 0 && !containsState(states, st.State) {
			continue
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func containsState(states []string, s task.State) bool {
	for _, v := range states {
		if task.State(v) == s {
			return true
		}
	}
	return false
}
