// Package quota keeps each role's quota in the replicated store — a guarantee the allocator
// satisfies before it shares the rest fairly, and a limit it never offers a role past — and
// checks a quota before it is written: Mesos's rules (only scalar resources, a role of its
// naming rules but not "*", a guarantee within the limit, guarantees that the cluster's agents
// could hold unless forced).
package quota

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/raft"
)

// Namespace is the replicated store's namespace of quotas: one key per role.
const Namespace = "quota"

// Applier applies the quota commands.
//
//	quota.set:    store an api.Quota under its role (UpdatedAt: the command's time)
//	quota.remove: forget the quota of the role that is the command's data
func Applier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "quota.set":
			var q api.Quota
			if err := json.Unmarshal(cmd.Data, &q); err != nil {
				return nil, fmt.Errorf("quota: set: %w", err)
			}
			q.UpdatedAt = tx.Time()
			data, err := json.Marshal(q)
			if err != nil {
				return nil, err
			}
			tx.Put(q.Role, data)
			return q, nil
		case "quota.remove":
			role := string(cmd.Data)
			if _, ok := tx.Get(role); !ok {
				return nil, &NotFoundError{Role: role}
			}
			tx.Delete(role)
			return nil, nil
		}
		return nil, fmt.Errorf("quota: unknown command %q", cmd.Type)
	})
}

// NotFoundError: the role has no quota to remove.
type NotFoundError struct{ Role string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("role %q has no quota", e.Role) }

// List reads every quota from a view of the store, by role.
func List(v *raft.View) ([]api.Quota, error) { return raft.ListJSON[api.Quota](v, Namespace, "") }

// FieldError names what is wrong in a quota request.
type FieldError = api.FieldError

// Check validates a quota for role as Mesos does: the role is a role name and not "*"; the
// guarantee and the limit name only scalar resources (cpus, mem, disk) with finite quantities
// of at least 0; the guarantee of each resource is within its limit.
func Check(role string, req api.QuotaRequest) error {
	if err := ValidRole(role); err != nil {
		return &FieldError{Field: "role", Msg: err.Error()}
	}
	for _, f := range []struct {
		name string
		m    map[string]float64
	}{{"guarantee", req.Guarantee}, {"limit", req.Limit}} {
		for _, name := range slices.Sorted(maps.Keys(f.m)) {
			v := f.m[name]
			switch {
			case !slices.Contains(api.QuotaResources, name):
				return &FieldError{Field: f.name + "." + name, Msg: fmt.Sprintf("quota applies to %s only", strings.Join(api.QuotaResources, ", "))}
			case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
				return &FieldError{Field: f.name + "." + name, Msg: fmt.Sprintf("must be a finite number >= 0, got %v", v)}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(req.Guarantee)) {
		if limit, ok := req.Limit[name]; ok && req.Guarantee[name] > limit {
			return &FieldError{Field: "guarantee." + name, Msg: fmt.Sprintf("%v is above its limit %v", req.Guarantee[name], limit)}
		}
	}
	return nil
}

// ValidRole applies Mesos's rules for a role that may have a quota: a role name
// (api.ValidateRole), and not the default role "*".
func ValidRole(r string) error {
	switch r {
	case "":
		return fmt.Errorf("a role is required")
	case api.DefaultRole:
		return fmt.Errorf("the default role %q cannot have a quota (as in Mesos)", r)
	}
	return api.ValidateRole(r)
}

// Overcommit says why the guarantees of every role, with role's set to guarantee, could not be
// held by agents of capacity (the registered agents' resources): nil when they could. Only the
// resources whose guarantee the change raises are checked: lowering a guarantee or setting a
// limit is never refused because others' guarantees (forced, or agents gone) exceed capacity.
func Overcommit(quotas []api.Quota, role string, guarantee map[string]float64, capacity resources.Resources) error {
	total := map[string]float64{}
	prev := map[string]float64{}
	for _, q := range quotas {
		if q.Role == role {
			prev = q.Guarantee
			continue
		}
		for name, v := range q.Guarantee {
			total[name] += v
		}
	}
	for name, v := range guarantee {
		total[name] += v
	}
	have := map[string]float64{"cpus": capacity.CPUs, "mem": capacity.Mem, "disk": capacity.Disk}
	var over []string
	for _, name := range api.QuotaResources {
		if guarantee[name] > prev[name] && total[name] > have[name]+1e-9 {
			over = append(over, fmt.Sprintf("%s %v of %v", name, total[name], have[name]))
		}
	}
	if len(over) > 0 {
		return fmt.Errorf("the roles' guarantees would exceed what the cluster's agents have (%s); force to set it anyway", strings.Join(over, ", "))
	}
	return nil
}
