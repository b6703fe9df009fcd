package lb

// The services document the masters answer at GET /v1/services (and send whole in each event of
// its Server-Sent Events stream). These are agora lb's own types for it, holding what the
// config needs: the load balancer reads the API as any proxy would, without the masters' code.

// Services is the document: every service the masters know, sorted by framework, then name.
type Services struct {
	Index    uint64    `json:"index"`  // the raft index the view proves
	Term     uint64    `json:"term"`   // its raft term
	Leader   string    `json:"leader"` // the leader's id
	Services []Service `json:"services"`
}

// Service is one app (Marathon), job or task name of a framework, with its healthy instances.
type Service struct {
	Framework string            `json:"framework"`
	Name      string            `json:"name"` // a Marathon app id: /shop/web
	DNS       string            `json:"dns"`
	Labels    map[string]string `json:"labels"`
	Ports     []Port            `json:"ports"`     // one per port index, in order
	Instances []Instance        `json:"instances"` // healthy running instances, by task id
}

// Port is one port index of a service: its service port (0: none) is where the load balancer
// serves it.
type Port struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	Protocol    string `json:"protocol"`
	ServicePort int    `json:"service_port"`
}

// Instance is one healthy running instance: Ports[i] is port index i's port on its host.
type Instance struct {
	TaskID  string `json:"task_id"`
	AgentID string `json:"agent_id"`
	Host    string `json:"host"`
	IP      string `json:"ip"`
	Ports   []int  `json:"ports"`
}
