package marathon

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/raft"
)

// describer tells the masters' service discovery what Marathon knows of each app beyond its
// tasks — its labels (marathon-lb's HAPROXY_* among them) and its ports with their service
// ports — from this node's copy of the store, so a new leader has them before the framework
// has started its term. An app's definition is decoded again only when it changed.
type describer struct {
	store raft.Namespace

	mu   sync.Mutex
	apps map[string]describedApp // by store key
}

type describedApp struct {
	raw  string
	info api.ServiceInfo
}

// describe is frameworks.Host's DescribeServices callback: every app, by id.
func (d *describer) describe(ctx context.Context) ([]api.ServiceInfo, error) {
	v, err := d.store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[string]describedApp, len(d.apps))
	var out []api.ServiceInfo
	var bad error
	v.List("app/", func(key string, data []byte) bool {
		got, ok := d.apps[key]
		if !ok || got.raw != string(data) {
			var as *appState
			if as, bad = appStateOf(data); bad != nil {
				bad = fmt.Errorf("marathon: app %s: %w", strings.TrimPrefix(key, "app"), bad)
				return false
			}
			got = describedApp{raw: string(data), info: serviceInfo(as.app)}
		}
		seen[key] = got
		out = append(out, got.info)
		return true
	})
	if bad != nil {
		return nil, bad
	}
	d.apps = seen
	return out, nil
}

// serviceInfo is what service discovery shows of an app: its labels and its ports by index,
// each with its name, protocols and service port.
func serviceInfo(a App) api.ServiceInfo {
	info := api.ServiceInfo{Name: a.ID, Labels: a.Labels, Ports: []api.ServicePort{}}
	names, protocols, service := a.PortNames(), a.PortProtocols(), a.ServicePorts()
	for i := range a.PortCount() {
		p := api.ServicePort{Index: i, Protocol: "tcp"}
		if i < len(names) {
			p.Name = names[i]
		}
		if i < len(protocols) && protocols[i] != "" {
			p.Protocol = protocols[i]
		}
		if i < len(service) {
			p.ServicePort = service[i]
		}
		info.Ports = append(info.Ports, p)
	}
	return info
}
