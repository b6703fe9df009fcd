package api

// LeaderInfo names the leading master.
type LeaderInfo struct {
	ID      string `json:"id"`
	Address string `json:"address"` // raft
	HTTP    string `json:"http"`
}

// SelfInfo is one master's own view of raft.
type SelfInfo struct {
	ID            string `json:"id"`
	State         string `json:"state"` // leader, follower, candidate or shutdown
	Term          uint64 `json:"term"`
	LastIndex     uint64 `json:"last_index"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastContactMS int64  `json:"last_contact_ms"` // -1: never heard from a leader
}

// MasterInfo is one master of the raft configuration, as it reports itself.
type MasterInfo struct {
	ID           string `json:"id"`
	Address      string `json:"address"`
	HTTP         string `json:"http,omitempty"`
	Voter        bool   `json:"voter"`
	State        string `json:"state"` // its raft state, or "unreachable"
	LastIndex    uint64 `json:"last_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Gossip       string `json:"gossip"` // alive, suspect, dead, left, or unknown
	Error        string `json:"error,omitempty"`
}

// MemberInfo is one gossip member, master or agent.
type MemberInfo struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Role    string `json:"role"`
	ID      string `json:"id"`
	HTTP    string `json:"http,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	Status  string `json:"status"`
}

// ClusterView is GET /v1/cluster.
type ClusterView struct {
	ClusterID string       `json:"cluster_id"`
	Leader    *LeaderInfo  `json:"leader"`
	Self      SelfInfo     `json:"self"`
	Masters   []MasterInfo `json:"masters"`
	Members   []MemberInfo `json:"members"`
}

// Error is the body of every error answer: {"message": "..."}.
type Error struct {
	Message string `json:"message"`
}
