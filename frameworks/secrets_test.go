package frameworks

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/agora-sched/agora/master"
	"github.com/agora-sched/agora/pkg/keyring"
)

// TestResolveSecretsSaysWhyAValueIsMissing: a secret without a value says where to PUT one; a
// secret the master cannot decrypt passes the master's reason on; neither yields a value.
func TestResolveSecretsSaysWhyAValueIsMissing(t *testing.T) {
	store := map[string]error{
		"db/ok":     nil,
		"db/none":   fmt.Errorf("%w: db/none", master.ErrNoSecret),
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
		want    map[string]string
		missing string
	}{
		{map[string]EnvValue{"A": {Secret: "ok"}, "B": {Value: "plain"}}, map[string]string{"A": "value-of-db/ok"}, ""},
		{map[string]EnvValue{"A": {Secret: "ok"}, "B": {Secret: "none"}}, nil, `env B: secret "none" has no value at "/db/none" in the secret store (PUT /v1/secrets/db/none)`},
		{map[string]EnvValue{"C": {Secret: "sealed"}}, nil, `env C: secret "sealed": master: secret db/sealed was stored with key k1, which this master does not have (give every master the same --secrets-keyring)`},
	}
	for _, tt := range tests {
		values, missing := ResolveSecrets(context.Background(), lookup, tt.env, secrets)
		if missing != tt.missing || fmt.Sprint(values) != fmt.Sprint(tt.want) {
			t.Errorf("ResolveSecrets(%v) = %v, %q; want %v, %q", tt.env, values, missing, tt.want, tt.missing)
		}
	}
}
