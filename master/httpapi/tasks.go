package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
)

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
// records the update and passes it to the task's framework; the answer says whether it is
// acknowledged already (no framework waits for it) or the framework's acknowledgement will
// come to the agent later (POST /v1/acknowledge on the agent). Either way it was received.
func (a *apiHandler) postStatus(w http.ResponseWriter, r *http.Request) {
	var st api.TaskStatus
	if err := httpjson.Decode(r, &st); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	if err := validateStatus(st); err != nil {
		var fe *api.FieldError
		errors.As(err, &fe)
		httpjson.FieldError(w, http.StatusUnprocessableEntity, fe.Field, fe.Msg)
		return
	}
	st.AgentID = r.PathValue("id")
	acked, err := a.m.sched.AgentStatus(st.AgentID, st)
	switch {
	case errors.Is(err, scheduler.ErrAgentUnregistered):
		writeError(w, http.StatusNotFound, "agent "+st.AgentID+": "+err.Error())
		return
	case err != nil:
		writeSchedulerError(w, err)
		return
	}
	a.logger.Debug("status update", "agent", st.AgentID, "task", st.TaskID, "state", st.State, "acknowledged", acked)
	writeJSON(w, http.StatusOK, api.StatusAck{Acknowledged: acked, UUID: st.UUID})
}

// listTasks is GET /v1/tasks: every task the leader knows of, with its latest state. It is
// answered by the leader, whose memory holds the table; followers forward it.
func (a *apiHandler) listTasks(w http.ResponseWriter, r *http.Request) {
	var states []string
	for _, v := range r.URL.Query()["state"] {
		st, err := task.ParseState(v)
		if err != nil {
			httpjson.FieldError(w, http.StatusBadRequest, "state", err.Error())
			return
		}
		states = append(states, string(st))
	}
	out := []api.TaskStatus{}
	list, err := a.m.sched.TasksView()
	if err != nil {
		writeSchedulerError(w, err)
		return
	}
	for _, st := range list {
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
