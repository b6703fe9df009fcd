package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/master/secrets"
	"github.com/agora-sched/agora/pkg/httpjson"
)

// putSecret is PUT /v1/secrets/{name...} with {"value": "..."}: 204 once committed. The value
// is sealed before it is proposed: raft never sees it in plain text.
func (a *apiHandler) putSecret(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("name"), "/")
	if err := secrets.ValidName(name); err != nil {
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
	case len(*body.Value) > secrets.MaxValue:
		httpjson.FieldError(w, http.StatusUnprocessableEntity, "value", "is larger than 64 KiB")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.m.secrets.Put(ctx, name, *body.Value); err != nil {
		writeStoreError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteSecret is DELETE /v1/secrets/{name...}; it needs no key, so a secret this master
// cannot decrypt can still be deleted.
func (a *apiHandler) deleteSecret(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(r.PathValue("name"), "/")
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := a.m.secrets.Delete(ctx, name)
	switch {
	case errors.Is(err, secrets.ErrNoSecret):
		writeError(w, http.StatusNotFound, "no secret "+name)
	case err != nil:
		writeStoreError(w, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// listSecrets is GET /v1/secrets: the names, never the values.
func (a *apiHandler) listSecrets(w http.ResponseWriter, r *http.Request) {
	names, err := a.m.secrets.Names(r.Context())
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"secrets": names})
}
