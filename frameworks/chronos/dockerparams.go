package chronos

import (
	"fmt"
	"strings"

	"github.com/agora-sched/agora/pkg/hostaccess"
)

// Metronome's run.docker.parameters are flags of `docker run`. Containerd runs Agora's
// containers, so only the flags that mean something Agora does anyway, or can do from the task
// it launches, are taken:
//
//	env, e           KEY=VALUE: an env variable (not one run.env sets too)
//	label, l         KEY=VALUE: a label of the task
//	user, u          who the task runs as (as run.user; not both, unless the same)
//	cap-drop         anything: tasks run with no capabilities, so every drop already holds
//	security-opt     no-new-privileges[:true]: tasks never gain privileges
//
// Any other flag (cap-add, privileged, device, network, volume, ...) is a 422 naming it: Agora
// would not do what it asks, and a job that runs otherwise than written is worse than one
// refused.
var dockerParameterKeys = map[string]string{"e": "env", "env": "env", "l": "label", "label": "label", "u": "user", "user": "user",
	"cap-drop": "cap-drop", "security-opt": "security-opt"}

// checkDockerParameters checks run.docker.parameters against what containerd can honour.
func checkDockerParameters(r *RunSpec) error {
	d := r.Docker
	user := ""
	for i, p := range d.Parameters {
		field := fmt.Sprintf("run.docker.parameters[%d]", i)
		key := strings.TrimLeft(p.Key, "-")
		switch dockerParameterKeys[key] {
		case "env", "label":
			k, _, ok := strings.Cut(p.Value, "=")
			if !ok || k == "" || strings.ContainsRune(k, 0) {
				return &FieldError{Field: field + ".value", Msg: fmt.Sprintf("%s %q: want KEY=VALUE", key, p.Value)}
			}
			if _, both := r.Env[k]; both && dockerParameterKeys[key] == "env" {
				return &FieldError{Field: field + ".value", Msg: fmt.Sprintf("%s sets %s, which run.env sets too", key, k)}
			}
		case "user":
			if err := hostaccess.ValidUser(p.Value); err != nil || p.Value == "" {
				return &FieldError{Field: field + ".value", Msg: fmt.Sprintf("user %q is not a user: a name, a uid, name:group or uid:gid", p.Value)}
			}
			if (r.User != "" && r.User != p.Value) || (user != "" && user != p.Value) {
				return &FieldError{Field: field + ".value", Msg: fmt.Sprintf("user %q: the run already runs as %q", p.Value, max(r.User, user))}
			}
			user = p.Value
		case "cap-drop":
		case "security-opt":
			if p.Value != "no-new-privileges" && p.Value != "no-new-privileges:true" {
				return &FieldError{Field: field + ".value", Msg: fmt.Sprintf("security-opt %q: only no-new-privileges (which every task has) is taken; the default seccomp profile and no new privileges always hold", p.Value)}
			}
		default:
			return &FieldError{Field: field + ".key", Msg: fmt.Sprintf("%q is not supported: containerd runs Agora's containers and honours only env, label, user, cap-drop (tasks have no capabilities) and security-opt no-new-privileges", p.Key)}
		}
	}
	return nil
}

// runUser is who the run's task runs as: run.user, else a docker user parameter.
func (r RunSpec) runUser() string {
	if r.User != "" || r.Docker == nil {
		return r.User
	}
	for _, p := range r.Docker.Parameters {
		if dockerParameterKeys[strings.TrimLeft(p.Key, "-")] == "user" {
			return p.Value
		}
	}
	return ""
}

// dockerEnvAndLabels are what the docker env and label parameters add to the task.
func (r RunSpec) dockerEnvAndLabels() (env, labels map[string]string) {
	if r.Docker == nil {
		return nil, nil
	}
	for _, p := range r.Docker.Parameters {
		k, v, _ := strings.Cut(p.Value, "=")
		switch dockerParameterKeys[strings.TrimLeft(p.Key, "-")] {
		case "env":
			if env == nil {
				env = map[string]string{}
			}
			env[k] = v
		case "label":
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	return env, labels
}
