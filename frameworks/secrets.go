package frameworks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
)

// Secrets, as Marathon apps and Metronome jobs write them: an env value is a string or
// {"secret": "ref"}; a volume {"containerPath": "path", "secret": "ref"} is the secret as a file
// (SecretVolume); and the spec's "secrets" map each ref to {"source": "name"}, a name in the
// masters' secret store (PUT /v1/secrets/{name}). The framework resolves the references on the
// leader when it launches a task (api.TaskInfo.SecretEnv and SecretFiles); the agent hands the
// values to the container only (a file on a tmpfs of the task's own, 0400 and its user's,
// mounted read-only) and shows them masked. The spec, as stored and shown, holds only the refs.

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

// SecretVolume is a secret given to a task as a file: a volume {"containerPath": path,
// "secret": ref} of an app's container or a job's run. A relative path is in the sandbox.
type SecretVolume struct {
	ContainerPath string
	Secret        string
}

// CheckSecretVolume says what is wrong with a secret volume of a spec whose tasks run with an
// image or not, whose secrets are at secretsField ("/secrets", "run.secrets"): the field
// ("containerPath" or "secret") and why; "" when nothing is.
func CheckSecretVolume(v SecretVolume, secrets map[string]Secret, secretsField string, hasImage bool) (field, msg string) {
	if _, ok := secrets[v.Secret]; !ok {
		return "secret", fmt.Sprintf("references the secret %q, which %s does not define", v.Secret, secretsField)
	}
	if err := api.SecretFilePath(v.ContainerPath, hasImage); err != nil {
		return "containerPath", err.Error()
	}
	return "", ""
}

// Resolved are the values of a spec's secrets, as its task takes them.
type Resolved struct {
	Env   map[string]string // api.TaskInfo.SecretEnv
	Files []api.SecretFile  // api.TaskInfo.SecretFiles
}

// ResolveSecrets reads the values of env's secret references and of the secret volumes through
// lookup (Host.Secret); when one cannot be read, missing says which and why: where to PUT it
// when it has no value, or the master's error when this master cannot decrypt it. It never
// holds a value.
func ResolveSecrets(ctx context.Context, lookup func(context.Context, string) (string, error), env map[string]EnvValue, volumes []SecretVolume, secrets map[string]Secret) (res Resolved, missing string) {
	read := func(what, ref string) (string, string) {
		src := secrets[ref].Source
		v, err := lookup(ctx, src)
		if errors.Is(err, api.ErrNoSecret) {
			return "", fmt.Sprintf("%s: secret %q has no value at %q in the secret store (PUT /v1/secrets/%s)", what, ref, src, strings.Trim(src, "/"))
		}
		if err != nil {
			return "", fmt.Sprintf("%s: secret %q: %v", what, ref, err)
		}
		return v, ""
	}
	for _, name := range sortedNames(env) {
		ref := env[name].Secret
		if ref == "" {
			continue
		}
		v, missing := read("env "+name, ref)
		if missing != "" {
			return Resolved{}, missing
		}
		if res.Env == nil {
			res.Env = map[string]string{}
		}
		res.Env[name] = v
	}
	for _, vol := range volumes {
		v, missing := read("volume "+vol.ContainerPath, vol.Secret)
		if missing != "" {
			return Resolved{}, missing
		}
		res.Files = append(res.Files, api.SecretFile{ContainerPath: vol.ContainerPath, Value: v})
	}
	return res, ""
}

func sortedNames(env map[string]EnvValue) []string {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
