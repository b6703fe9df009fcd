package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/frameworks/chronos"
	"github.com/agora-sched/agora/pkg/containerdtest"
)

// queueEntry is what the tests read of an entry of GET /v2/queue.
type queueEntry struct {
	Count                  int                               `json:"count"`
	ProcessedOffersSummary frameworks.ProcessedOffersSummary `json:"processedOffersSummary"`
	LastUnusedOffers       []frameworks.UnusedOffer          `json:"lastUnusedOffers"`
	WaitingReason          string                            `json:"waitingReason"`
	App                    struct {
		ID string `json:"id"`
	} `json:"app"`
}

// waitQueue polls GET /v2/queue?embed=lastUnusedOffers until the app's entry is as cond wants.
func waitQueue(t *testing.T, base, appID, what string, cond func(queueEntry) bool) queueEntry {
	t.Helper()
	var last queueEntry
	waitJob(t, appID+": "+what, 60*time.Second, func() bool {
		var q struct {
			Queue []queueEntry `json:"queue"`
		}
		if httpJSON(t, "GET", base+"/v2/queue?embed=lastUnusedOffers", nil, &q) != http.StatusOK {
			return false
		}
		for _, e := range q.Queue {
			if e.App.ID == appID {
				last = e
				return cond(e)
			}
		}
		return false
	})
	return last
}

// TestWhyItWaitsOnContainerd: on agora dev (its agent has 2 cpus), an app that needs 4 cpus
// and one whose constraint no agent meets wait, and every place a person looks says why, in
// Marathon's reason names and Agora's words: GET /v2/queue (processedOffersSummary,
// lastUnusedOffers, waitingReason), GET /v2/apps/{id}, `agora app show`, the progress lines of
// `agora app add --wait`, and the UI (a red line on the overview, the apps list, the app and its
// deployment). A job run that needs 8 cpus says why too: its API, `agora job show`, the UI.
func TestWhyItWaitsOnContainerd(t *testing.T) {
	t.Parallel()
	base, _, _ := startMarathonDev(t, taskPorts())
	image := `"container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}}, "args": ["-sleep", "24h"]`
	postApp(t, base, `{"id": "/toobig", `+image+`, "cpus": 4, "mem": 32, "instances": 2}`)
	postApp(t, base, `{"id": "/nowhere", `+image+`, "cpus": 0.1, "mem": 32, "instances": 1, "constraints": [["hostname", "LIKE", "no-such-host"]]}`)

	big := waitQueue(t, base, "/toobig", "the queue says InsufficientCpus", func(e queueEntry) bool {
		return strings.Contains(e.WaitingReason, "InsufficientCpus (needs 4 cpus, ") && len(e.LastUnusedOffers) == 1
	})
	if step := big.ProcessedOffersSummary.RejectSummaryLastOffers[4]; step.Reason != frameworks.InsufficientCpus || step.Declined != 1 || big.Count != 2 {
		t.Fatalf("/toobig in the queue: count %d, rejectSummaryLastOffers %+v", big.Count, big.ProcessedOffersSummary.RejectSummaryLastOffers)
	}
	if u := big.LastUnusedOffers[0]; len(u.Reason) != 1 || u.Reason[0] != frameworks.InsufficientCpus || !strings.HasPrefix(u.Details[0], "needs 4 cpus, ") {
		t.Fatalf("/toobig's last unused offer: %+v", u)
	}
	nowhere := waitQueue(t, base, "/nowhere", "the queue says UnfulfilledConstraint", func(e queueEntry) bool {
		return strings.Contains(e.WaitingReason, `UnfulfilledConstraint (hostname:LIKE:no-such-host: hostname is "`)
	})
	t.Logf("/nowhere waits: %s", nowhere.WaitingReason)

	var one struct {
		App struct {
			WaitingReason string `json:"waitingReason"`
		} `json:"app"`
	}
	if httpJSON(t, "GET", base+"/v2/apps/toobig", nil, &one); !strings.Contains(one.App.WaitingReason, "InsufficientCpus") {
		t.Fatalf("GET /v2/apps/toobig: waitingReason %q", one.App.WaitingReason)
	}
	out, err := agora(t, "app", "show", "toobig", "--master", base)
	if err != nil || !strings.Contains(out, "WAITING:") || !strings.Contains(out, "InsufficientCpus (needs 4 cpus") {
		t.Fatalf("agora app show toobig: %v\n%s", err, out)
	}

	// agora app add --wait says why on its progress lines.
	file := filepath.Join(t.TempDir(), "wide.json")
	if err := os.WriteFile(file, []byte(`{"id": "/wide", `+image+`, "cpus": 3, "mem": 32, "instances": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var progress containerdtest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"agora", "app", "add", file, "--wait", "--master", base}, &progress, io.Discard)
	}()
	waitJob(t, "agora app add --wait to say why", 60*time.Second, func() bool {
		return strings.Contains(progress.String(), "0/1 running — last ") && strings.Contains(progress.String(), "declined: ")
	})
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stopped watching") {
		t.Fatalf("agora app add --wait, stopped: %v", err)
	}
	t.Logf("agora app add --wait:\n%s", progress.String())
	if !strings.Contains(progress.String(), "InsufficientCpus (needs 3 cpus") {
		t.Fatalf("the progress lines do not say why:\n%s", progress.String())
	}

	// A job run no agent can take.
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(`{"id": "why.big", "run": {"cmd": "true", "cpus": 8, "mem": 32}}`), nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs: %d", code)
	}
	var jobRun chronos.RunView
	if code := httpJSON(t, "POST", base+"/v1/jobs/why.big/runs", nil, &jobRun); code != http.StatusCreated {
		t.Fatalf("POST run: %d", code)
	}
	waitJob(t, "the run to say why it waits", 60*time.Second, func() bool {
		httpJSON(t, "GET", base+"/v1/jobs/why.big/runs/"+jobRun.ID, nil, &jobRun)
		return strings.Contains(jobRun.WaitingReason, "InsufficientCpus (needs 8 cpus")
	})
	if out, err := agora(t, "job", "show", "why.big", "--master", base); err != nil || !strings.Contains(out, "WAITING:") || !strings.Contains(out, "run "+jobRun.ID+": ") ||
		!strings.Contains(out, "InsufficientCpus (needs 8 cpus") {
		t.Fatalf("agora job show why.big: %v\n%s", err, out)
	}

	b := newBrowser(t, base)
	b.open("#/")
	b.waitText("the overview says why /toobig waits", `#waiting [data-waiting-app="/toobig"]`, 30*time.Second, contains("InsufficientCpus (needs 4 cpus"))
	b.waitText("the overview says why the run waits", fmt.Sprintf(`#waiting [data-waiting-run=%q]`, jobRun.ID), 10*time.Second, contains("InsufficientCpus (needs 8 cpus"))
	b.open("#/apps")
	b.waitText("the apps list says why /nowhere waits", `#apps tr[data-waiting="/nowhere"]`, 30*time.Second, contains("UnfulfilledConstraint (hostname:LIKE:no-such-host"))
	b.open("#/apps/toobig")
	b.waitText("the app page says why it waits", "#app-waiting", 30*time.Second, contains("InsufficientCpus (needs 4 cpus"))
	b.waitText("its deployment says what holds it", "#deployments tr[data-deployment-waiting]", 10*time.Second, contains("/toobig waits: "))
	if c := b.color("#app-waiting"); c != "rgb(192, 57, 43)" {
		t.Fatalf("the line that says why is %s, want red (rgb(192, 57, 43))", c)
	}
	b.open("#/jobs/why.big")
	b.waitText("the job page says why its run waits", "#job-waiting", 30*time.Second, contains("InsufficientCpus (needs 8 cpus"))
	b.open("#/jobs")
	b.waitText("the jobs list says why the run waits", fmt.Sprintf(`#jobs tr[data-waiting=%q]`, jobRun.ID), 30*time.Second, contains("InsufficientCpus"))
}

// TestLaunchFailureShowsTheAgentsMessage: an app whose image the agent cannot get fails to
// launch on the agent, and the agent's own message is its lastTaskFailure (GET /v2/apps/{id}
// embeds it by default, as Marathon's), the last failure in its waitingReason while it backs
// off, on `agora app show` and on its page in the UI.
func TestLaunchFailureShowsTheAgentsMessage(t *testing.T) {
	t.Parallel()
	base, _, _ := startMarathonDev(t, taskPorts())
	// Nothing listens on 127.0.0.1:1: the pull fails at once, as it does with no registry.
	postApp(t, base, `{"id": "/noimage", "container": {"type": "DOCKER", "docker": {"image": "127.0.0.1:1/agora/none:latest"}},
		"cpus": 0.1, "mem": 32, "instances": 1, "backoffSeconds": 5}`)
	const agentSays = "containerd: image 127.0.0.1:1/agora/none:latest is not on this agent and pulling"
	var app struct {
		App struct {
			LastTaskFailure *struct {
				State   string `json:"state"`
				Message string `json:"message"`
				TaskID  string `json:"taskId"`
				Host    string `json:"host"`
				SlaveID string `json:"slaveId"`
			} `json:"lastTaskFailure"`
			WaitingReason string `json:"waitingReason"`
		} `json:"app"`
	}
	waitJob(t, "lastTaskFailure with the agent's message", 60*time.Second, func() bool {
		httpJSON(t, "GET", base+"/v2/apps/noimage", nil, &app)
		f := app.App.LastTaskFailure
		return f != nil && strings.Contains(f.Message, agentSays) && strings.Contains(app.App.WaitingReason, "last failure: TASK_FAILED")
	})
	if f := app.App.LastTaskFailure; f.State != "TASK_FAILED" || f.TaskID == "" || f.SlaveID == "" || f.Host == "" {
		t.Fatalf("lastTaskFailure: %+v", f)
	}
	if !strings.Contains(app.App.WaitingReason, agentSays) {
		t.Fatalf("waitingReason: %q", app.App.WaitingReason)
	}
	out, err := agora(t, "app", "show", "noimage", "--master", base)
	if err != nil || !strings.Contains(out, "LAST FAILURE:") || !strings.Contains(out, agentSays) {
		t.Fatalf("agora app show noimage: %v\n%s", err, out)
	}
	b := newBrowser(t, base)
	b.open("#/apps/noimage")
	b.waitText("the app page shows the agent's message", "#app-waiting", 30*time.Second, contains(agentSays))
}

// color is the computed color of the element sel.
func (b *browser) color(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? getComputedStyle(e).color : ""; })()`, sel)))
	if err != nil {
		b.t.Fatalf("the color of %s: %v", sel, err)
	}
	return got
}

func contains(s string) func(string) bool {
	return func(got string) bool { return strings.Contains(got, s) }
}

// TestProgressLinesSayWhyWithoutFlooding: the --wait progress prints a line when the instances
// change or why they wait changes; when only the counts in why change (one more offer
// declined), at most one line every whyEvery.
func TestProgressLinesSayWhyWithoutFlooding(t *testing.T) {
	var p progressLines
	t0 := time.Now()
	steps := []struct {
		at        time.Duration
		line, why string
		want      string // "" for no line
	}{
		{0, "  0/2 running", "", "  0/2 running"},
		{time.Second, "  0/2 running", "", ""},
		{2 * time.Second, "  0/2 running", "last 1 offer declined: 1 InsufficientCpus (needs 4 cpus, vm offers 2)",
			"  0/2 running — last 1 offer declined: 1 InsufficientCpus (needs 4 cpus, vm offers 2)"},
		{7 * time.Second, "  0/2 running", "last 2 offers declined: 2 InsufficientCpus (needs 4 cpus, vm offers 2)", ""},
		{8 * time.Second, "  0/2 running", "last 3 offers declined: 2 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)",
			"  0/2 running — last 3 offers declined: 2 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)"},
		{9 * time.Second, "  0/2 running", "last 4 offers declined: 3 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)", ""},
		{8*time.Second + whyEvery, "  0/2 running", "last 9 offers declined: 8 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)",
			"  0/2 running — last 9 offers declined: 8 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)"},
		{8*time.Second + whyEvery + time.Second, "  1/2 running", "last 9 offers declined: 8 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)",
			"  1/2 running — last 9 offers declined: 8 InsufficientCpus (needs 4 cpus, vm offers 2), 1 UnfulfilledConstraint (x)"},
	}
	for i, s := range steps {
		got, ok := p.next(s.line, s.why, t0.Add(s.at))
		if !ok {
			got = ""
		}
		if got != s.want {
			t.Fatalf("step %d: printed %q, want %q", i, got, s.want)
		}
	}
}
