package frameworks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agora-sched/agora/master"
)

// Env with secrets, as Marathon apps and Metronome jobs write it: an env value is a string or
// {"secret": "ref"}, and the spec's "secrets" map each ref to {"source": "name"}, a name in the
// masters' secret store (PUT /v1/secrets/{name}). The framework resolves the references on the
// leader when it launches a task (api.TaskInfo.SecretEnv); the agent hands the values to the
// container only and shows them masked. The spec, as stored and shown, holds only the refs.

// EnvValue is an env value: a string, or a {"secret": "ref"} reference.
type EnvValue struct {
	Value  string `json:"-"`
	Secret string `json:"secret"`
}

// UnmarshalJSON reads either form; the object form has the one field "secret".
func (e *EnvValue) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		var ref struct {
			Secret string `json:"secret"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ref); err != nil {
			return fmt.Errorf(`an env value is a string or {"secret": "name"}: %w`, err)
		}
		if ref.Secret == "" {
			return errors.New(`an env value's {"secret": "name"} names no secret`)
		}
		*e = EnvValue{Secret: ref.Secret}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`an env value is a string or {"secret": "name"}`)
	}
	*e = EnvValue{Value: s}
	return nil
}

// MarshalJSON writes the form it was read in.
func (e EnvValue) MarshalJSON() ([]byte, error) {
	if e.Secret != "" {
		return json.Marshal(map[string]string{"secret": e.Secret})
	}
	return json.Marshal(e.Value)
}

// Secret is a secret of a spec: where its value is in the masters' secret store.
type Secret struct {
	Source string `json:"source"`
}

// UndefinedSecret is the first env variable (by name) whose reference the spec's secrets do not
// define, and that reference; "" when every reference is defined.
func UndefinedSecret(env map[string]EnvValue, secrets map[string]Secret) (name, ref string) {
	for _, name := range sortedNames(env) {
		if ref := env[name].Secret; ref != "" {
			if _, ok := secrets[ref]; !ok {
				return name, ref
			}
		}
	}
	return "", ""
}

// PlainEnv is the env without its secret references.
func PlainEnv(env map[string]EnvValue) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		if v.Secret == "" {
			out[k] = v.Value
		}
	}
	return out
}

// ResolveSecrets reads the values of env's secret references through lookup (Master.Secret);
// when one cannot be read, missing says which and why: where to PUT it when it has no value,
// or the master's error when this master cannot decrypt it. It never holds a value.
func ResolveSecrets(ctx context.Context, lookup func(context.Context, string) (string, error), env map[string]EnvValue, secrets map[string]Secret) (values map[string]string, missing string) {
	for _, name := range sortedNames(env) {
		ref := env[name].Secret
		if ref == "" {
			continue
		}
		src := secrets[ref].Source
		v, err := lookup(ctx, src)
		if errors.Is(err, master.ErrNoSecret) {
			return nil, fmt.Sprintf("env %s: secret %q has no value at %q in the secret store (PUT /v1/secrets/%s)", name, ref, src, strings.Trim(src, "/"))
		}
		if err != nil {
			return nil, fmt.Sprintf("env %s: secret %q: %v", name, ref, err)
		}
		if values == nil {
			values = map[string]string{}
		}
		values[name] = v
	}
	return values, ""
}

func sortedNames(env map[string]EnvValue) []string {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
