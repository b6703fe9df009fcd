package agent

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/agent/fetcher/fetchertest"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/task"
)

// TestArtifactsFetchedIntoTheSandbox: a task, run as the agent's default user (nobody), reads a
// fetched file and a file of an extracted tarball, runs a fetched executable, and may change
// what was fetched (it owns it); an artifact fetched with cache by a second task is not
// downloaded again; a 404 fails the launch with the URI in the message; so does an artifact
// over the agent's size bound.
func TestArtifactsFetchedIntoTheSandbox(t *testing.T) {
	srv := fetchertest.NewServer(t, map[string][]byte{
		"/greeting.txt":  []byte("hello from the artifact"),
		"/bundle.tar.gz": fetchertest.TarGz(t, map[string]string{"bundle/data.txt": "from the tarball"}),
		"/tool.sh":       []byte("#!/bin/sh\necho tool ran as $(id -un)\n"),
		"/big.bin":       bytes.Repeat([]byte("x"), 64<<10),
	})
	e := newEnv(t)
	a := e.start(func(c *Config) {
		c.Fetch.MaxBytes = 32 << 10
		c.Fetch.AllowNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")} // the server's
	})

	uses := api.TaskInfo{TaskID: "uses-artifacts", FrameworkID: "fw-1", Name: "/fetcher", Resources: mustRes(t, 0.1, 32),
		Cmd: `cat greeting.txt; echo; cat bundle/data.txt; echo; ./tool.sh; echo changed >> greeting.txt && echo appended`,
		Artifacts: []api.Artifact{
			{URI: srv.URL + "/greeting.txt", Cache: true},
			{URI: srv.URL + "/bundle.tar.gz", Extract: true},
			{URI: srv.URL + "/tool.sh", Executable: true},
		}}
	a.launch(t, uses)
	e.fm.waitState("uses-artifacts", task.Finished, 60*time.Second)
	out := a.logs(t, "uses-artifacts", "stdout")
	for _, want := range []string{"hello from the artifact\n", "from the tarball\n", "tool ran as nobody\n", "appended\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the task's stdout lacks %q:\n%s\nstderr: %s", want, out, a.logs(t, "uses-artifacts", "stderr"))
		}
	}

	again := uses
	again.TaskID, again.Cmd = "cached", "cat greeting.txt"
	again.Artifacts = again.Artifacts[:1]
	a.launch(t, again)
	e.fm.waitState("cached", task.Finished, 60*time.Second)
	if out := a.logs(t, "cached", "stdout"); out != "hello from the artifact" {
		t.Errorf("the second task read %q from the cached artifact", out)
	}
	if n := srv.Count("/greeting.txt"); n != 1 {
		t.Errorf("greeting.txt, fetched with cache by two tasks, was downloaded %d times", n)
	}

	for id, uri := range map[string]string{"missing": srv.URL + "/missing.tar.gz", "too-big": srv.URL + "/big.bin"} {
		ti := api.TaskInfo{TaskID: id, FrameworkID: "fw-1", Name: "/fetcher", Resources: mustRes(t, 0.1, 32), Cmd: "true",
			Artifacts: []api.Artifact{{URI: uri, Extract: true}}}
		a.launch(t, ti)
		st := e.fm.waitState(id, task.Failed, 60*time.Second)
		if st.Reason != task.ReasonContainerLaunchFailed || !strings.Contains(st.Message, uri) {
			t.Errorf("%s: %s %q, want REASON_CONTAINER_LAUNCH_FAILED naming %s", id, st.Reason, st.Message, uri)
		}
		t.Logf("%s: %s", id, st.Message)
	}
	if st, _ := e.fm.last("too-big"); !strings.Contains(st.Message, "--fetch-max-bytes") {
		t.Errorf("too-big: %q does not name the bound", st.Message)
	}
}

// TestArtifactsFromNonPublicAddressesRefused: an agent as it comes downloads no artifact from a
// loopback (or link-local, private) address — a task cannot make it read the host's own
// services or a cloud's metadata — and the launch fails naming the flag that would allow it.
func TestArtifactsFromNonPublicAddressesRefused(t *testing.T) {
	srv := fetchertest.NewServer(t, map[string][]byte{"/internal.txt": []byte("not for tasks")})
	e := newEnv(t)
	a := e.start()
	uri := srv.URL + "/internal.txt"
	a.launch(t, api.TaskInfo{TaskID: "nosy", FrameworkID: "fw-1", Name: "/fetcher", Resources: mustRes(t, 0.1, 32), Cmd: "cat internal.txt",
		Artifacts: []api.Artifact{{URI: uri}}})
	st := e.fm.waitState("nosy", task.Failed, 60*time.Second)
	if st.Reason != task.ReasonContainerLaunchFailed || !strings.Contains(st.Message, uri) || !strings.Contains(st.Message, "--fetch-allow-net 127.0.0.1/32") {
		t.Errorf("nosy: %s %q, want REASON_CONTAINER_LAUNCH_FAILED naming %s and --fetch-allow-net", st.Reason, st.Message, uri)
	}
	if n := srv.Count("/internal.txt"); n != 0 {
		t.Errorf("the agent asked the loopback server %d times", n)
	}
}
