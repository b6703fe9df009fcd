package api

// Service discovery's API: what the masters answer at GET /v1/services, and what a framework
// tells them of its services beyond their tasks.

// ServiceInfo is what a framework says of one of its services beyond its running tasks: the
// labels a load balancer reads (marathon-lb's HAPROXY_* among them) and its ports with the
// service ports they are known by in front of the instances. The Marathon framework describes
// each app from its current definition.
type ServiceInfo struct {
	Name   string            `json:"name"` // the tasks' name: a Marathon app's id
	Labels map[string]string `json:"labels,omitempty"`
	Ports  []ServicePort     `json:"ports,omitempty"`
}

// ServicePort is one port of a service, by its index (PORT0 is index 0).
type ServicePort struct {
	Index    int    `json:"index"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol"` // "tcp", "udp" or "udp,tcp"
	// ServicePort is the port a load balancer serves the service on (0: none).
	ServicePort int `json:"service_port"`
}

// Services is GET /v1/services: where every service runs, from the master's copy of the
// service-discovery view, with the raft index, term and leader that view proves.
type Services struct {
	Index    uint64         `json:"index"`
	Term     uint64         `json:"term"`
	Leader   string         `json:"leader"`
	Services []ServiceEntry `json:"services"` // by framework, then name
}

// ServiceEntry is one service: a Marathon app, a job's runs, an external framework's tasks of
// one name.
type ServiceEntry struct {
	Framework string `json:"framework"`
	Name      string `json:"name"`
	// DNS is its name in the masters' DNS ("web-shop.marathon.agora."); "" when the master
	// answering serves no DNS.
	DNS    string            `json:"dns"`
	Labels map[string]string `json:"labels"`
	Ports  []ServicePort     `json:"ports"`
	// Instances are its healthy running instances (passing their health checks, or having
	// none), by task id.
	Instances []ServiceInstance `json:"instances"`
}

// ServiceInstance is one healthy running instance of a service.
type ServiceInstance struct {
	TaskID  string `json:"task_id"`
	AgentID string `json:"agent_id"`
	Host    string `json:"host"`  // its agent's hostname
	IP      string `json:"ip"`    // its agent's first address
	Ports   []int  `json:"ports"` // Ports[i] is the host port of the service's port index i
}
