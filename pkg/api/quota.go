package api

import "time"

// Quota is a role's quota (GET /v1/quota): what the allocator guarantees the role's frameworks
// before it shares the rest fairly, and what it never offers them past. Quantities are by
// resource name — "cpus", "mem" (MiB), "disk" (MiB), as Mesos names them; a resource a limit
// does not name is not limited.
type Quota struct {
	Role      string             `json:"role"`
	Guarantee map[string]float64 `json:"guarantee"`
	Limit     map[string]float64 `json:"limit"`
	// Principal is who set it last (the token's name; "" on an open API).
	Principal string    `json:"principal,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// QuotaStatus is a role's quota with what its frameworks hold now (offered or in use), as the
// leader's allocator counts it.
type QuotaStatus struct {
	Quota
	Allocated map[string]float64 `json:"allocated"`
}

// QuotaRequest is PUT /v1/quota/{role}'s body. Force sets guarantees that the cluster's
// agents could not hold today (Mesos's force).
type QuotaRequest struct {
	Guarantee map[string]float64 `json:"guarantee"`
	Limit     map[string]float64 `json:"limit"`
	Force     bool               `json:"force,omitempty"`
}

// QuotaResources are the resources a quota may name: the scalars.
var QuotaResources = []string{"cpus", "mem", "disk"}
