package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/id"
	"github.com/agora-sched/agora/raft"
)

// NamespaceFrameworks is the replicated store's namespace of the framework registry: every
// framework that subscribed and was not torn down, so that a new leader knows whom to wait for.
const NamespaceFrameworks = "frameworks"

// frameworksApplier applies the framework registry's commands.
//
//	framework.register: store an api.FrameworkInfo (a re-registration keeps its first time and
//	                    its principal: one of another principal is refused, an *OwnerError)
//	framework.remove:   forget the framework whose id is the command's data
func frameworksApplier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "framework.register":
			var fw api.FrameworkInfo
			if err := json.Unmarshal(cmd.Data, &fw); err != nil {
				return nil, fmt.Errorf("frameworks: register: %w", err)
			}
			if old, ok := tx.Get(fw.ID); ok {
				var prev api.FrameworkInfo
				if json.Unmarshal(old, &prev) == nil {
					fw.RegisteredAt = prev.RegisteredAt
					if fw.Principal == "" {
						fw.Principal = prev.Principal // an entry of a build before principals
					}
					if prev.Principal != "" && fw.Principal != prev.Principal {
						return nil, &OwnerError{FrameworkID: fw.ID, Name: prev.Name, Owner: prev.Principal, Caller: fw.Principal}
					}
				}
			}
			if fw.RegisteredAt.IsZero() {
				fw.RegisteredAt = tx.Time()
			}
			data, err := json.Marshal(fw)
			if err != nil {
				return nil, err
			}
			tx.Put(fw.ID, data)
			return fw, nil
		case "framework.remove":
			tx.Delete(string(cmd.Data))
			return nil, nil
		}
		return nil, fmt.Errorf("frameworks: unknown command %q", cmd.Type)
	})
}

// knownCapabilities are the framework capabilities Agora acts on.
var knownCapabilities = []string{api.CapabilityPartitionAware}

// validateFrameworkInfo names the first field of a subscription that is wrong, and fills in
// the defaults.
func validateFrameworkInfo(fw *api.FrameworkInfo) error {
	const p = "subscribe.framework_info."
	fw.Name = strings.TrimSpace(fw.Name)
	switch {
	case fw.Name == "":
		return &api.FieldError{Field: p + "name", Msg: "is required"}
	case len(fw.Name) > 200:
		return &api.FieldError{Field: p + "name", Msg: "is longer than 200 characters"}
	case fw.FailoverTimeout < 0 || fw.FailoverTimeout > 365*24*3600:
		return &api.FieldError{Field: p + "failover_timeout", Msg: fmt.Sprintf("%v: must be 0 to a year, in seconds", fw.FailoverTimeout)}
	}
	if fw.ID != "" {
		if err := id.FrameworkID(fw.ID).Validate(); err != nil {
			return &api.FieldError{Field: p + "id", Msg: err.Error()}
		}
	}
	if fw.Role == "" {
		fw.Role = api.DefaultRole
	}
	if fw.Role != api.DefaultRole {
		if err := validateRole(fw.Role); err != nil {
			return &api.FieldError{Field: p + "role", Msg: err.Error()}
		}
	}
	for i, c := range fw.Capabilities {
		if !slices.Contains(knownCapabilities, c) {
			return &api.FieldError{Field: fmt.Sprintf("%scapabilities[%d]", p, i), Msg: fmt.Sprintf("%q is not a capability Agora knows (%s)", c, strings.Join(knownCapabilities, ", "))}
		}
	}
	return nil
}

// validateRole applies Mesos's rules for role names.
func validateRole(r string) error {
	switch {
	case len(r) > 100:
		return fmt.Errorf("%.20q...: longer than 100 characters", r)
	case r == "." || r == ".." || strings.HasPrefix(r, "-"):
		return fmt.Errorf("%q is not a role name", r)
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// ErrNotOwner: a principal used the id of a framework another principal registered.
var ErrNotOwner = errors.New("master: the framework belongs to another principal")

// OwnerError says whose a framework is, for a SUBSCRIBE or a call by another principal. It
// unwraps to ErrNotOwner.
type OwnerError struct {
	FrameworkID string
	Name        string // the framework's name
	Owner       string // the principal that registered it
	Caller      string // the principal that asked
}

func (e *OwnerError) Error() string {
	if e.Owner == auth.Embedded {
		return fmt.Sprintf("framework %s (%q) is embedded in the masters (principal %s): it subscribes inside the master only, and no API caller (here principal %q) may subscribe or call as it",
			e.FrameworkID, e.Name, e.Owner, e.Caller)
	}
	return fmt.Sprintf("framework %s (%q) was registered by principal %q; principal %q may not subscribe or call as it: subscribe without an id to register a framework of your own",
		e.FrameworkID, e.Name, e.Owner, e.Caller)
}

func (e *OwnerError) Unwrap() error { return ErrNotOwner }

// ownerOf is who may subscribe and call as a registered framework. A framework registered by a
// build before principals has none: if an embedded framework registers under its name
// (embedded), it is the embedded one's, so that no API caller can take it before the embedded
// framework subscribes again after the upgrade; otherwise the first principal that subscribes
// again with its id becomes its owner ("" here: anyone).
func ownerOf(fw api.FrameworkInfo, embedded map[string]bool) string {
	if fw.Principal == "" && embedded[fw.Name] {
		return auth.Embedded
	}
	return fw.Principal
}

// checkOwner refuses a principal that is not the framework's owner.
func checkOwner(fw api.FrameworkInfo, embedded map[string]bool, caller string) error {
	if owner := ownerOf(fw, embedded); owner != "" && owner != caller {
		return &OwnerError{FrameworkID: fw.ID, Name: fw.Name, Owner: owner, Caller: caller}
	}
	return nil
}
