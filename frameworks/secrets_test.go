package frameworks

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/keyring"
)

// TestResolveSecretsSaysWhyAValueIsMissing: a secret without a value says where to PUT one; a
// secret the master cannot decrypt passes the master's reason on; neither yields a value.
func TestResolveSecretsSaysWhyAValueIsMissing(t *testing.T) {
	store := map[string]error{
		"db/ok":     nil,
		"db/none":   fmt.Errorf("%w: db/none", api.ErrNoSecret),
		"db/sealed": &master.SecretKeyError{Name: "db/sealed", KeyID: "k1", Err: keyring.ErrUnknownKey},
	}
	lookup := func(_ context.Context, name string) (string, error) {
		name = strings.Trim(name, "/")
		if err := store[name]; err != nil {
			return "", err
		}
		return "value-of-" + name, nil
	}
	secrets := map[string]Secret{"ok": {Source: "/db/ok"}, "none": {Source: "/db/none"}, "sealed": {Source: "db/sealed"}}
	tests := []struct {
		env     map[string]EnvValue
		volumes []SecretVolume
		want    map[string]string
		files   []api.SecretFile
		missing string
	}{
		{map[string]EnvValue{"A": {Secret: "ok"}, "B": {Value: "plain"}}, nil, map[string]string{"A": "value-of-db/ok"}, nil, ""},
		{map[string]EnvValue{"A": {Secret: "ok"}, "B": {Secret: "none"}}, nil, nil, nil, `env B: secret "none" has no value at "/db/none" in the secret store (PUT /v1/secrets/db/none)`},
		{map[string]EnvValue{"C": {Secret: "sealed"}}, nil, nil, nil, `env C: secret "sealed": master: secret db/sealed was stored with key k1, which this master does not have (give every master the same --secrets-keyring)`},
		{nil, []SecretVolume{{ContainerPath: "db/pw", Secret: "ok"}, {ContainerPath: "/run/pw", Secret: "ok"}}, nil,
			[]api.SecretFile{{ContainerPath: "db/pw", Value: "value-of-db/ok"}, {ContainerPath: "/run/pw", Value: "value-of-db/ok"}}, ""},
		{map[string]EnvValue{"A": {Secret: "ok"}}, []SecretVolume{{ContainerPath: "db/pw", Secret: "none"}}, nil, nil,
			`volume db/pw: secret "none" has no value at "/db/none" in the secret store (PUT /v1/secrets/db/none)`},
	}
	for _, tt := range tests {
		res, missing := ResolveSecrets(context.Background(), lookup, tt.env, tt.volumes, secrets)
		if missing != tt.missing || fmt.Sprint(res.Env) != fmt.Sprint(tt.want) || fmt.Sprint(res.Files) != fmt.Sprint(tt.files) {
			t.Errorf("ResolveSecrets(%v, %v) = %+v, %q; want %v, %v, %q", tt.env, tt.volumes, res, missing, tt.want, tt.files, tt.missing)
		}
	}
}

// TestCheckSecretVolume: a secret volume names a defined secret and a path in the sandbox, or
// an absolute one where the task has an image; what is wrong names the field.
func TestCheckSecretVolume(t *testing.T) {
	secrets := map[string]Secret{"db": {Source: "db/pw"}}
	tests := []struct {
		v          SecretVolume
		image      bool
		field, has string
	}{
		{SecretVolume{"db/pw", "db"}, false, "", ""},
		{SecretVolume{"/run/secrets/pw", "db"}, true, "", ""},
		{SecretVolume{"pw", "nope"}, false, "secret", `references the secret "nope", which /secrets does not define`},
		{SecretVolume{"/run/secrets/pw", "db"}, false, "containerPath", "only a task with an image may have"},
		{SecretVolume{"../pw", "db"}, false, "containerPath", "no '..'"},
		{SecretVolume{"/run/../pw", "db"}, true, "containerPath", "must be a clean absolute path"},
		{SecretVolume{"", "db"}, true, "containerPath", "is empty"},
	}
	for _, tt := range tests {
		field, msg := CheckSecretVolume(tt.v, secrets, "/secrets", tt.image)
		if field != tt.field || !strings.Contains(msg, tt.has) {
			t.Errorf("CheckSecretVolume(%+v, image %v) = %q %q; want %q saying %q", tt.v, tt.image, field, msg, tt.field, tt.has)
		}
	}
}
