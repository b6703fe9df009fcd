package httpjson

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

type body struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Inner struct {
		Port int `json:"port"`
	} `json:"inner"`
	List []struct {
		ID string `json:"id"`
	} `json:"list"`
}

func TestDecodeNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		body, field, msg string
	}{
		{`{"name":"a","count":"x"}`, "count", "want a JSON int"},
		{`{"name":"a","inner":{"port":true}}`, "inner.port", "want a JSON int"},
		{`{"name":"a","colour":"red"}`, "colour", "unknown field"},
		{`{"name":"a","inner":{"Port":1,"host":"h"}}`, "inner.host", "unknown field"},
		{`{"list":[{"id":"a"},{"ID":"b","idd":"c"}]}`, "list[1].idd", "unknown field"},
		{`{"name":`, "", "malformed JSON"},
		{``, "", "empty"},
		{`{"name":"a"} {"name":"b"}`, "", "more than one"},
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		var v body
		err := Decode(r, &v)
		var bad *BadRequest
		if !errors.As(err, &bad) {
			t.Fatalf("%s: err = %v, want a BadRequest", tc.body, err)
		}
		if bad.Field != tc.field || !strings.Contains(bad.Msg, tc.msg) {
			t.Errorf("%s: got field %q msg %q, want field %q msg with %q", tc.body, bad.Field, bad.Msg, tc.field, tc.msg)
		}
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"name":"a","count":2}`))
	var v body
	if err := Decode(r, &v); err != nil || v.Name != "a" || v.Count != 2 {
		t.Fatalf("good body: %+v, %v", v, err)
	}
}

// check decodes itself, as health.Check does: defaults first, then json.Unmarshal of a plain copy,
// which knows nothing of the caller's DisallowUnknownFields.
type check struct {
	Protocol string `json:"protocol"`
	Interval int    `json:"intervalSeconds"`
}

func (c *check) UnmarshalJSON(b []byte) error {
	type plain check
	p := plain{Interval: 60}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*c = check(p)
	return nil
}

type launch struct {
	Name   string           `json:"name"`
	Checks []check          `json:"checks"`
	ByName map[string]check `json:"by_name"`
	Raw    json.RawMessage  `json:"raw"`
}

// TestDecodeNamesAFieldInsideATypeThatDecodesItself: a misspelt field of a health check is as much
// an error as one of the request around it.
func TestDecodeNamesAFieldInsideATypeThatDecodesItself(t *testing.T) {
	for _, tc := range []struct{ body, field string }{
		{`{"name":"a","checks":[{"protocol":"HTTP"},{"protocol":"TCP","intervalSecond":5}]}`, "checks[1].intervalSecond"},
		{`{"by_name":{"web":{"protocl":"HTTP"}}}`, "by_name.web.protocl"},
	} {
		var v launch
		err := Decode(httptest.NewRequest("POST", "/", strings.NewReader(tc.body)), &v)
		var bad *BadRequest
		if !errors.As(err, &bad) || bad.Field != tc.field || bad.Msg != "unknown field" {
			t.Errorf("%s: err = %v, want unknown field %s", tc.body, err, tc.field)
		}
	}
	var v launch
	good := `{"name":"a","checks":[{"protocol":"HTTP","IntervalSeconds":5},{}],"raw":{"any":{"thing":1}}}`
	if err := Decode(httptest.NewRequest("POST", "/", strings.NewReader(good)), &v); err != nil {
		t.Fatalf("good body: %v", err)
	}
	if len(v.Checks) != 2 || v.Checks[0].Interval != 5 || v.Checks[1].Interval != 60 {
		t.Fatalf("good body decoded to %+v", v)
	}
}

func TestErrorBodyNamesTheField(t *testing.T) {
	w := httptest.NewRecorder()
	FieldError(w, 422, "cpus", "must be > 0 & finite")
	var got ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if w.Code != 422 || got.Field != "cpus" || got.Message != "cpus: must be > 0 & finite" {
		t.Fatalf("%d %+v", w.Code, got)
	}
	if strings.Contains(w.Body.String(), `\u0026`) {
		t.Fatalf("HTML-escaped: %s", w.Body)
	}
}
