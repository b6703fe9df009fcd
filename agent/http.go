package agent

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"syscall"
	"time"

	"context"

	"github.com/agora-sched/agora/agent/containerd"
	"github.com/agora-sched/agora/agent/logs"
	"github.com/agora-sched/agora/agent/volumes"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/version"
)

// routes is the agent's API:
//
//	GET  /ping, /v1/info
//	GET  /health                     200, or 503 with the reason while the container runtime
//	                                 is unavailable (the agent then refuses launches with 503)
//	GET  /v1/tasks                   every task, ended ones included
//	POST /v1/tasks                   launch (api.TaskInfo) → 202 with TASK_STARTING or TASK_ERROR
//	GET  /v1/tasks/{id}
//	POST /v1/tasks/{id}/kill         (api.KillRequest) → 202 with TASK_KILLING
//	GET  /v1/tasks/{id}/logs         ?stream=stdout|stderr&offset=N&length=L&follow=true
//	GET  /v1/tasks/{id}/stats        cgroup usage, Mesos's ResourceStatistics names
//	GET  /monitor/statistics         every running task's usage, as Mesos's agent answers it
//	GET  /v1/stats                   the agent's totals: resources, allocated, usage summed
//	POST /v1/acknowledge             (api.Acknowledgement) the master acknowledges an update
//	GET  /v1/volumes                 the persistent volumes ([]api.AgentVolume)
//	PUT  /v1/volumes/{id}            (api.PersistentVolume) make it if missing: 201, 200 when it
//	                                 is there with that size, 409 with another, 507 when the
//	                                 data dir has not the room
//	DELETE /v1/volumes/{id}          204 (gone, or never there); 409 while a live task mounts it
//	GET  /metrics                    Prometheus metrics (metrics.go)
//
// A call naming another agent id in api.HeaderAgentID (a master that means an agent this one
// replaced at its address) is answered 421 Misdirected Request, whatever its route (meant).
func (a *Agent) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "pong") })
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if why := a.tasks.runtimeUnavailable(); why != "" {
			httpjson.Write(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "reason": why, "registered": a.ID() != ""})
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]any{"status": "ok", "registered": a.ID() != ""})
	})
	mux.HandleFunc("GET /v1/info", a.handleInfo)
	mux.HandleFunc("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, a.tasks.list())
	})
	mux.HandleFunc("POST /v1/tasks", a.handleLaunch)
	mux.HandleFunc("GET /v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := a.tasks.get(r.PathValue("id"))
		if !ok {
			httpjson.Error(w, http.StatusNotFound, "no task "+r.PathValue("id")+" on this agent")
			return
		}
		httpjson.Write(w, http.StatusOK, t)
	})
	mux.HandleFunc("POST /v1/tasks/{id}/kill", a.handleKill)
	mux.Handle("GET /v1/tasks/{id}/logs", logs.Handler(
		func(r *http.Request) (string, bool) {
			_, ok := a.tasks.get(r.PathValue("id"))
			return a.exec.LogDir(r.PathValue("id")), ok
		},
		func(r *http.Request) bool {
			t, ok := a.tasks.get(r.PathValue("id"))
			return !ok || t.Status.State.IsTerminal() && !a.tasks.running(r.PathValue("id"))
		},
	))
	mux.HandleFunc("GET /v1/tasks/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, ok := a.tasks.get(id); !ok {
			httpjson.Error(w, http.StatusNotFound, "no task "+id+" on this agent")
			return
		}
		s, err := a.exec.Stats(r.Context(), id)
		if errors.Is(err, containerd.ErrNoTask) {
			httpjson.Error(w, http.StatusConflict, "task "+id+" is not running")
			return
		}
		if err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		httpjson.Write(w, http.StatusOK, s)
	})
	mux.HandleFunc("GET /monitor/statistics", a.handleStatistics)
	mux.HandleFunc("GET /v1/stats", a.handleTotals)
	mux.Handle("GET /metrics", a.metrics.handler())
	mux.HandleFunc("POST /v1/acknowledge", func(w http.ResponseWriter, r *http.Request) {
		var ack api.Acknowledgement
		if err := httpjson.Decode(r, &ack); err != nil {
			httpjson.DecodeError(w, err)
			return
		}
		if ack.TaskID == "" || ack.UUID == "" {
			httpjson.FieldError(w, http.StatusUnprocessableEntity, "uuid", "task_id and uuid are required")
			return
		}
		if err := a.tasks.acknowledge(ack.TaskID, ack.UUID); err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		httpjson.Write(w, http.StatusOK, ack)
	})
	mux.HandleFunc("GET /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, a.tasks.listVolumes())
	})
	mux.HandleFunc("PUT /v1/volumes/{id}", a.handlePutVolume)
	mux.HandleFunc("DELETE /v1/volumes/{id}", a.handleDeleteVolume)
	return mux
}

func (a *Agent) handleInfo(w http.ResponseWriter, r *http.Request) {
	total, allocated := a.tasks.usage()
	httpjson.Write(w, http.StatusOK, map[string]any{
		"role": "agent", "id": a.ID(), "hostname": a.cfg.Hostname, "http": a.cfg.HTTPAddr,
		"gossip": a.gossip.LocalAddr(), "resources": total, "allocated": allocated,
		"attributes": a.cfg.Attributes, "build": version.Get(), "unavailable": a.tasks.runtimeUnavailable(),
	})
}

func (a *Agent) handleLaunch(w http.ResponseWriter, r *http.Request) {
	var info api.TaskInfo
	if err := httpjson.Decode(r, &info); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	st, err := a.tasks.launch(info)
	var fe *api.FieldError
	var ce *conflictError
	switch {
	case errors.As(err, &ce):
		httpjson.FieldError(w, http.StatusConflict, ce.Field, ce.Msg)
	case errors.As(err, &fe):
		httpjson.FieldError(w, http.StatusUnprocessableEntity, fe.Field, fe.Msg)
	case errors.Is(err, ErrDuplicateTask):
		httpjson.FieldError(w, http.StatusConflict, "task_id", "a task "+info.TaskID+" exists on this agent")
	case errors.Is(err, ErrNotRegistered):
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error()+"; retry")
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
	case err != nil:
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
	default:
		httpjson.Write(w, http.StatusAccepted, st)
	}
}

// checkVolume checks a PUT /v1/volumes/{id}'s request: the id of the path, the body's (which
// may leave it out) and its size; errors name the field.
func checkVolume(id string, pv api.PersistentVolume) (api.PersistentVolume, error) {
	if err := api.ValidateVolumeID(id); err != nil {
		return pv, &api.FieldError{Field: "id", Msg: err.Error()}
	}
	if pv.ID != "" && pv.ID != id {
		return pv, &api.FieldError{Field: "id", Msg: fmt.Sprintf("%q is not the path's %q", pv.ID, id)}
	}
	pv.ID = id
	if !(pv.Size > 0) || math.IsInf(pv.Size, 0) || pv.Size > maxVolumeMiB {
		return pv, &api.FieldError{Field: "size", Msg: fmt.Sprintf("%g: want MiB, more than 0 and at most %d", pv.Size, maxVolumeMiB)}
	}
	return pv, nil
}

// maxVolumeMiB bounds a volume's size (1 PiB): what no disk has is a mistake.
const maxVolumeMiB = 1 << 30

func (a *Agent) handlePutVolume(w http.ResponseWriter, r *http.Request) {
	var pv api.PersistentVolume
	if err := httpjson.Decode(r, &pv); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	pv, err := checkVolume(r.PathValue("id"), pv)
	if err != nil {
		fe := err.(*api.FieldError)
		httpjson.FieldError(w, http.StatusBadRequest, fe.Field, fe.Msg)
		return
	}
	v, made, err := a.vols.Ensure(pv)
	switch {
	case errors.Is(err, volumes.ErrSizeConflict):
		httpjson.FieldError(w, http.StatusConflict, "size", err.Error())
	case errors.Is(err, volumes.ErrDestroying), errors.Is(err, volumes.ErrStray):
		httpjson.FieldError(w, http.StatusConflict, "id", err.Error())
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EFBIG):
		httpjson.FieldError(w, http.StatusInsufficientStorage, "size", err.Error())
	case err != nil:
		httpjson.Error(w, http.StatusInternalServerError, err.Error())
	default:
		code := http.StatusOK
		if made {
			code = http.StatusCreated
		}
		av := api.AgentVolume{PersistentVolume: v.PersistentVolume, Path: a.vols.Root(v.ID)}
		av.Used, _ = a.vols.Usage(v)
		httpjson.Write(w, code, av)
	}
}

func (a *Agent) handleDeleteVolume(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := api.ValidateVolumeID(id); err != nil {
		httpjson.FieldError(w, http.StatusBadRequest, "id", err.Error())
		return
	}
	err := a.tasks.destroyVolume(id)
	switch {
	case errors.Is(err, ErrVolumeInUse):
		httpjson.FieldError(w, http.StatusConflict, "id", err.Error())
	case err != nil:
		httpjson.Error(w, http.StatusInternalServerError, err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *Agent) handleKill(w http.ResponseWriter, r *http.Request) {
	var req api.KillRequest
	if r.ContentLength != 0 {
		if err := httpjson.Decode(r, &req); err != nil {
			httpjson.DecodeError(w, err)
			return
		}
	}
	if req.GracePeriodSeconds < 0 {
		httpjson.FieldError(w, http.StatusUnprocessableEntity, "grace_period_seconds", "must not be negative")
		return
	}
	st, err := a.tasks.kill(r.PathValue("id"), time.Duration(req.GracePeriodSeconds*float64(time.Second)))
	switch {
	case errors.Is(err, ErrNoSuchTask):
		httpjson.Error(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrTaskEnded):
		httpjson.Write(w, http.StatusConflict, map[string]any{"message": err.Error(), "status": st})
	case err != nil:
		httpjson.Error(w, http.StatusServiceUnavailable, err.Error())
	default:
		httpjson.Write(w, http.StatusAccepted, st)
	}
}

// taskStats is one running task's usage, with the limits it was given.
type taskStats struct {
	ExecutorID  string           `json:"executor_id"`
	FrameworkID string           `json:"framework_id"`
	Source      string           `json:"source"`
	Statistics  containerd.Stats `json:"statistics"`
}

// runningStats reads the usage of every running task, by id.
func (a *Agent) runningStats(r *http.Request) []taskStats {
	out := []taskStats{}
	for _, t := range a.tasks.list() {
		if t.Status.State.IsTerminal() {
			continue
		}
		s, err := a.exec.Stats(r.Context(), t.Info.TaskID)
		if err != nil {
			continue // ended meanwhile, or still launching
		}
		// Mesos reports the limits the task was given.
		s.CPUsLimit = t.Info.Resources.CPUs
		s.MemLimitBytes = uint64(t.Info.Resources.Mem * (1 << 20))
		out = append(out, taskStats{ExecutorID: t.Info.TaskID, FrameworkID: t.Info.FrameworkID, Source: t.Info.Name, Statistics: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ExecutorID < out[j].ExecutorID })
	return out
}

// handleStatistics answers as Mesos's agent /monitor/statistics: one entry per running task.
func (a *Agent) handleStatistics(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, a.runningStats(r))
}

// handleTotals is GET /v1/stats: what the agent has, what its tasks hold, and what they use.
func (a *Agent) handleTotals(w http.ResponseWriter, r *http.Request) {
	total, allocated := a.tasks.usage()
	var used containerd.Stats
	stats := a.runningStats(r)
	for _, t := range stats {
		s := t.Statistics
		used.CPUsUserTimeSecs += s.CPUsUserTimeSecs
		used.CPUsSystemTimeSecs += s.CPUsSystemTimeSecs
		used.CPUsLimit += s.CPUsLimit
		used.CPUsThrottledSecs += s.CPUsThrottledSecs
		used.MemTotalBytes += s.MemTotalBytes
		used.MemRSSBytes += s.MemRSSBytes
		used.MemCacheBytes += s.MemCacheBytes
		used.MemLimitBytes += s.MemLimitBytes
		used.Processes += s.Processes
		used.Timestamp = max(used.Timestamp, s.Timestamp)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{
		"resources": total, "allocated": allocated, "tasks_running": len(stats), "usage": used,
	})
}

// serve answers the agent's API (see routes) until ctx ends.
func (a *Agent) serve(ctx context.Context) {
	srv := &http.Server{Handler: a.metrics.http.Wrap(httpjson.LimitBody(a.guard().Middleware(a.meant(a.routes())))), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.logger.Error("agent API", "err", err)
	}
}

// meant answers 421 to a call that names another agent id than this agent's (api.HeaderAgentID):
// the caller means an agent that this one replaced at its address.
func (a *Agent) meant(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := r.Header.Get(api.HeaderAgentID); want != "" && want != a.ID() {
			self := "agent " + a.ID()
			if a.ID() == "" {
				self = "an agent that has not registered yet"
			}
			httpjson.Error(w, http.StatusMisdirectedRequest, fmt.Sprintf("%s is %s, not agent %s: that agent is gone from this address (its data dir was lost?)", a.cfg.HTTPAddr, self, want))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// guard lets callers of the agent's API in: only masters (the cluster secret) may launch,
// kill, acknowledge and read tasks; liveness and metrics are open.
func (a *Agent) guard() *auth.Guard {
	return &auth.Guard{ClusterSecret: a.cfg.ClusterSecret, Need: func(r *http.Request) auth.Role {
		switch r.URL.Path {
		case "/ping", "/health", "/metrics":
			return auth.Open
		}
		return auth.Cluster
	}}
}
