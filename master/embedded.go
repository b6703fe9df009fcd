// The master's API for the frameworks embedded in it, and the types and errors they name: thin
// forwards to the parts that do the work.

package master

import (
	"context"

	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/keyring"
)

// LocalKeyringFile is the keyring a master makes in its data dir, and uses from then on, when
// it is given none (Config.SecretsKeyring).
const LocalKeyringFile = secrets.LocalKeyringFile

// ErrNoSecret: the store has no secret of that name.
var ErrNoSecret = secrets.ErrNoSecret

// SecretKeyError says why this master cannot decrypt a stored secret: secrets.KeyError.
type SecretKeyError = secrets.KeyError

// SecretsKeyring is the keyring this master seals and opens secrets with.
func (m *Master) SecretsKeyring() *keyring.Keyring { return m.secrets.Keyring() }

// SetSecretsKeyring replaces the keys secrets are sealed and opened with (a reload of
// --secrets-keyring). On the leader, secrets sealed with another key than the new primary, and
// any still in plain text, are sealed again with it.
func (m *Master) SetSecretsKeyring(k *keyring.Keyring) { m.secrets.SetKeyring(k) }

// Secret reads a secret's value from this master's copy of the store (frameworks resolve their
// tasks' secret references with it on the leader). It fails with ErrNoSecret when there is none,
// and with a *SecretKeyError when this master's keys do not open it.
func (m *Master) Secret(ctx context.Context, name string) (string, error) {
	return m.secrets.Get(ctx, name)
}
