package frameworks

import (
	"fmt"
	"net/url"
	"strings"
)

// QueryError is a query parameter whose value the API does not take: a 400 naming it.
type QueryError struct {
	Param string
	Msg   string
}

func (e *QueryError) Error() string { return e.Param + ": " + e.Msg }

// BoolParam reads a boolean query parameter strictly (absent: false): "true" or "false" in any
// case, as Marathon reads them, and also "1" or "0" when numeric (Metronome's Play reads those).
// Anything else, an empty value or values that disagree are a *QueryError naming it: a
// mistyped ?force=ture must not quietly mean false.
func BoolParam(q url.Values, name string, numeric bool) (bool, error) {
	vals, ok := q[name]
	if !ok {
		return false, nil
	}
	want := "true or false"
	if numeric {
		want = "true, false, 1 or 0"
	}
	var got *bool
	for _, v := range vals {
		var b bool
		switch {
		case strings.EqualFold(v, "true"), numeric && v == "1":
			b = true
		case strings.EqualFold(v, "false"), numeric && v == "0":
			b = false
		default:
			return false, &QueryError{Param: name, Msg: fmt.Sprintf("got %q, expected %s", v, want)}
		}
		if got != nil && *got != b {
			return false, &QueryError{Param: name, Msg: fmt.Sprintf("given as both true and false; give it once, %s", want)}
		}
		got = &b
	}
	return *got, nil
}

// OneOfParam checks that every value of a query parameter (and each of a comma-separated list
// of them) is one of allowed; empty items are skipped.
func OneOfParam(q url.Values, name string, allowed ...string) error {
	for _, v := range q[name] {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			found := false
			for _, a := range allowed {
				if item == a {
					found = true
					break
				}
			}
			if !found {
				return &QueryError{Param: name, Msg: fmt.Sprintf("got %q, expected one of %s", item, strings.Join(allowed, ", "))}
			}
		}
	}
	return nil
}
