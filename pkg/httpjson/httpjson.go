// Package httpjson writes and reads the JSON bodies of Agora's HTTP APIs, masters' and agents'
// alike: answers indented and without HTML escaping, errors as {"message": ...} with the field
// at fault named, and request bodies decoded strictly so that a misspelt field is an error that
// names it rather than a silently ignored setting.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// MaxBody bounds a request body that Decode reads.
const MaxBody = 4 << 20

// MaxRequest bounds every request body a master or an agent reads (LimitBody); decoders bound
// theirs lower.
const MaxRequest = 8 << 20

// LimitBody answers 413 for a request whose body is declared larger than MaxRequest, before a
// handler reads any of it, and caps the bodies of the others (chunked ones included) there.
func LimitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxRequest {
			Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, MaxRequest))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxRequest)
		next.ServeHTTP(w, r)
	})
}

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

// DecodeError answers 400 for a body Decode refused (413 for one too large), naming the field
// when it is known.
func DecodeError(w http.ResponseWriter, err error) {
	var bad *BadRequest
	if !errors.As(err, &bad) {
		Error(w, http.StatusBadRequest, err.Error())
		return
	}
	code := http.StatusBadRequest
	if bad.TooLarge {
		code = http.StatusRequestEntityTooLarge
	}
	if bad.Field != "" {
		FieldError(w, code, bad.Field, bad.Msg)
		return
	}
	Error(w, code, bad.Msg)
}

// BadRequest is a body that could not be decoded; Field names the field at fault when known.
type BadRequest struct {
	Field    string
	Msg      string
	TooLarge bool // the body is over the limit: 413, whatever the API answers otherwise
}

func (e *BadRequest) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Decode reads one JSON value from the request body into v, refusing unknown fields (named with
// their path, like "run.cpu"), values of the wrong type, trailing data and bodies over MaxBody.
func Decode(r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	if err != nil {
		return decodeError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		bad := decodeError(err)
		if b, ok := bad.(*BadRequest); ok && b.Msg == "unknown field" {
			// Only the first value, as dec read it: with trailing data, Unmarshal of the whole
			// body fails and the field was named without its path.
			if path := unknownPath(reflect.TypeOf(v), firstValue(data), ""); path != "" {
				b.Field = path
			}
		}
		return bad
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &BadRequest{Msg: "the body holds more than one JSON value"}
	}
	// A type with its own UnmarshalJSON (a health check, resources) decodes its part of the body
	// with a decoder of its own, which DisallowUnknownFields does not reach: look for what its
	// fields have no place for, as for any other type.
	if t := reflect.TypeOf(v); hasOwnDecoder(t) {
		if path := unknownPath(t, firstValue(data), ""); path != "" {
			return &BadRequest{Field: path, Msg: "unknown field"}
		}
	}
	return nil
}

// firstValue is the body's first JSON value as maps, slices and json.Numbers (a number past
// float64 must not hide a path); nil when it does not decode.
func firstValue(data []byte) any {
	var raw any
	rd := json.NewDecoder(bytes.NewReader(data))
	rd.UseNumber()
	if rd.Decode(&raw) != nil {
		return nil
	}
	return raw
}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	ownDecoder      sync.Map // reflect.Type → bool
)

// hasOwnDecoder says whether a value of type t holds, anywhere inside, a type with its own
// UnmarshalJSON.
func hasOwnDecoder(t reflect.Type) bool {
	if known, ok := ownDecoder.Load(t); ok {
		return known.(bool)
	}
	has := reaches(t, map[reflect.Type]bool{})
	ownDecoder.Store(t, has)
	return has
}

func reaches(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return t != reflect.TypeFor[json.RawMessage]()
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return reaches(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if reaches(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// unknownPath finds the first field of raw (in key order) that type t has no place for, and
// says where it is: "run.docker.imag", "schedules[1].crn".
func unknownPath(t reflect.Type, raw any, at string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := raw.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			path := k
			if k == "" {
				path = `""` // the empty key, as JSON writes it: a path must name something
			}
			if at != "" {
				path = at + "." + path
			}
			switch t.Kind() {
			case reflect.Map:
				if p := unknownPath(t.Elem(), v[k], path); p != "" {
					return p
				}
			case reflect.Struct:
				ft, ok := fieldType(t, k)
				if !ok {
					return path
				}
				if p := unknownPath(ft, v[k], path); p != "" {
					return p
				}
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, e := range v {
				if p := unknownPath(t.Elem(), e, fmt.Sprintf("%s[%d]", at, i)); p != "" {
					return p
				}
			}
		}
	}
	return ""
}

// fieldType is the type of the struct field a JSON key decodes into (as encoding/json matches
// them: by tag or name, case-insensitively, through embedded structs).
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if f.Anonymous && name == "" {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				if ft, ok := fieldType(et, key); ok {
					return ft, true
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		if strings.EqualFold(name, key) {
			return f.Type, true
		}
	}
	return nil, false
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
		return &BadRequest{Msg: fmt.Sprintf("the body is over %d bytes", maxErr.Limit), TooLarge: true}
	case errors.Is(err, io.EOF):
		return &BadRequest{Msg: "the body is empty; want a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &BadRequest{Msg: "malformed JSON: the body ends too soon"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if field == "" {
			field = `""` // the empty key, as JSON writes it: an unknown field must be named
		}
		return &BadRequest{Field: field, Msg: "unknown field"}
	}
	// Errors a type's own UnmarshalJSON returns (resources, states) say what is wrong.
	return &BadRequest{Msg: err.Error()}
}
