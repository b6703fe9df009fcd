package httpjson

// A fuzz target for Decode, the strict decoder of every JSON request body. Run it with:
//
//	go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 30s ./pkg/httpjson/
//
// A plain `go test` runs the seeds below and those under testdata/fuzz/.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fuzzBody has the shapes request types have: nested structs, pointers, slices and maps of
// structs, an embedded struct, a field named without a tag, an ignored one, raw JSON and a type
// with its own UnmarshalJSON.
type fuzzBody struct {
	fuzzEmbedded
	ID       string                `json:"id"`
	Count    int                   `json:"count,omitempty"`
	Ratio    float64               `json:"ratio,omitempty"`
	On       *bool                 `json:"on,omitempty"`
	Run      *fuzzRun              `json:"run,omitempty"`
	List     []fuzzRun             `json:"list,omitempty"`
	ByName   map[string]fuzzRun    `json:"by_name,omitempty"`
	Matrix   [][]fuzzRun           `json:"matrix,omitempty"`
	Labels   map[string]string     `json:"labels,omitempty"`
	Raw      json.RawMessage       `json:"raw,omitempty"`
	Any      any                   `json:"any,omitempty"`
	Custom   fuzzCustom            `json:"custom,omitzero"`
	Untagged string                `json:",omitempty"`
	Ignored  string                `json:"-"`
	Deep     map[string][]*fuzzRun `json:"deep,omitempty"`
}

type fuzzEmbedded struct {
	Kind string `json:"kind,omitempty"`
}

type fuzzRun struct {
	Cmd  string   `json:"cmd,omitempty"`
	Args []string `json:"args,omitempty"`
	Next *fuzzRun `json:"next,omitempty"`
}

// fuzzCustom reads a string or a number, as resources.Ranges and task.State read their forms.
type fuzzCustom struct{ V string }

func (c *fuzzCustom) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		return errors.New("custom: not an object")
	}
	c.V = string(b)
	return nil
}

func (c fuzzCustom) MarshalJSON() ([]byte, error) { return []byte(c.V), nil }

// pathStep is one step of a path Decode names: a key, then any [index]es.
var pathStep = regexp.MustCompile(`^([^.\[\]]*)((?:\[\d+\])*)$`)

// lookup says whether path (like "run.next.args" or "list[1].cmd") leads to a value in raw;
// known is false when keys with '.', '[' or ']' make the path ambiguous.
func lookup(raw any, path string) (found, known bool) {
	for _, step := range strings.Split(path, ".") {
		m := pathStep.FindStringSubmatch(step)
		if m == nil {
			return false, false
		}
		obj, ok := raw.(map[string]any)
		if !ok {
			return false, true
		}
		key := m[1]
		if key == `""` {
			key = ""
		}
		if raw, ok = obj[key]; !ok {
			return false, true
		}
		for _, ix := range strings.Split(strings.Trim(m[2], "[]"), "][") {
			if ix == "" {
				continue
			}
			i, _ := strconv.Atoi(ix)
			arr, ok := raw.([]any)
			if !ok || i >= len(arr) {
				return false, true
			}
			raw = arr[i]
		}
	}
	return true, true
}

// hasOddKey says whether any key of v has a character that a path cannot be split at.
func hasOddKey(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if strings.ContainsAny(k, `.[]"`) || hasOddKey(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if hasOddKey(e) {
				return true
			}
		}
	}
	return false
}

// FuzzDecode decodes a request body. Every error is a *BadRequest; one for an unknown field
// names it by a path that leads to it in the body. What decodes marshals to a body that decodes
// to the same value.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","count":"x"}`,
		`{"id":"a","count":2,"run":{"cmd":"x","args":["-v"]}}`,
		`{"id":"a","colour":"red"}`,
		`{"id":"a","run":{"Cmd":"x","host":"h"}}`,
		`{"list":[{"cmd":"a"},{"CMD":"b","cmdd":"c"}]}`,
		`{"by_name":{"x":{"cmd":"a","nope":1}}}`,
		`{"matrix":[[],[{"cmd":"a"},{"arg":1}]]}`,
		`{"deep":{"k":[null,{"next":{"next":{"oops":true}}}]}}`,
		`{"kind":"k","KIND":"K","Untagged":"u","untagged":"v","Ignored":"i"}`,
		`{"raw":{"anything":[1,2]},"any":{"x":{"y":1}},"custom":"s","labels":{"a.b":"c","[0]":"d"}}`,
		`{"custom":{"no":1}}`,
		`{"a.b":1}`,
		`{"list[0]":1}`,
		`{"run":{"next":{"next":{"next":{"nope":1}}}}}`,
		`{"":""}`,
		`{"run":{"":1}}`,
		`{"run":{"cmd":"x","host":"h"}} trailing`,
		`{"any":1e400,"run":{"host":"h"}}`,
		`{"raw":1e400,"run":{"host":"h"}}`,
		`{"id":"a"} {"id":"b"}`,
		`{"id":"a"} x`,
		`{"id":`,
		`{"count":1e400}`,
		`{"count":-9223372036854775809}`,
		`{"ratio":"NaN"}`,
		`{"id":"\ud800\u00e9\u0000"}`,
		`{"on":null,"run":null,"list":null}`,
		`[]`,
		`null`,
		`""`,
		``,
		`   `,
		strings.Repeat("[", 2000),
		strings.Repeat(`{"run":`, 2000),
		`{"run":` + strings.Repeat(`{"next":`, 500) + `{"bad":1}` + strings.Repeat("}", 501),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v fuzzBody
		err := Decode(httptest.NewRequest("POST", "/", bytes.NewReader(data)), &v)
		if err != nil {
			var bad *BadRequest
			if !errors.As(err, &bad) {
				t.Fatalf("not a *BadRequest: %T %v", err, err)
			}
			if bad.Msg == "" {
				t.Fatalf("a BadRequest without a message: %+v", bad)
			}
			if bad.Msg != "unknown field" {
				return
			}
			if bad.Field == "" {
				t.Fatalf("an unknown field without a name")
			}
			var raw any // the first value of the body, as Decode read it
			rd := json.NewDecoder(bytes.NewReader(data))
			rd.UseNumber()
			if rd.Decode(&raw) != nil || hasOddKey(raw) {
				return
			}
			if found, known := lookup(raw, bad.Field); known && !found {
				t.Fatalf("unknown field %q: no such path in %s", bad.Field, data)
			}
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("what decodes does not marshal: %v", err)
		}
		var again fuzzBody
		if err := Decode(httptest.NewRequest("POST", "/", bytes.NewReader(out)), &again); err != nil {
			t.Fatalf("%s decodes to %s, which does not decode: %v", data, out, err)
		}
		if out2, _ := json.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("%s decodes to %s, which decodes to %s", data, out, out2)
		}
	})
}
