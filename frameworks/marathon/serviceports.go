package marathon

import (
	"encoding/json"
	"fmt"

	"github.com/agora-sched/agora/pkg/resources"
)

// Service ports, as Marathon assigns them.
//
// A service port is a number an app is known by in front of its instances — what a load
// balancer such as marathon-lb listens on for it — not a port of any agent. An app has one per
// port it asks for: portDefinitions[i].port, or container.portMappings[i].servicePort. Those
// given as 0 are assigned when the app is written, from the framework's range (ServicePorts in
// Config, 10000-20000 by default), never one another app holds; a change of an app gives it
// back the ports it held before (the first of its old ports its new definition does not fix,
// in order), so an update that keeps the number of ports keeps the ports. A deleted app's ports
// are free for the changes after its own. Fixed service ports are the user's to choose; as in
// Marathon, two apps may fix the same one.
//
// The assignment is part of the definition written through raft, made while the API's writes
// are serialized (Service.writeMu): a new leader reads the ports from the store, and two apps
// created at once never get the same one. With requirePorts, an instance's host ports are its
// app's service ports (App.RequiredPorts); offers without them are declined as
// InsufficientPorts.

// portPool hands out service ports during one change of apps: the lowest port of its range that
// is not used. Within a change ports are only ever taken, so the search goes on from where the
// last one ended.
type portPool struct {
	r       resources.Range
	used    map[int]bool
	claimed map[int]bool // fixed by a definition of the change: no other app's old port to reuse
	next    int          // every port of the range below next is used
}

func newPortPool(r resources.Range) *portPool {
	return &portPool{r: r, used: map[int]bool{}, claimed: map[int]bool{}, next: int(r.Begin)}
}

// hold marks ports as used (0s are not ports): those the apps hold before the change.
func (p *portPool) hold(ports ...int) {
	for _, port := range ports {
		if port != 0 {
			p.used[port] = true
		}
	}
}

// claim marks the ports a new definition of the change fixes.
func (p *portPool) claim(ports ...int) {
	p.hold(ports...)
	for _, port := range ports {
		if port != 0 {
			p.claimed[port] = true
		}
	}
}

// errPortsExhausted says the range has no free port left.
type errPortsExhausted struct{ r resources.Range }

func (e *errPortsExhausted) Error() string {
	return fmt.Sprintf("all ports in the service port range [%d-%d] are already in use by other apps (agora master --service-ports sets the range)", e.r.Begin, e.r.End)
}

// assign replaces each 0 of want with a service port: first the app's old ports (those it held
// before the change, in the range, that no new definition fixes), in order, then the lowest
// free ports of the range. It answers at which index the range ran out.
func (p *portPool) assign(want, old []int) ([]int, int, error) {
	fixed := map[int]bool{}
	for _, port := range want {
		fixed[port] = true
	}
	var reuse []int
	for _, port := range old {
		if port >= int(p.r.Begin) && port <= int(p.r.End) && !fixed[port] && !p.claimed[port] {
			reuse = append(reuse, port)
		}
	}
	out := make([]int, len(want))
	for i, port := range want {
		switch {
		case port != 0:
		case len(reuse) > 0:
			port, reuse = reuse[0], reuse[1:]
		default:
			for p.next <= int(p.r.End) && p.used[p.next] {
				p.next++
			}
			if p.next > int(p.r.End) {
				return nil, i, &errPortsExhausted{r: p.r}
			}
			port = p.next
		}
		out[i] = port
		p.hold(port)
	}
	return out, 0, nil
}

// servicePortPath is the JSON path of the app's i-th service port, for errors.
func (a App) servicePortPath(i int) string {
	if a.hasPortMappings() {
		return fmt.Sprintf("/container/portMappings(%d)/servicePort", i)
	}
	return fmt.Sprintf("/portDefinitions(%d)/port", i)
}

// withServicePorts is a copy of d with the app's service ports written in: into
// container.portMappings[].servicePort, or into portDefinitions[].port. An app given with
// Marathon's older "ports", or with no ports at all (one port), is written with
// portDefinitions instead; every other field of the definition is kept as it was given.
func (d Definition) withServicePorts(a App, ports []int) (Definition, error) {
	out := d.Merge(nil)
	if a.hasPortMappings() {
		var container map[string]json.RawMessage
		if err := json.Unmarshal(d["container"], &container); err != nil {
			return nil, err
		}
		mappings, err := setEach(container["portMappings"], "servicePort", ports)
		if err != nil {
			return nil, err
		}
		container["portMappings"] = mappings
		out["container"] = mustJSON(container)
		return out, nil
	}
	if raw, ok := d["portDefinitions"]; ok {
		defs, err := setEach(raw, "port", ports)
		if err != nil {
			return nil, err
		}
		out["portDefinitions"] = defs
		return out, nil
	}
	defs := make([]map[string]any, len(ports))
	for i, port := range ports {
		protocol := a.PortDefinitions[i].Protocol
		if protocol == "" {
			protocol = "tcp"
		}
		defs[i] = map[string]any{"port": port, "protocol": protocol}
	}
	delete(out, "ports")
	out["portDefinitions"] = mustJSON(defs)
	return out, nil
}

// setEach sets field to values[i] in the i-th object of a JSON list, keeping the objects' other
// fields.
func setEach(raw json.RawMessage, field string, values []int) (json.RawMessage, error) {
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	if len(list) != len(values) {
		return nil, fmt.Errorf("%d ports for %d entries", len(values), len(list))
	}
	for i := range list {
		if list[i] == nil {
			list[i] = map[string]json.RawMessage{}
		}
		list[i][field] = mustJSON(values[i])
	}
	return mustJSON(list), nil
}
