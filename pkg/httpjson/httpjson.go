// Package httpjson writes and reads the JSON bodies of Agora's HTTP APIs, masters' and agents'
// alike: answers indented and without HTML escaping, errors as {"message": ...} with the field
// at fault named, and request bodies decoded strictly so that a misspelt field is an error that
// names it rather than a silently ignored setting.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxBody bounds a request body.
const MaxBody = 4 << 20

// Write answers with v as JSON.
func Write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // messages say ">= 0", not "\u003e= 0"
	_ = enc.Encode(v)
}

// ErrorBody is the JSON body of every API error.
type ErrorBody struct {
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Error answers with {"message": msg}.
func Error(w http.ResponseWriter, code int, msg string) {
	Write(w, code, ErrorBody{Message: msg})
}

// FieldError answers with {"message": "FIELD: MSG", "field": FIELD}.
func FieldError(w http.ResponseWriter, code int, field, msg string) {
	Write(w, code, ErrorBody{Message: field + ": " + msg, Field: field})
}

// DecodeError answers 400 for a body Decode refused, naming the field when it is known.
func DecodeError(w http.ResponseWriter, err error) {
	var bad *BadRequest
	if errors.As(err, &bad) && bad.Field != "" {
		FieldError(w, http.StatusBadRequest, bad.Field, bad.Msg)
		return
	}
	Error(w, http.StatusBadRequest, err.Error())
}

// BadRequest is a body that could not be decoded; Field names the field at fault when known.
type BadRequest struct {
	Field string
	Msg   string
}

func (e *BadRequest) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Decode reads one JSON value from the request body into v, refusing unknown fields, values of
// the wrong type, trailing data and bodies over MaxBody.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &BadRequest{Msg: "the body holds more than one JSON value"}
	}
	return nil
}

func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr):
		return &BadRequest{Field: typeErr.Field, Msg: fmt.Sprintf("want a JSON %s, got %s", typeErr.Type, typeErr.Value)}
	case errors.As(err, &syntaxErr):
		return &BadRequest{Msg: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)}
	case errors.As(err, &maxErr):
		return &BadRequest{Msg: fmt.Sprintf("the body is over %d bytes", MaxBody)}
	case errors.Is(err, io.EOF):
		return &BadRequest{Msg: "the body is empty; want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &BadRequest{Msg: "malformed JSON: the body ends too soon"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &BadRequest{Field: field, Msg: "unknown field"}
	}
	// Errors a type's own UnmarshalJSON returns (resources, states) say what is wrong.
	return &BadRequest{Msg: err.Error()}
}
