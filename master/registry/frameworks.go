package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/raft"
)

// NamespaceFrameworks is the replicated store's namespace of the framework registry: every
// framework that subscribed and was not torn down, so that a new leader knows whom to wait for.
const NamespaceFrameworks = "frameworks"

// FrameworksApplier applies the framework registry's commands.
//
//	framework.register: store an api.FrameworkInfo (a re-registration keeps its first time and
//	                    its principal: one of another principal is refused, an *OwnerError)
//	framework.remove:   forget the framework whose id is the command's data
func FrameworksApplier() raft.Applier {
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

// RegisterFramework commits a framework's registration (framework.register) and answers it as
// stored: with its first registration time, and refused with an *OwnerError when another
// principal registered it.
func RegisterFramework(ctx context.Context, store *raft.Store, fw api.FrameworkInfo) (api.FrameworkInfo, error) {
	data, err := json.Marshal(fw)
	if err != nil {
		return api.FrameworkInfo{}, err
	}
	res, err := store.Apply(ctx, raft.Command{Namespace: NamespaceFrameworks, Type: "framework.register", Data: data})
	if err != nil {
		return api.FrameworkInfo{}, err
	}
	return res.Value.(api.FrameworkInfo), nil
}

// RemoveFramework is the command that takes a framework out of the registry.
func RemoveFramework(id string) raft.Command {
	return raft.Command{Namespace: NamespaceFrameworks, Type: "framework.remove", Data: []byte(id)}
}

// Frameworks lists the registry's frameworks as v holds them.
func Frameworks(v *raft.View) ([]api.FrameworkInfo, error) {
	var out []api.FrameworkInfo
	var bad error
	v.List(NamespaceFrameworks, "", func(_ string, data []byte) bool {
		var fw api.FrameworkInfo
		if bad = json.Unmarshal(data, &fw); bad != nil {
			return false
		}
		out = append(out, fw)
		return true
	})
	return out, bad
}
