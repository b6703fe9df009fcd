package frameworks

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestBoolParamIsStrict(t *testing.T) {
	for _, tc := range []struct {
		query   string
		numeric bool
		want    bool
		err     string // "" when it reads
	}{
		{"", false, false, ""},
		{"force=true", false, true, ""},
		{"force=TRUE", false, true, ""},
		{"force=False", false, false, ""},
		{"force=true&force=true", false, true, ""},
		{"force=1", true, true, ""},
		{"force=0", true, false, ""},
		{"force=1", false, false, `got "1", expected true or false`},
		{"force=notabool", false, false, `got "notabool", expected true or false`},
		{"force=yes", true, false, `got "yes", expected true, false, 1 or 0`},
		{"force", false, false, `got "", expected true or false`},
		{"force=true&force=false", false, false, "given as both true and false"},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := BoolParam(q, "force", tc.numeric)
		var qe *QueryError
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %v, %v; want %v", tc.query, got, err, tc.want)
		case tc.err != "" && (!errors.As(err, &qe) || qe.Param != "force" || !strings.Contains(qe.Msg, tc.err)):
			t.Errorf("%q: %v, want an error naming force: %q", tc.query, err, tc.err)
		}
	}
	q, _ := url.ParseQuery("embed=a,b&embed=c,")
	if err := OneOfParam(q, "embed", "a", "b", "c"); err != nil {
		t.Errorf("known embeds: %v", err)
	}
	if err := OneOfParam(q, "embed", "a", "c"); err == nil || !strings.Contains(err.Error(), `embed: got "b", expected one of a, c`) {
		t.Errorf("an unknown embed: %v", err)
	}
}
