package marathon

import (
	"context"
	"sort"
	"time"

	"github.com/agora-sched/agora/raft"
)

// Namespace is the framework's namespace in the replicated store. Keys:
//
//	framework-id                 the id the master gave the framework (frameworks.Driver)
//	app/<app id>                 the app's current definition (with version and versionInfo)
//	version/<app id>/<version>   every version of the app, for /versions and rollback
//	instance/<instance id>       an instance, written before its task is launched
//	deployment/<deployment id>   a deployment in progress
//	reservation/<instance id>    a resident instance's reservation and volumes (residency.go)
const Namespace = "marathon"

// Applier applies the namespace's commands: raft.Batch, puts and deletes applied together, so
// that an app change and its deployment, or an offer's instances, are committed as one.
func Applier() raft.Applier { return raft.BatchApplier(Namespace) }

// change collects one batch.
type change struct{ raft.Batch }

func (c *change) put(key string, v any) error { return c.Put(key, v) }
func (c *change) del(key string)              { c.Delete(key) }
func (c *change) delPrefix(prefix string)     { c.DeletePrefix(prefix) }

// commit writes the batch through raft.
func commit(ctx context.Context, store raft.Namespace, c *change) error {
	return store.Commit(ctx, &c.Batch)
}

func appKey(id string) string              { return "app" + id }
func versionKey(id, version string) string { return "version" + id + "/" + version }
func versionPrefix(id string) string       { return "version" + id + "/" }
func instanceKey(id string) string         { return "instance/" + id }
func deploymentKey(id string) string       { return "deployment/" + id }

// InstanceRecord is what the store keeps of an instance: written before its task is launched,
// deleted once the task has ended, so a failover never doubles or forgets an instance.
type InstanceRecord struct {
	ID         string            `json:"id"` // also its task's id
	AppID      string            `json:"appId"`
	Version    string            `json:"version"` // the app's config version it runs
	AgentID    string            `json:"agentId"`
	Host       string            `json:"host"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Ports      []int             `json:"ports,omitempty"`
	StagedAt   time.Time         `json:"stagedAt"`
	// Killing is set when the framework decided to stop it (scale down, upgrade, delete).
	Killing bool `json:"killing,omitempty"`
	// Reservation names the reservation (ReservationRecord) a resident app's task runs on.
	Reservation string `json:"reservation,omitempty"`
}

// Deployment is Marathon's deployment: the change of one app, in progress until the app's
// instances are all of its version, as many as wanted and healthy.
type Deployment struct {
	ID             string   `json:"id"`
	Version        string   `json:"version"`
	AffectedApps   []string `json:"affectedApps"`
	Steps          []Step   `json:"steps"`
	CurrentActions []Action `json:"currentActions"`
	CurrentStep    int      `json:"currentStep"`
	TotalSteps     int      `json:"totalSteps"`
	// Original and Target are the root group before and after the change, as much of it as the
	// change touches (plantree.go): committed with the deployment, so that any leader can
	// revert it. Records written before they were kept have neither.
	Original *PlanGroup `json:"original,omitempty"`
	Target   *PlanGroup `json:"target,omitempty"`
}

// Step is a list of actions done together.
type Step struct {
	Actions []Action `json:"actions"`
}

// Action is one app's part in a step: StartApplication, ScaleApplication, RestartApplication or
// StopApplication.
type Action struct {
	Action string `json:"action"`
	App    string `json:"app"`
}

// sortedKeys lists a map's keys in order (the FSM applies puts in a fixed order).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
