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
	// TimeUnixNano is the master's wall clock when it answered: the other masters compare
	// their clocks with it (ClockStatus).
	TimeUnixNano int64 `json:"time_unix_nano"`
}

// ClockStatus is what a master knows of its wall clock against the other masters' (measured
// NTP-style over their APIs). Cron runs fire only while the leader's is Trusted.
type ClockStatus struct {
	Trusted bool `json:"trusted"`
	// Skewed: a majority of the masters' clocks disagree with this one for sure.
	Skewed bool   `json:"skewed"`
	Reason string `json:"reason,omitempty"` // why it is not trusted
	// OffsetSeconds is the median of the masters' clocks minus this one's (its own counted as 0).
	OffsetSeconds  float64     `json:"offset_seconds"`
	MaxSkewSeconds float64     `json:"max_skew_seconds"`
	Voters         int         `json:"voters"`
	Agreeing       int         `json:"agreeing"` // masters whose clock agrees, this one included
	Peers          []PeerClock `json:"peers"`
}

// PeerClock is another master's clock as this one measured it.
type PeerClock struct {
	ID            string  `json:"id"`
	OffsetSeconds float64 `json:"offset_seconds"` // its clock minus this master's
	ErrorSeconds  float64 `json:"error_seconds"`  // half the round trip of the best probe
	Verdict       string  `json:"verdict"`        // agrees, disagrees, uncertain, no answer
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
	// Clock is the answering master's clock check.
	Clock *ClockStatus `json:"clock,omitempty"`
}

// Error is the body of every error answer: {"message": "..."}.
type Error struct {
	Message string `json:"message"`
}

// ClusterState is GET /v1/state: the cluster at a glance, as its leader knows it — the leader,
// every agent (as GET /v1/agents), every framework (as GET /v1/frameworks) and every task
// the leader keeps (as GET /v1/tasks).
type ClusterState struct {
	ClusterID  string           `json:"cluster_id"`
	Leader     LeaderInfo       `json:"leader"`
	Agents     []AgentView      `json:"agents"`
	Frameworks []FrameworkState `json:"frameworks"`
	Tasks      []TaskStatus     `json:"tasks"`
}
