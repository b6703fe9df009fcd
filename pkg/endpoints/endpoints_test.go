package endpoints

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestTasksTextAsMarathonWritesIt: the text list is the golden file written from Marathon's
// documented format (servicerouter.py, EndpointsHelper): an app's id with '_' for '/', a line
// per service port with each running instance's host:port and a tab after each field; an app
// without ports has " " for its port and the hosts alone; an app with no running instance has
// its lines all the same.
func TestTasksTextAsMarathonWritesIt(t *testing.T) {
	var b strings.Builder
	err := Write(&b, []App{
		{ID: "/prod/api", ServicePorts: []int{10000, 10001}, Running: []Task{
			{Host: "node1", Ports: []int{31000, 31001}}, {Host: "node2", Ports: []int{31004, 31005}},
		}},
		{ID: "/batch", Running: []Task{{Host: "node1"}, {Host: "node3"}}},
		{ID: "/idle", ServicePorts: []int{10002}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/tasks.txt")
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// TestAcceptChoosesText: only a client that prefers text/plain gets it; curl's */* and
// browsers' lists get JSON.
func TestAcceptChoosesText(t *testing.T) {
	for accept, text := range map[string]bool{
		"":                                   false,
		"*/*":                                false,
		"application/json":                   false,
		"text/plain":                         true,
		"text/plain; charset=utf-8":          true,
		"text/plain, */*":                    true,
		"application/json, text/plain":       false,
		"text/plain;q=0.5, application/json": false,
		"text/plain;q=0":                     false,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": false,
	} {
		r, _ := http.NewRequest("GET", "/v2/tasks", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := WantsText(r); got != text {
			t.Errorf("Accept %q: text %v, want %v", accept, got, text)
		}
	}
}
