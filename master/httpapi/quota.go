package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/agora-sched/agora/master/quota"
	"github.com/agora-sched/agora/master/reservation"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/raft"
)

// Quotas per role (master/quota): Agora's own API (/v1/quota) and Mesos's (/quota); and the
// reservations of each agent (master/reservation): GET /v1/reservations.

// quotas reads every role's quota from this master's copy of the store.
func (m *cluster) quotas(ctx context.Context) ([]api.Quota, error) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	return quota.List(v)
}

// listQuotas is GET /v1/quota, on the leader: each role's quota with what its frameworks hold
// now (offered or in use).
func (a *apiHandler) listQuotas(w http.ResponseWriter, r *http.Request) {
	qs, err := a.m.quotas(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	allocated := map[string]resources.Resources{} // offered or in use, as the allocator counts
	if fws, err := a.m.sched.FrameworksView(); err == nil {
		for _, fw := range fws {
			allocated[fw.Info.Role] = allocated[fw.Info.Role].Add(fw.Allocated)
		}
	}
	out := make([]api.QuotaStatus, 0, len(qs))
	for _, q := range qs {
		held := allocated[q.Role]
		out = append(out, api.QuotaStatus{Quota: q, Allocated: map[string]float64{"cpus": held.CPUs, "mem": held.Mem, "disk": held.Disk}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"quotas": out})
}

// putQuota is PUT /v1/quota/{role}: sets the role's guarantee and limit (admins), through
// raft. A guarantee the registered agents could not hold with the other roles' is 409 unless
// forced (Mesos's capacity check).
func (a *apiHandler) putQuota(w http.ResponseWriter, r *http.Request) {
	var req api.QuotaRequest
	if err := httpjson.Decode(r, &req); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	q, ok := a.setQuota(w, r, r.PathValue("role"), req, http.StatusUnprocessableEntity)
	if ok {
		writeJSON(w, http.StatusOK, q)
	}
}

// setQuota checks and commits a quota, Agora's and Mesos's set alike: a request it refuses is
// answered with bad (Agora's 422, naming the field; Mesos's 400), a guarantee the cluster could
// not hold with 409; ok when it is committed, for the caller to answer.
func (a *apiHandler) setQuota(w http.ResponseWriter, r *http.Request, role string, req api.QuotaRequest, bad int) (q api.Quota, ok bool) {
	if err := quota.Check(role, req); err != nil {
		var fe *api.FieldError
		if errors.As(err, &fe) && bad == http.StatusUnprocessableEntity {
			httpjson.FieldError(w, bad, fe.Field, fe.Msg)
			return q, false
		}
		writeError(w, bad, err.Error())
		return q, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	// The capacity check reads the other roles' guarantees, then the commit writes this one:
	// two writes at once could each pass against the store without the other and together
	// exceed the cluster. Quota writes are the leader's (forwarded), so one at a time there.
	a.quotaMu.Lock()
	defer a.quotaMu.Unlock()
	if !req.Force {
		qs, err := a.m.quotas(ctx)
		if err != nil {
			writeStoreError(w, err)
			return q, false
		}
		agents, err := a.m.registeredAgents(ctx)
		if err != nil {
			writeStoreError(w, err)
			return q, false
		}
		var capacity resources.Resources
		for _, ag := range agents {
			if ag.RemovedAt == nil {
				capacity = capacity.Add(ag.Resources)
			}
		}
		if err := quota.Overcommit(qs, role, req.Guarantee, capacity); err != nil {
			writeError(w, http.StatusConflict, err.Error())
			return q, false
		}
	}
	q = api.Quota{Role: role, Guarantee: req.Guarantee, Limit: req.Limit}
	if p, ok := auth.PrincipalOf(r.Context()); ok {
		q.Principal = p.Name
	}
	if q.Guarantee == nil {
		q.Guarantee = map[string]float64{}
	}
	if q.Limit == nil {
		q.Limit = map[string]float64{}
	}
	data, _ := json.Marshal(q)
	res, err := a.m.store.Apply(ctx, raft.Command{Namespace: quota.Namespace, Type: "quota.set", Data: data})
	if err != nil {
		writeStoreError(w, err)
		return q, false
	}
	q = res.Value.(api.Quota)
	a.m.sched.SetQuota(role, &q)
	return q, true
}

// deleteQuota is DELETE /v1/quota/{role}: 204, or 404 when the role has none.
func (a *apiHandler) deleteQuota(w http.ResponseWriter, r *http.Request) {
	a.removeQuota(w, r, http.StatusNoContent, http.StatusNotFound)
}

// deleteMesosQuota is Mesos's DELETE /quota/{role}: 200, or 400 when the role has none.
func (a *apiHandler) deleteMesosQuota(w http.ResponseWriter, r *http.Request) {
	a.removeQuota(w, r, http.StatusOK, http.StatusBadRequest)
}

func (a *apiHandler) removeQuota(w http.ResponseWriter, r *http.Request, done, none int) {
	role := r.PathValue("role")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	_, err := a.m.store.Apply(ctx, raft.Command{Namespace: quota.Namespace, Type: "quota.remove", Data: []byte(role)})
	var nf *quota.NotFoundError
	switch {
	case errors.As(err, &nf):
		writeError(w, none, nf.Error())
	case err != nil:
		writeStoreError(w, err)
	default:
		a.m.sched.SetQuota(role, nil)
		w.WriteHeader(done)
	}
}

// mesosQuotaStatus is GET /quota's body, Mesos 1.9's: the guarantees as the older QuotaInfo
// lists them (resources with a scalar each) and the configs with guarantees and limits.
type mesosQuotaStatus struct {
	Infos   []mesosQuotaInfo   `json:"infos"`
	Configs []mesosQuotaConfig `json:"configs"`
}

type mesosQuotaInfo struct {
	Role      string          `json:"role"`
	Principal string          `json:"principal,omitempty"`
	Guarantee []mesosResource `json:"guarantee"`
}

type mesosResource struct {
	Name   string           `json:"name"`
	Type   string           `json:"type"`
	Role   string           `json:"role,omitempty"`
	Scalar resources.Scalar `json:"scalar"`
}

type mesosQuotaConfig struct {
	Role       string                      `json:"role"`
	Guarantees map[string]resources.Scalar `json:"guarantees,omitempty"`
	Limits     map[string]resources.Scalar `json:"limits,omitempty"`
}

// getMesosQuota is Mesos's GET /quota (and /master/quota).
func (a *apiHandler) getMesosQuota(w http.ResponseWriter, r *http.Request) {
	qs, err := a.m.quotas(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	out := mesosQuotaStatus{Infos: []mesosQuotaInfo{}, Configs: []mesosQuotaConfig{}}
	for _, q := range qs {
		info := mesosQuotaInfo{Role: q.Role, Principal: q.Principal, Guarantee: []mesosResource{}}
		cfg := mesosQuotaConfig{Role: q.Role}
		for _, name := range api.QuotaResources {
			if v, ok := q.Guarantee[name]; ok {
				info.Guarantee = append(info.Guarantee, mesosResource{Name: name, Type: "SCALAR", Role: api.DefaultRole, Scalar: resources.Scalar{Value: v}})
				if cfg.Guarantees == nil {
					cfg.Guarantees = map[string]resources.Scalar{}
				}
				cfg.Guarantees[name] = resources.Scalar{Value: v}
			}
			if v, ok := q.Limit[name]; ok {
				if cfg.Limits == nil {
					cfg.Limits = map[string]resources.Scalar{}
				}
				cfg.Limits[name] = resources.Scalar{Value: v}
			}
		}
		out.Infos = append(out.Infos, info)
		out.Configs = append(out.Configs, cfg)
	}
	writeJSON(w, http.StatusOK, out)
}

// postMesosQuota is Mesos's POST /quota: {"role": ..., "guarantee": [resources], "force": ...}.
// As in Mesos 1.9 and later, a quota set this way limits the role to its guarantee.
func (a *apiHandler) postMesosQuota(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Role      string          `json:"role"`
		Guarantee []mesosResource `json:"guarantee"`
		Force     bool            `json:"force"`
	}
	if err := httpjson.Decode(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req := api.QuotaRequest{Guarantee: map[string]float64{}, Limit: map[string]float64{}, Force: body.Force}
	for i, res := range body.Guarantee {
		if res.Type != "" && res.Type != "SCALAR" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("guarantee[%d]: %s is %s; quota applies to scalar resources only", i, res.Name, res.Type))
			return
		}
		if _, dup := req.Guarantee[res.Name]; dup {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("guarantee[%d]: %s given twice", i, res.Name))
			return
		}
		req.Guarantee[res.Name], req.Limit[res.Name] = res.Scalar.Value, res.Scalar.Value
	}
	if _, ok := a.setQuota(w, r, body.Role, req, http.StatusBadRequest); ok {
		w.WriteHeader(http.StatusOK)
	}
}

// listReservations is GET /v1/reservations, on the leader: what is reserved on each agent, by
// role, and its persistent volumes (master/reservation's record, as committed).
func (a *apiHandler) listReservations(w http.ResponseWriter, r *http.Request) {
	v, err := a.m.store.View(r.Context(), raft.Stale)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	recs, err := reservation.List(v)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if recs == nil {
		recs = []api.AgentReservations{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"reservations": recs})
}
