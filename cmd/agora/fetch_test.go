package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/fetcher/fetchertest"
)

// TestMarathonFetchAndURIs: an app's fetch (a file, an executable, a tarball extracted) and an
// app's older uris (an archive extracted by its name) are in the sandbox when the task starts;
// an artifact that answers 404 keeps the app from running, and lastTaskFailure names the URI;
// a scheme agents cannot fetch is a 422 at its path.
func TestMarathonFetchAndURIs(t *testing.T) {
	t.Parallel()
	srv := fetchertest.NewServer(t, map[string][]byte{"/config.json": []byte(`{"k":"v"}`), "/run.sh": []byte("#!/bin/sh\necho ran-script\n"),
		"/site.tgz": fetchertest.TarGz(t, map[string]string{"site/index.html": "index"})})
	base, agentBase, _ := startMarathonDev(t, taskPorts(), "--fetch-allow-net", "127.0.0.1/32")

	postApp(t, base, fmt.Sprintf(`{"id": "/fetcher", "cpus": 0.1, "mem": 32, "portDefinitions": [],
		"cmd": "cat conf/config.json; echo; ./run.sh; cat site/index.html; echo; sleep 1000",
		"fetch": [{"uri": %q, "destPath": "conf/config.json"}, {"uri": %q, "executable": true}, {"uri": %q, "cache": true}]}`,
		srv.URL+"/config.json", srv.URL+"/run.sh", srv.URL+"/site.tgz"))
	postApp(t, base, fmt.Sprintf(`{"id": "/old-uris", "cpus": 0.1, "mem": 32, "portDefinitions": [],
		"cmd": "cat site/index.html; echo; sleep 1000", "uris": [%q]}`, srv.URL+"/site.tgz"))
	for id, want := range map[string]string{"/fetcher": `{"k":"v"}` + "\nran-script\nindex\n", "/old-uris": "index\n"} {
		a := waitAppRunning(t, base, id, 1)
		var out string
		for deadline := time.Now().Add(20 * time.Second); out != want; time.Sleep(200 * time.Millisecond) {
			out = readLogs(t, agentBase, a.Tasks[0].ID)
			if time.Now().After(deadline) {
				t.Fatalf("%s's output: %q, want %q", id, out, want)
			}
		}
	}

	missing := srv.URL + "/missing.tgz"
	postApp(t, base, fmt.Sprintf(`{"id": "/broken", "cpus": 0.1, "mem": 32, "portDefinitions": [], "cmd": "sleep 1000", "uris": [%q]}`, missing))
	var app struct {
		App struct {
			TasksRunning    int            `json:"tasksRunning"`
			LastTaskFailure map[string]any `json:"lastTaskFailure"`
		} `json:"app"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		httpJSON(t, "GET", base+"/v2/apps/broken?embed=app.lastTaskFailure", nil, &app)
		if msg, _ := app.App.LastTaskFailure["message"].(string); strings.Contains(msg, missing) && strings.Contains(msg, "404") {
			break
		}
		if time.Now().After(deadline) || app.App.TasksRunning > 0 {
			t.Fatalf("an app whose artifact answers 404: %+v", app.App)
		}
	}
	if st := app.App.LastTaskFailure["state"]; st != "TASK_FAILED" {
		t.Fatalf("lastTaskFailure: %v", app.App.LastTaskFailure)
	}

	for body, path := range map[string]string{
		`{"id": "/bad", "cmd": "true", "fetch": [{"uri": "hdfs://namenode/x.tgz"}]}`:              "/fetch(0)/uri",
		`{"id": "/bad", "cmd": "true", "fetch": [{"uri": "http://h/x", "destPath": "../../x"}]}`:  "/fetch(0)/destPath",
		`{"id": "/bad", "cmd": "true", "uris": ["http://h/a", "ftp://h/b"]}`:                      "/uris(1)",
		`{"id": "/bad", "cmd": "true", "uris": ["http://h/a"], "fetch": [{"uri": "http://h/b"}]}`: "/uris",
	} {
		var bad struct {
			Details []struct {
				Path string `json:"path"`
			} `json:"details"`
		}
		if code := httpJSON(t, "POST", base+"/v2/apps", json.RawMessage(body), &bad); code != http.StatusUnprocessableEntity || len(bad.Details) != 1 || bad.Details[0].Path != path {
			t.Errorf("%s: %d %+v, want 422 at %s", body, code, bad, path)
		}
	}
}
