package master

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/raft"
)

// NamespaceSecrets is the replicated store's namespace of secrets: values that frameworks pass
// to tasks (Marathon's secret references) and that the API never shows.
const NamespaceSecrets = "secrets"

// maxSecret bounds a secret's value.
const maxSecret = 64 << 10

// secretsApplier applies secret.put (data: {"name", "value"}) and secret.delete (data: the name).
func secretsApplier() raft.Applier {
	return raft.ApplierFunc(func(tx *raft.Txn, cmd raft.Command) (any, error) {
		switch cmd.Type {
		case "secret.put":
			var s struct{ Name, Value string }
			if err := json.Unmarshal(cmd.Data, &s); err != nil {
				return nil, fmt.Errorf("secrets: put: %w", err)
			}
			tx.Put(s.Name, []byte(s.Value))
			return nil, nil
		case "secret.delete":
			tx.Delete(string(cmd.Data))
			return nil, nil
		}
		return nil, fmt.Errorf("secrets: unknown command %q", cmd.Type)
	})
}

// validSecretName: a path of segments of letters, digits, '-', '_' and '.', not "." or "..".
func validSecretName(name string) error {
	if name == "" || len(name) > 200 {
		return fmt.Errorf("1 to 200 characters")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q: empty, '.' and '..' segments are not allowed", name)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return fmt.Errorf("%q: only letters, digits, '-', '_', '.' and '/'", name)
			}
		}
	}
	return nil
}

// Secret reads a secret's value from this master's copy of the store (frameworks resolve their
// tasks' secret references with it on the leader).
func (m *Master) Secret(ctx context.Context, name string) (string, bool) {
	v, err := m.store.View(ctx, raft.Stale)
	if err != nil {
		return "", false
	}
	b, ok := v.Get(NamespaceSecrets, strings.Trim(name, "/"))
	return string(b), ok
}

// putSecret is PUT /v1/secrets/{name...} with {"value": "..."}: 204 once committed.
func (a *apiHandler) putSecret(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("name"), "/")
	if err := validSecretName(name); err != nil {
		httpjson.FieldError(w, http.StatusBadRequest, "name", err.Error())
		return
	}
	var body struct {
		Value *string `json:"value"`
	}
	if err := httpjson.Decode(r, &body); err != nil {
		httpjson.DecodeError(w, err)
		return
	}
	switch {
	case body.Value == nil:
		httpjson.FieldError(w, http.StatusUnprocessableEntity, "value", "is required")
		return
	case len(*body.Value) > maxSecret:
		httpjson.FieldError(w, http.StatusUnprocessableEntity, "value", "is larger than 64 KiB")
		return
	}
	data, _ := json.Marshal(struct{ Name, Value string }{name, *body.Value})
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.m.store.Apply(ctx, raft.Command{Namespace: NamespaceSecrets, Type: "secret.put", Data: data}); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteSecret is DELETE /v1/secrets/{name...}.
func (a *apiHandler) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("name"), "/")
	if _, ok := a.m.Secret(r.Context(), name); !ok {
		writeError(w, http.StatusNotFound, "no secret "+name)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if _, err := a.m.store.Apply(ctx, raft.Command{Namespace: NamespaceSecrets, Type: "secret.delete", Data: []byte(name)}); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listSecrets is GET /v1/secrets: the names, never the values.
func (a *apiHandler) listSecrets(w http.ResponseWriter, r *http.Request) {
	v, err := a.m.store.View(r.Context(), raft.Stale)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	names := []string{}
	v.List(NamespaceSecrets, "", func(key string, _ []byte) bool {
		names = append(names, key)
		return true
	})
	writeJSON(w, http.StatusOK, map[string]any{"secrets": names})
}
