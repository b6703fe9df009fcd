package discovery

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/endpoints"
)

// ServicesOf is GET /v1/services of a view: every service with its labels, its ports and the
// host ports of its healthy instances; each one's DNS name under domain ("agora.", fully
// qualified; "" when the master serves no DNS).
func ServicesOf(v *View, domain string) *api.Services {
	out := &api.Services{Index: v.Index, Term: v.Term, Leader: v.Leader, Services: make([]api.ServiceEntry, 0, len(v.Services))}
	for _, s := range v.Services {
		e := api.ServiceEntry{Framework: s.Framework, Name: s.Name, Labels: s.Labels, Ports: s.Ports, Instances: []api.ServiceInstance{}}
		if e.Labels == nil {
			e.Labels = map[string]string{}
		}
		if domain != "" && s.Label != "" && FrameworkLabel(s.Framework) != "" {
			e.DNS = s.Label + "." + FrameworkLabel(s.Framework) + "." + domain
		}
		for _, in := range s.Instances {
			if !in.Healthy {
				continue
			}
			si := api.ServiceInstance{TaskID: in.TaskID, AgentID: in.AgentID, Host: in.Host, Ports: hostPorts(in.Ports)}
			if len(in.IPs) > 0 {
				si.IP = in.IPs[0].String()
			}
			e.Instances = append(e.Instances, si)
		}
		if e.Ports == nil { // not described: the ports its instances have
			e.Ports = []api.ServicePort{}
			if len(s.Instances) > 0 {
				e.Ports = portsOf(s.Instances[0].Ports)
			}
		}
		out.Services = append(out.Services, e)
	}
	return out
}

// hostPorts are an instance's port numbers by index: Ports lists a port once per protocol, in
// index order, and no two indexes share a number.
func hostPorts(ports []Port) []int {
	out := []int{}
	for i, p := range ports {
		if i == 0 || ports[i-1].Number != p.Number {
			out = append(out, int(p.Number))
		}
	}
	return out
}

// portsOf describes ports by index from an instance's (no service ports).
func portsOf(ports []Port) []api.ServicePort {
	out := []api.ServicePort{}
	for i, p := range ports {
		if i > 0 && ports[i-1].Number == p.Number {
			out[len(out)-1].Protocol = "udp,tcp" // the only pair Marathon has
			continue
		}
		out = append(out, api.ServicePort{Index: len(out), Name: p.Name, Protocol: p.Protocol})
	}
	return out
}

// Text is the services in Marathon's text list (pkg/endpoints): a line per service and service
// port with its healthy instances' host:port.
func Text(doc *api.Services) []endpoints.App {
	out := make([]endpoints.App, 0, len(doc.Services))
	for _, s := range doc.Services {
		a := endpoints.App{ID: s.Name}
		for _, p := range s.Ports {
			if p.ServicePort != 0 { // a service without any (not Marathon's) has the hosts' line alone
				a.ServicePorts = servicePorts(s.Ports)
				break
			}
		}
		for _, in := range s.Instances {
			a.Running = append(a.Running, endpoints.Task{Host: in.Host, Ports: in.Ports})
		}
		out = append(out, a)
	}
	return out
}

func servicePorts(ports []api.ServicePort) []int {
	out := make([]int, len(ports))
	for i, p := range ports {
		out[i] = p.ServicePort
	}
	return out
}

// Feed is the services document of a master's latest view, for readers that follow it (GET
// /v1/services as an event stream): Changed is closed when the services change — not when
// only the raft index that proves them moves.
type Feed struct {
	domain string

	mu       sync.Mutex
	doc      *api.Services
	services []byte // doc.Services as JSON, to tell a change
	changed  chan struct{}
}

// NewFeed makes a Feed whose services are named under domain ("" for none).
func NewFeed(domain string) *Feed { return &Feed{domain: domain, changed: make(chan struct{})} }

// Update takes a new view.
func (f *Feed) Update(v *View) {
	doc := ServicesOf(v, f.domain)
	b, _ := json.Marshal(doc.Services)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.doc = doc
	if !bytes.Equal(b, f.services) {
		f.services = b
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// Current is the latest document (nil before the first view) and a channel closed when the
// services next change.
func (f *Feed) Current() (*api.Services, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.doc, f.changed
}
