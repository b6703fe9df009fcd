package marathon

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/endpoints"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
)

func (s *Service) deleteTasks(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs []string `json:"ids"`
	}
	if err := httpjson.Decode(r, &body); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	if len(body.IDs) == 0 {
		fieldError(w, http.StatusUnprocessableEntity, "ids", "name at least one task")
		return
	}
	s.mu.Lock()
	for _, id := range body.IDs {
		if s.st == nil || s.st.instances[id] == nil && s.st.suspendedNamed(id) == nil {
			s.mu.Unlock()
			marathonError(w, http.StatusNotFound, "Task '"+id+"' does not exist")
			return
		}
	}
	s.mu.Unlock()
	_, res, err := s.killInstances(r.Context(), body.IDs, queryBool(r, "scale"), queryBool(r, "wipe"), forced(r))
	if err != nil {
		writeChangeError(w, err)
		return
	}
	writeResult(w, http.StatusOK, res)
}

// killInstances kills instances on request: each is replaced, or, with scale, its app wants
// one instance fewer. With wipe, a resident instance's reservation and volumes are destroyed
// too (once its task has ended), and a suspended one (named by the id it is listed by) is
// wiped: its replacement starts afresh.
func (s *Service) killInstances(ctx context.Context, ids []string, scale, wipe, force bool) ([]any, changeResult, error) {
	var res changeResult
	if scale {
		byApp := map[string]int{}
		s.mu.Lock()
		for _, id := range ids {
			if s.st != nil && s.st.instances[id] != nil {
				byApp[s.st.instances[id].rec.AppID]++
			}
		}
		s.mu.Unlock()
		for appID, n := range byApp {
			var err error
			res, err = s.changeApp(ctx, appID, force, func(cur *appState) (Definition, error) {
				if cur == nil {
					return nil, &httpError{http.StatusNotFound, "App '" + appID + "' does not exist"}
				}
				d := cur.def.Merge(nil)
				d["instances"], _ = json.Marshal(max(0, cur.app.Instances-n))
				return d, nil
			})
			if err != nil {
				return nil, res, err
			}
		}
	}
	s.mu.Lock()
	st := s.st
	if st == nil {
		s.mu.Unlock()
		return nil, res, errNotReady
	}
	kr := st.requestKills(ids, wipe, s.cfg.Role, s.cfg.Clock.Now())
	out, c, kills, wiped := kr.out, kr.record, kr.kills, kr.wiped
	s.mu.Unlock()
	// Recorded before sent, as the planner's kills are: a new leader knows of every kill.
	if err := commit(ctx, s.store, c); err != nil {
		s.mu.Lock()
		if s.st == st {
			for _, k := range kills {
				if in := st.instances[k.TaskID]; in != nil {
					in.rec.Killing = false
				}
			}
			for _, r := range wiped {
				r.Destroy = false
			}
		}
		s.mu.Unlock()
		return out, res, err
	}
	for _, k := range kills {
		st.ss.Call(api.Call{Type: api.CallKill, Kill: &k})
	}
	s.poke()
	return out, res, nil
}

// killRequest is what a kill on request decided: the tasks to answer, the records to commit
// (instances marked Killing, reservations to destroy), then the kills to send.
type killRequest struct {
	out    []any
	record *change
	kills  []api.KillTask
	wiped  []*ReservationRecord
}

// requestKills decides, without I/O, the kills of tasks named on request (by an instance's id,
// or the id a suspended instance is listed by); with wipe, their reservations are to be
// destroyed. The caller holds s.mu; role is the framework's, as tasks show it; now, when the
// kills go (decide's killAgain sends them again if the tasks run on).
func (st *leaderState) requestKills(ids []string, wipe bool, role string, now time.Time) killRequest {
	kr := killRequest{record: &change{}}
	for _, id := range ids {
		in := st.instances[id]
		var r *ReservationRecord
		if in != nil {
			r = st.reservations[in.rec.Reservation]
		} else {
			r = st.suspendedNamed(id)
		}
		if wipe && r != nil && !r.Destroy {
			r.Destroy = true
			kr.record.put(reservationKey(r.ID), r)
			kr.wiped = append(kr.wiped, r)
			st.touch(r.AppID)
		}
		if in == nil {
			if r != nil {
				kr.out = append(kr.out, reservedTaskWireOf(r, role, st))
			}
			continue
		}
		kr.out = append(kr.out, taskWireOf(in, role, st))
		if in.rec.Killing {
			continue
		}
		in.rec.Killing = true
		in.killSent = now
		st.touch(in.rec.AppID)
		kr.record.put(instanceKey(in.rec.ID), in.rec)
		kr.kills = append(kr.kills, api.KillTask{TaskID: in.rec.ID, AgentID: in.rec.AgentID})
	}
	return kr
}

// tasksJSONLocked lists an app's tasks: its instances', then its suspended instances (resident
// apps' reservations no task runs on), as Marathon lists both.
func (s *Service) tasksJSONLocked(st *leaderState, appID string) []any {
	out := []any{}
	for _, in := range st.appInstances(appID) {
		out = append(out, taskWireOf(in, s.cfg.Role, st))
	}
	for _, r := range st.suspended(appID) {
		out = append(out, reservedTaskWireOf(r, s.cfg.Role, st))
	}
	return out
}

// suspendedNamed is the suspended instance a task id names: the id it is listed by (its latest
// task's), or its reservation's own (its first task's). A live instance is named by its task's
// id only.
func (st *leaderState) suspendedNamed(id string) *ReservationRecord {
	for _, r := range st.reservations {
		if (r.ID == id || r.LastTaskID == id) && !r.Destroy && !st.reservationInUse(r) {
			return r
		}
	}
	return nil
}

// taskOn is the live instance on a reservation, nil while it is suspended.
func (st *leaderState) taskOn(r *ReservationRecord) *instance {
	for _, in := range st.byApp[r.AppID] {
		if in.rec.Reservation == r.ID {
			return in
		}
	}
	return nil
}

func (s *Service) listTasks(w http.ResponseWriter, r *http.Request) {
	statuses := map[string]bool{}
	for _, v := range r.URL.Query()["status"] {
		for _, st := range strings.Split(v, ",") {
			state := task.State("TASK_" + strings.ToUpper(strings.TrimSpace(st)))
			if !state.Valid() {
				fieldError(w, http.StatusBadRequest, "status", "no task state "+strconv.Quote(st)+" (running, staging, killed, ...)")
				return
			}
			statuses[string(state)] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	if endpoints.WantsText(r) {
		s.tasksText(w, st, nil)
		return
	}
	out := []any{}
	for _, appID := range sortedKeys(st.apps) {
		for _, in := range st.appInstances(appID) {
			if len(statuses) == 0 || statuses[string(in.state)] {
				out = append(out, taskWireOf(in, s.cfg.Role, st))
			}
		}
		for _, r := range st.suspended(appID) {
			if t := reservedTaskWireOf(r, s.cfg.Role, st); len(statuses) == 0 || statuses[t.State] {
				out = append(out, t)
			}
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"tasks": out})
}
