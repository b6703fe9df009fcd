package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/raft"
)

// NamespaceAgents is the replicated store's namespace of the agent registry.
const NamespaceAgents = "agents"

// AgentsApplier applies the agent registry's commands.
//
//	agent.register: store the api.Agent of the data (a re-registration keeps its first
//	                registration time and clears a removal), and remove every other agent
//	                of the same host address (sameHostAddress): it is superseded; answers a
//	                Registered
//	agent.drain:    set or clear the drain mark of an agent (agentDrain); answers the api.Agent
//	agent.remove:   mark the agent whose id is the data as removed (a tombstone: if it comes
//	                back, the tasks it still runs were written off and are killed)
func AgentsApplier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "agent.register":
			return applyAgentRegister(tx, cmd)
		case "agent.drain":
			return applyAgentDrain(tx, cmd)
		case "agent.remove":
			old, ok := tx.Get(string(cmd.Data))
			if !ok {
				return nil, nil
			}
			var a api.Agent
			if err := json.Unmarshal(old, &a); err != nil {
				return nil, fmt.Errorf("agents: remove: %w", err)
			}
			at := tx.Time()
			a.RemovedAt = &at
			data, err := json.Marshal(a)
			if err != nil {
				return nil, err
			}
			tx.Put(a.ID, data)
			tx.Delete(addrKey(a) + a.ID)
			return nil, nil
		}
		return nil, fmt.Errorf("agents: unknown command %q", cmd.Type)
	})
}

// Registered is what agent.register answers.
type Registered struct {
	Agent      api.Agent
	WasRemoved bool // the agent had been given up, and now it is back
	// Superseded are the agents of the same host address that this registration removed (in
	// the same command): their process is gone, since the new one serves their address.
	Superseded []api.Agent
}

// sameHostAddress says whether two agents are one agent's place: the same hostname (DNS names
// ignore case) and the same API address. The API address is what the masters reach an agent
// at, and only one process can listen on it, so a new agent registering with it proves that
// the old one no longer serves it — its data dir was lost (Mesos's agent with a lost
// checkpoint, which registers as a new agent). The hostname is part of it because an address
// need not name its host (a wildcard or a port forwarded in a container); the hostname alone
// is not enough: two agents may run on one host with different ports, and are two agents.
func sameHostAddress(a, b api.Agent) bool {
	return a.HTTP == b.HTTP && strings.EqualFold(a.Hostname, b.Hostname)
}

// The namespace keeps, beside each agent under its id, an index of the agents not removed by
// host address: an empty value under addrKey(agent)+id. A registration finds the agents it
// supersedes there instead of reading every agent (which made registering n agents cost n²
// decodes on every master: nine minutes for 10,000). Index keys start with '/', which no agent
// id holds. The index was added after agents had registered without it: the first
// registration that finds addrIndexBuilt missing builds it from every agent, in its own
// command, so that every master builds the same.
const (
	addrIndexPrefix = "/addr/"
	addrIndexBuilt  = "/addr-index-built"
)

// addrKey is the index prefix of an agent's host address (sameHostAddress): the hostname in
// lower case, its length first so that no hostname and address run into another's.
func addrKey(a api.Agent) string {
	h := strings.ToLower(a.Hostname)
	return fmt.Sprintf("%s%d/%s%s/", addrIndexPrefix, len(h), h, a.HTTP)
}

// isIndexKey says whether a key of the namespace is the index's, not an agent's.
func isIndexKey(key string) bool { return strings.HasPrefix(key, "/") }

// buildAddrIndex indexes every agent not removed, once.
func buildAddrIndex(tx *raft.Txn) error {
	if _, ok := tx.Get(addrIndexBuilt); ok {
		return nil
	}
	var bad error
	tx.List("", func(key string, data []byte) bool {
		if isIndexKey(key) {
			return true
		}
		var ag api.Agent
		if bad = json.Unmarshal(data, &ag); bad != nil {
			return false
		}
		if ag.RemovedAt == nil {
			tx.Put(addrKey(ag)+ag.ID, []byte{})
		}
		return true
	})
	if bad != nil {
		return bad
	}
	tx.Put(addrIndexBuilt, []byte{})
	return nil
}

func applyAgentRegister(tx *raft.Txn, cmd raft.Command) (any, error) {
	var a api.Agent
	if err := json.Unmarshal(cmd.Data, &a); err != nil {
		return nil, fmt.Errorf("agents: register: %w", err)
	}
	if err := buildAddrIndex(tx); err != nil {
		return nil, fmt.Errorf("agents: register: index: %w", err)
	}
	a.RemovedAt = nil
	wasRemoved := false
	if old, ok := tx.Get(a.ID); ok {
		var prev api.Agent
		if json.Unmarshal(old, &prev) == nil {
			a.RegisteredAt = prev.RegisteredAt
			a.DrainingSince = prev.DrainingSince
			wasRemoved = prev.RemovedAt != nil
			tx.Delete(addrKey(prev) + prev.ID) // it may come with another address
		}
	}
	a.LastRegisteredAt = tx.Time()
	if a.RegisteredAt.IsZero() {
		a.RegisteredAt = a.LastRegisteredAt
	}
	var superseded []api.Agent
	var bad error
	addr := addrKey(a)
	tx.List(addr, func(key string, _ []byte) bool {
		id := key[len(addr):]
		if id == a.ID || strings.Contains(id, "/") {
			return true // itself, or another address that begins like this one
		}
		data, ok := tx.Get(id)
		if !ok {
			return true
		}
		var other api.Agent
		if bad = json.Unmarshal(data, &other); bad != nil {
			return false
		}
		if other.RemovedAt == nil && sameHostAddress(other, a) {
			superseded = append(superseded, other)
		}
		return true
	})
	if bad != nil {
		return nil, fmt.Errorf("agents: register: %w", bad)
	}
	for i := range superseded {
		at := tx.Time()
		superseded[i].RemovedAt = &at
		data, err := json.Marshal(superseded[i])
		if err != nil {
			return nil, err
		}
		tx.Put(superseded[i].ID, data)
		tx.Delete(addrKey(superseded[i]) + superseded[i].ID)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	tx.Put(a.ID, data)
	tx.Put(addr+a.ID, []byte{})
	return Registered{Agent: a, WasRemoved: wasRemoved, Superseded: superseded}, nil
}

// agentDrain is the data of agent.drain.
type agentDrain struct {
	ID    string `json:"id"`
	Drain bool   `json:"drain"`
}

func applyAgentDrain(tx *raft.Txn, cmd raft.Command) (any, error) {
	var d agentDrain
	if err := json.Unmarshal(cmd.Data, &d); err != nil {
		return nil, fmt.Errorf("agents: drain: %w", err)
	}
	old, ok := tx.Get(d.ID)
	if !ok {
		return nil, fmt.Errorf("agents: drain: no agent %s", d.ID)
	}
	var ag api.Agent
	if err := json.Unmarshal(old, &ag); err != nil {
		return nil, fmt.Errorf("agents: drain: %w", err)
	}
	switch {
	case d.Drain && ag.DrainingSince == nil:
		at := tx.Time()
		ag.DrainingSince = &at
	case !d.Drain:
		ag.DrainingSince = nil
	}
	data, err := json.Marshal(ag)
	if err != nil {
		return nil, err
	}
	tx.Put(ag.ID, data)
	return ag, nil
}

// RegisterAgent commits an agent's registration (agent.register): the answer is the agent as
// stored, whether it had been removed, and the agents of its host address it superseded.
func RegisterAgent(ctx context.Context, store *raft.Store, a api.Agent) (Registered, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return Registered{}, err
	}
	res, err := store.Apply(ctx, raft.Command{Namespace: NamespaceAgents, Type: "agent.register", Data: data})
	if err != nil {
		return Registered{}, err
	}
	return res.Value.(Registered), nil
}

// DrainAgent commits an agent's drain mark (agent.drain: set with drain, cleared without) and
// answers the agent as stored.
func DrainAgent(ctx context.Context, store *raft.Store, id string, drain bool) (api.Agent, error) {
	data, _ := json.Marshal(agentDrain{ID: id, Drain: drain})
	res, err := store.Apply(ctx, raft.Command{Namespace: NamespaceAgents, Type: "agent.drain", Data: data})
	if err != nil {
		return api.Agent{}, err
	}
	return res.Value.(api.Agent), nil
}

// RemoveAgent is the command that gives an agent up (agent.remove): a tombstone stays.
func RemoveAgent(id string) raft.Command {
	return raft.Command{Namespace: NamespaceAgents, Type: "agent.remove", Data: []byte(id)}
}

// Agent reads one agent of the registry as v holds it, removed or not.
func Agent(v *raft.View, id string) (api.Agent, bool) {
	data, ok := v.Get(NamespaceAgents, id)
	if !ok {
		return api.Agent{}, false
	}
	var ag api.Agent
	if json.Unmarshal(data, &ag) != nil {
		return api.Agent{}, false
	}
	return ag, true
}

// Agents lists every agent of the registry as v holds it, the removed ones (tombstones)
// included.
func Agents(v *raft.View) ([]api.Agent, error) {
	agents := []api.Agent{}
	var bad error
	v.List(NamespaceAgents, "", func(key string, data []byte) bool {
		if isIndexKey(key) {
			return true
		}
		var ag api.Agent
		if bad = json.Unmarshal(data, &ag); bad != nil {
			return false
		}
		agents = append(agents, ag)
		return true
	})
	return agents, bad
}
