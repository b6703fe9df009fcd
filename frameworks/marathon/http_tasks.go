package marathon

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

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
		if s.st == nil || s.st.instances[id] == nil {
			s.mu.Unlock()
			marathonError(w, http.StatusNotFound, "Task '"+id+"' does not exist")
			return
		}
	}
	s.mu.Unlock()
	_, res, err := s.killInstances(r.Context(), body.IDs, queryBool(r, "scale"), forced(r))
	if err != nil {
		writeChangeError(w, err)
		return
	}
	writeResult(w, http.StatusOK, res)
}

// killInstances kills instances on request: each is replaced, or, with scale, its app wants
// one instance fewer.
func (s *Service) killInstances(ctx context.Context, ids []string, scale, force bool) ([]taskWire, changeResult, error) {
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
	c := &change{}
	var out []taskWire
	s.mu.Lock()
	st := s.st
	if st == nil {
		s.mu.Unlock()
		return nil, res, errNotReady
	}
	var kills []api.KillTask
	for _, id := range ids {
		in := st.instances[id]
		if in == nil {
			continue
		}
		out = append(out, taskWireOf(in, s.cfg.Role, st))
		if in.rec.Killing {
			continue
		}
		in.rec.Killing = true
		st.touch(in.rec.AppID)
		c.put(instanceKey(id), in.rec)
		kills = append(kills, api.KillTask{TaskID: id, AgentID: in.rec.AgentID})
	}
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

func (s *Service) tasksJSONLocked(st *leaderState, appID string) []taskWire {
	out := []taskWire{}
	for _, in := range st.appInstances(appID) {
		out = append(out, taskWireOf(in, s.cfg.Role, st))
	}
	return out
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
	out := []taskWire{}
	for _, appID := range sortedKeys(st.apps) {
		for _, in := range st.appInstances(appID) {
			if len(statuses) == 0 || statuses[string(in.state)] {
				out = append(out, taskWireOf(in, s.cfg.Role, st))
			}
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"tasks": out})
}
