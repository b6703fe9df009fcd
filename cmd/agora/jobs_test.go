package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/frameworks/chronos"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// agora runs the CLI in-process and returns its output.
func agora(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"agora"}, args...), &out, &out)
	return out.String(), err
}

// runsOf is GET /v1/jobs/{id}/runs?include=finished.
func runsOf(t *testing.T, base, job string) []chronos.Run {
	t.Helper()
	var runs []chronos.Run
	if code := httpJSON(t, "GET", base+"/v1/jobs/"+job+"/runs?include=finished", nil, &runs); code != http.StatusOK {
		t.Fatalf("runs of %s: %d", job, code)
	}
	return runs
}

func jobHistory(t *testing.T, base, job string) chronos.History {
	t.Helper()
	var v struct {
		History chronos.History `json:"history"`
	}
	if code := httpJSON(t, "GET", base+"/v1/jobs/"+job+"?embed=history", nil, &v); code != http.StatusOK {
		t.Fatalf("job %s: %d", job, code)
	}
	return v.History
}

func waitJob(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// TestJobsOnContainerd is the batch framework on the real path: agora dev with its agent on
// containerd, jobs of the test image added and run with the CLI. The ETL example DAG runs in
// order; a 6-field cron every 2 s runs and succeeds, its output readable with agora job logs;
// a failing job is retried ON_FAILURE, then FAILED, and `agora job run --wait` exits with the
// task's exit status.
func TestJobsOnContainerd(t *testing.T) {
	t.Parallel() // mostly waiting: it shares the machine with the other tests that wait
	// Host volumes the agent declares: one read-only, one read-write owned by nobody, whom the
	// job runs as.
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "in.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rw, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	base, agentBase, ns := startMarathonDev(t, taskPorts(), "--host-volume", "inputs="+ro, "--host-volume", "results="+rw+":rw")
	waitJob(t, "the batch framework", 20*time.Second, func() bool { return httpJSON(t, "GET", base+"/v1/jobs", nil, nil) == http.StatusOK })

	out, err := agora(t, "job", "add", "--master", base, "../../examples/jobs/etl.json")
	if err != nil || strings.Count(out, "added") != 4 {
		t.Fatalf("job add etl.json: %v\n%s", err, out)
	}
	if out, err := agora(t, "job", "add", "--master", base, "../../examples/jobs/cleanup.json"); err != nil {
		t.Fatalf("job add cleanup.json: %v\n%s", err, out)
	}
	out, err = agora(t, "job", "run", "--master", base, "etl.extract", "--wait") // the flag after the id, as README writes it
	if err != nil || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("job run --wait etl.extract: %v\n%s", err, out)
	}
	t.Logf("agora job run --wait etl.extract:\n%s", out)
	waitJob(t, "etl.load to succeed", 90*time.Second, func() bool { return jobHistory(t, base, "etl.load").SuccessCount == 1 })
	ex := runsOf(t, base, "etl.extract")[0]
	load := runsOf(t, base, "etl.load")
	if len(load) != 1 || load[0].Trigger != chronos.TriggerDependency {
		t.Fatalf("load runs: %+v", load)
	}
	for _, job := range []string{"etl.transform-orders", "etl.transform-customers"} {
		rs := runsOf(t, base, job)
		if len(rs) != 1 || rs[0].Status != chronos.RunSuccess || rs[0].CreatedAt.Before(*ex.CompletedAt) || load[0].CreatedAt.Before(*rs[0].CompletedAt) {
			t.Fatalf("%s ran out of order: %+v (extract ended %s, load created %s)", job, rs, ex.CompletedAt, load[0].CreatedAt)
		}
	}
	logs, err := agora(t, "job", "logs", "--master", base, "etl.load", load[0].ID)
	if err != nil || !strings.Contains(logs, "args: -print-args load") {
		t.Fatalf("job logs: %v\n%s", err, logs)
	}

	every2s := `{"id": "every-2s", "run": {"docker": {"image": "` + containerdtest.TestAppImage + `"}, "args": ["-print-args", "tick"], "cpus": 0.1, "mem": 32},
		"schedules": [{"id": "s", "cron": "*/2 * * * * *"}]}`
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(every2s), nil); code != http.StatusCreated {
		t.Fatalf("POST every-2s: %d", code)
	}
	waitJob(t, "two scheduled runs to succeed", 60*time.Second, func() bool { return jobHistory(t, base, "every-2s").SuccessCount >= 2 })
	for _, r := range runsOf(t, base, "every-2s") {
		if r.Status == chronos.RunSuccess && (r.ScheduledAt == nil || r.ScheduledAt.Second()%2 != 0 || *r.ExitStatus != 0 || len(r.Tasks) != 1) {
			t.Fatalf("scheduled run: %+v", r)
		}
	}
	httpJSON(t, "DELETE", base+"/v1/jobs/every-2s?stopCurrentJobRuns=true", nil, nil)

	// A secret from the masters' store reaches the job's container only.
	if code := httpJSON(t, "PUT", base+"/v1/secrets/backup/dbpass", map[string]string{"value": "s3cr3t-9"}, nil); code != http.StatusNoContent {
		t.Fatalf("PUT secret: %d", code)
	}
	backup := `{"id": "backup", "run": {"docker": {"image": "` + containerdtest.TestAppImage + `"}, "args": ["-print-env"], "cpus": 0.1, "mem": 32,
		"env": {"DB_PASS": {"secret": "db"}}, "secrets": {"db": {"source": "backup/dbpass"}}}}`
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(backup), nil); code != http.StatusCreated {
		t.Fatalf("POST backup: %d", code)
	}
	if out, err := agora(t, "job", "run", "--master", base, "backup", "--wait"); err != nil {
		t.Fatalf("job run backup: %v\n%s", err, out)
	}
	if logs, err := agora(t, "job", "logs", "--master", base, "backup", runsOf(t, base, "backup")[0].ID); err != nil || !strings.Contains(logs, "DB_PASS=s3cr3t-9") {
		t.Fatalf("the job's container did not get its secret: %v\n%s", err, logs)
	}
	// Host volumes: one read-only by its path, one read-write by its name with a relative path
	// in the sandbox.
	vols := fmt.Sprintf(`{"id": "vols", "run": {"cmd": "cat /in/in.txt; if touch /in/x 2>/dev/null; then echo WROTE; else echo READONLY; fi; echo done > out/result.txt",
		"cpus": 0.1, "mem": 32, "volumes": [{"containerPath": "/in", "hostPath": %q, "mode": "RO"}, {"containerPath": "out", "hostPath": "results", "mode": "RW"}]}}`, ro)
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(vols), nil); code != http.StatusCreated {
		t.Fatalf("POST vols: %d", code)
	}
	// What the agent does not declare, or declares read-only, is refused at once, naming it.
	for hostPath, mode := range map[string]string{"/": "RO", "/etc": "RO", t.TempDir(): "RO", ro: "RW", "inputs": "RW"} {
		var e struct{ Field, Message string }
		bad := fmt.Sprintf(`{"id": "bad-vol", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "volumes": [{"containerPath": "/x", "hostPath": %q, "mode": %q}]}}`, hostPath, mode)
		if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(bad), &e); code != http.StatusUnprocessableEntity || e.Field != "run.volumes[0].hostPath" {
			t.Fatalf("a job mounting %s %s: %d %+v, want 422 naming run.volumes[0].hostPath", hostPath, mode, code, e)
		}
	}
	if out, err := agora(t, "job", "run", "--master", base, "vols", "--wait"); err != nil {
		t.Fatalf("job run vols: %v\n%s", err, out)
	}
	if logs, err := agora(t, "job", "logs", "--master", base, "vols", runsOf(t, base, "vols")[0].ID); err != nil || logs != "from the host\nREADONLY\n" {
		t.Fatalf("job logs vols: %v %q, want the host's file and a read-only mount", err, logs)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "result.txt")); err != nil || string(b) != "done\n" {
		t.Fatalf("the read-write volume: %q %v", b, err)
	}
	// Metronome's run.user is honoured (a uid of no entry gets its own number as group); the
	// job above ran as nobody, whom the result file belongs to.
	if fi, err := os.Stat(filepath.Join(rw, "result.txt")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Fatalf("the result file's owner: %v %v, want nobody (65534)", fi, err)
	}
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(`{"id": "whoami", "run": {"cmd": "echo $(id -u):$(id -g)", "cpus": 0.1, "mem": 32, "user": "4321"}}`), nil); code != http.StatusCreated {
		t.Fatalf("POST whoami: %d", code)
	}
	if out, err := agora(t, "job", "run", "--master", base, "whoami", "--wait"); err != nil {
		t.Fatalf("job run whoami: %v\n%s", err, out)
	}
	if logs, err := agora(t, "job", "logs", "--master", base, "whoami", runsOf(t, base, "whoami")[0].ID); err != nil || logs != "4321:4321\n" {
		t.Fatalf("job logs whoami: %v %q, want 4321:4321", err, logs)
	}
	noAnswerHolds(t, "s3cr3t-9", base+"/v1/jobs/backup", base+"/v1/jobs/backup/runs?include=finished", base+"/v1/tasks", agentBase+"/v1/tasks")

	fails := `{"id": "fails", "run": {"docker": {"image": "` + containerdtest.TestAppImage + `"}, "args": ["-exit", "3"], "cpus": 0.1, "mem": 32,
		"restart": {"policy": "ON_FAILURE", "backoffLimit": 1, "backoffSeconds": 0.5}}}`
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(fails), nil); code != http.StatusCreated {
		t.Fatalf("POST fails: %d", code)
	}
	out, err = agora(t, "job", "run", "--master", base, "--wait", "fails")
	var es exitStatus
	if !errors.As(err, &es) || es.code != 3 || !strings.Contains(out, "attempt 2") {
		t.Fatalf("job run --wait fails: %v (want exit status 3 after 2 attempts)\n%s", err, out)
	}
	rs := runsOf(t, base, "fails")
	if len(rs) != 1 || rs[0].Status != chronos.RunFailed || len(rs[0].Tasks) != 2 || !strings.Contains(rs[0].Reason, "exit status 3") {
		t.Fatalf("failed run: %+v", rs)
	}
	out, err = agora(t, "job", "list", "--master", base)
	if err != nil || !strings.Contains(out, "etl.extract") || !strings.Contains(out, "0 2 * * * (Europe/Berlin)") || !strings.Contains(out, "after etl.transform-orders, etl.transform-customers") {
		t.Fatalf("job list: %v\n%s", err, out)
	}
	if out, err := agora(t, "job", "runs", "--master", base, "fails"); err != nil || !strings.Contains(out, "FAILED") {
		t.Fatalf("job runs: %v\n%s", err, out)
	}
	// Deleting with dependants is refused; nothing is left running at the end.
	if code := httpJSON(t, "DELETE", base+"/v1/jobs/etl.extract", nil, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("delete a parent: %d", code)
	}
	waitJob(t, "no task container left", 30*time.Second, func() bool { return containersIn(t, ns) == 0 || onlyCleanup(t, base) })
}

// onlyCleanup says whether the only active runs are the every-minute cleanup job's.
func onlyCleanup(t *testing.T, base string) bool {
	var jobs []struct {
		ID         string        `json:"id"`
		ActiveRuns []chronos.Run `json:"activeRuns"`
	}
	httpJSON(t, "GET", base+"/v1/jobs?embed=activeRuns", nil, &jobs)
	for _, j := range jobs {
		if j.ID != "cleanup" && len(j.ActiveRuns) > 0 {
			return false
		}
	}
	return true
}

// TestCronRunsExactlyOnceAcrossLeaderKill: a schedule fires every second for half a minute on
// a 3-master cluster with an agent on containerd; the leader is killed (SIGKILL) a third of the
// way. Every due second is accounted for exactly once — a run, or recorded missed — and no
// run's task ran twice. It mostly waits, so it runs in parallel with other tests that do.
func TestCronRunsExactlyOnceAcrossLeaderKill(t *testing.T) {
	t.Parallel()
	const window = 30 * time.Second
	sock := containerdtest.Socket(t)
	ns := testNamespace(t)
	masters := startThreeMasters(t)
	waitLeader := func(via, not string) string { return waitLeaderVia(t, via, not) }
	leader := waitLeader(masters[0].http, "")
	startCmd(t, []string{"agent", "--join", masters[1].goss, "--data-dir", t.TempDir(), "--containerd", sock, "--containerd-namespace", ns,
		"--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resources", "cpus:2;mem:2048;disk:100"}, `API:\s+(http://\S+)`)
	waitAgents(t, leader, func(as []api.Agent) bool { return len(as) == 1 })

	var follower masterProc
	for _, m := range masters {
		if m.http != leader {
			follower = m
		}
	}
	spec := `{"id": "every-second", "run": {"docker": {"image": "` + containerdtest.TestAppImage + `"}, "args": ["-print-args"], "cpus": 0.05, "mem": 32},
		"schedules": [{"id": "s", "cron": "* * * * * *"}], "successfulHistoryLimit": 1000, "failedHistoryLimit": 1000}`
	waitJob(t, "the job created", 20*time.Second, func() bool {
		return httpJSON(t, "POST", follower.http+"/v1/jobs", json.RawMessage(spec), nil) == http.StatusCreated
	})
	created := time.Now()
	time.Sleep(window / 3)
	for _, m := range masters {
		if m.http == leader {
			if err := m.p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Log("leader killed")
	newLeader := waitLeader(follower.http, leader)
	time.Sleep(time.Until(created.Add(window)))
	// Stop the schedule, then let every run end.
	waitJob(t, "the schedule deleted", 20*time.Second, func() bool {
		return httpJSON(t, "DELETE", newLeader+"/v1/jobs/every-second/schedules/s", nil, nil) == http.StatusNoContent
	})
	waitJob(t, "every run to end", 90*time.Second, func() bool {
		var runs []chronos.Run // a 503 while the masters elect again (a loaded machine): ask again
		if httpJSON(t, "GET", newLeader+"/v1/jobs/every-second/runs?include=finished", nil, &runs) != http.StatusOK {
			return false
		}
		for _, r := range runs {
			if r.Active() {
				return false
			}
		}
		return true
	})
	runs := runsOf(t, newLeader, "every-second")
	h := jobHistory(t, newLeader, "every-second")
	seen := map[time.Time]string{}
	var maxLag time.Duration
	for _, r := range runs {
		if r.ScheduledAt == nil {
			t.Fatalf("a run without its scheduled time: %+v", r)
		}
		if other, ok := seen[*r.ScheduledAt]; ok {
			t.Fatalf("%s is due once, but has runs %s and %s", r.ScheduledAt, other, r.ID)
		}
		seen[*r.ScheduledAt] = r.ID
		maxLag = max(maxLag, r.CreatedAt.Sub(*r.ScheduledAt))
		started := 0
		for _, tk := range r.Tasks {
			if tk.StartedAt != nil {
				started++
			}
		}
		if started > 1 || r.Status != chronos.RunSuccess {
			t.Fatalf("run %s: %s with %d tasks started: %+v", r.ID, r.Status, started, r.Tasks)
		}
	}
	if h.MissedCount > len(h.MissedRuns) {
		t.Fatalf("more missed (%d) than the history lists (%d): cannot check every second", h.MissedCount, len(h.MissedRuns))
	}
	for _, m := range h.MissedRuns {
		if id, ok := seen[m.ScheduledAt]; ok {
			t.Fatalf("%s both ran (%s) and was missed (%s)", m.ScheduledAt, id, m.Reason)
		}
		seen[m.ScheduledAt] = "missed"
	}
	var times []time.Time
	for at := range seen {
		times = append(times, at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap != time.Second {
			t.Fatalf("due seconds %s and %s: %s apart, one is unaccounted for", times[i-1], times[i], gap)
		}
	}
	if want := int(window/time.Second) * 5 / 6; len(times) < want {
		t.Fatalf("%d due seconds accounted for in %s, want at least %d", len(times), window, want)
	}
	t.Logf("%d due seconds: %d runs (created at most %s late), %d missed (%s)", len(times), len(runs), maxLag, h.MissedCount, missedReasons(h))
}

func missedReasons(h chronos.History) string {
	n := map[string]int{}
	for _, m := range h.MissedRuns {
		n[m.Reason]++
	}
	var parts []string
	for r, c := range n {
		parts = append(parts, fmt.Sprintf("%d: %s", c, r))
	}
	return strings.Join(parts, "; ")
}
