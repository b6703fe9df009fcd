package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agora-sched/agora/frameworks/chronos"
	"github.com/agora-sched/agora/pkg/api"
)

// chromiumPath is the browser the UI tests drive: AGORA_CHROMIUM (make test sets it from
// scripts/chromium.sh, which installs Debian's chromium when it is missing), else chromium on
// PATH. There is no skipping: without a browser the test fails and says how to get one.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("AGORA_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium for the browser tests: run scripts/chromium.sh (make test does), or set AGORA_CHROMIUM")
	return ""
}

// browser is a headless Chromium tab on the UI, with what the test needs to see in it.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	page  string            // the page in view, for the screenshot's name
	shots map[string][]byte // a screenshot of each page left, saved if the test fails
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	b := &browser{t: t, ctx: ctx, base: base, shots: map[string][]byte{}}
	t.Cleanup(func() {
		if t.Failed() {
			b.saveScreenshots()
		}
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// screenshot takes the page in view into shots.
func (b *browser) screenshot() {
	if b.page == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(90))
	if err != nil {
		b.t.Logf("screenshot of %s: %v", b.page, err)
		return
	}
	b.shots[b.page] = png
}

// saveScreenshots writes a screenshot of every page the test saw, the one in view last, under
// the test's artifact directory (go test -artifacts; make test keeps them in .artifacts/).
func (b *browser) saveScreenshots() {
	b.screenshot()
	dir := b.t.ArtifactDir()
	for page, png := range b.shots {
		name := strings.Trim(strings.NewReplacer("/", "_", "#", "").Replace(page), "_")
		if name == "" {
			name = "overview"
		}
		path := filepath.Join(dir, "ui-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Logf("screenshot: %v", err)
			continue
		}
		b.t.Logf("screenshot of %s: %s", page, path)
	}
}

// open shows a page of the UI (#/apps, #/jobs/ID, ...).
func (b *browser) open(page string) {
	b.t.Helper()
	b.screenshot() // of the page being left
	b.page = page
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(b.base+"/ui/"+page), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
		b.t.Fatalf("open %s: %v", page, err)
	}
}

// waitText waits until the element sel shows text for which ok holds, and returns that text.
// The UI redraws every 2 s, so the element is looked up afresh each time.
func (b *browser) waitText(what, sel string, d time.Duration, ok func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(d)
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : "<none>"; })()`, sel)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		cancel()
		if err == nil {
			last = got
		}
		if err == nil && last != "<none>" && ok(last) {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	errText, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById("error").textContent`))
	b.t.Fatalf("%s on %s: %s shows %q (page error: %q)", what, b.page, sel, last, errText)
	return ""
}

func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s on %s: %v", what, b.page, err)
	}
}

func equals(want string) func(string) bool {
	return func(s string) bool { return strings.TrimSpace(s) == want }
}

// TestWebUI drives the UI in headless Chromium against a real agora dev (raft, containerd,
// both frameworks): the overview lists the agent, an app made through the API appears with
// its instances, scaling it in the UI changes them, a job run shows its state and its place
// in the DAG, a task's page shows the test app's output, and the event page streams live; the
// app's page shows the names it is found by (DNS, service port).
func TestWebUI(t *testing.T) {
	t.Parallel()
	base, _, _ := startMarathonDev(t, taskPorts())
	var agents []api.AgentView
	waitJob(t, "the agent registered", 30*time.Second, func() bool {
		return httpJSON(t, "GET", base+"/v1/agents", nil, &agents) == http.StatusOK && len(agents) == 1 && agents[0].State == "active"
	})
	postApp(t, base, `{"id": "/web", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
		"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": [{"port": 0, "name": "http"}],
		"healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 1, "timeoutSeconds": 2}]}`)
	job := `{"id": "ui.hello", "run": {"docker": {"image": "agora.local/testapp:latest"}, "args": ["-print-args", "hello-from-the-ui-test"], "cpus": 0.1, "mem": 32}}`
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(job), nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs: %d", code)
	}
	child := `{"id": "ui.after", "dependencies": ["ui.hello"], "run": {"cmd": "true", "cpus": 0.1, "mem": 32}}`
	if code := httpJSON(t, "POST", base+"/v1/jobs", json.RawMessage(child), nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs (dependant): %d", code)
	}
	var run chronos.Run
	if code := httpJSON(t, "POST", base+"/v1/jobs/ui.hello/runs", nil, &run); code != http.StatusCreated {
		t.Fatalf("POST run: %d", code)
	}

	b := newBrowser(t, base)

	if out, err := agora(t, "quota", "set", "analytics", "--guarantee", "cpus:0.5;mem:256", "--limit", "cpus:1", "--master", base); err != nil {
		t.Fatalf("agora quota set: %v\n%s", err, out)
	}
	b.open("#/")
	b.waitText("the overview counts the agent", "#agent-count", 20*time.Second, equals("1"))
	b.waitText("the overview shows the role's guarantee", `#quotas tr[data-role="analytics"] .guarantee`, 10*time.Second, equals("cpus 0.5, mem 256"))
	b.waitText("the overview shows the role's limit", `#quotas tr[data-role="analytics"] .limit`, 5*time.Second, equals("cpus 1"))
	b.waitText("the overview lists the agent as active", fmt.Sprintf(`#agents tr[data-agent=%q] .state`, agents[0].ID), 10*time.Second, equals("active"))

	b.open("#/apps")
	b.waitText("the app appears with its instance", `#apps tr[data-app="/web"] .instances`, 60*time.Second, equals("1/1"))
	// An app posted without instances has Marathon's default, 1: so says the UI, so the CLI.
	postApp(t, base, `{"id": "/plain", "cmd": "sleep 86400", "cpus": 0.05, "mem": 16}`)
	b.waitText("an app without instances shows 1 wanted", `#apps tr[data-app="/plain"] .instances`, 60*time.Second, equals("1/1"))
	if out, err := agora(t, "app", "list", "--master", base); err != nil || !regexp.MustCompile(`(?m)^/plain\s+1/1\s`).MatchString(out) {
		t.Fatalf("agora app list: %v\n%s\nwant /plain at 1/1", err, out)
	}

	b.open("#/apps/web")
	b.waitText("the app page shows it healthy", "#app-health", 60*time.Second, equals("1/1"))
	// Its DNS names and its service port with where its healthy instance answers.
	web := waitService(t, base, "/web", func(s api.ServiceEntry) bool { return len(s.Instances) == 1 && len(s.Ports) == 1 })
	b.waitText("the app page shows its DNS name", `#discovery tr[data-dns-name="web.marathon.agora."]`, 20*time.Second,
		func(s string) bool { return strings.Contains(s, "1 healthy instance") })
	b.waitText("the app page shows its named port's SRV name", `#discovery tr[data-dns-name="_http._web._tcp.marathon.agora."]`, 5*time.Second,
		func(s string) bool { return strings.Contains(s, "SRV") })
	endpoint := fmt.Sprintf("%s:%d", web.Instances[0].Host, web.Instances[0].Ports[0])
	b.waitText("the app page shows its service port and where it answers", fmt.Sprintf(`#discovery tr[data-service-port="%d"]`, web.Ports[0].ServicePort), 5*time.Second,
		func(s string) bool { return strings.Contains(s, endpoint) })
	b.run("scale to 3 in the UI",
		chromedp.Focus(chromedp.CSS("#scale-input")), // the page does not redraw under a focused input
		chromedp.SetValue(chromedp.CSS("#scale-input"), "3"),
		chromedp.Click(chromedp.CSS("#scale-button")),
	)
	b.waitText("the app page shows 3 running", "#app-instances", 90*time.Second, equals("3/3"))
	var app struct {
		App struct {
			Instances    int `json:"instances"`
			TasksRunning int `json:"tasksRunning"`
		} `json:"app"`
	}
	if httpJSON(t, "GET", base+"/v2/apps/web", nil, &app); app.App.Instances != 3 || app.App.TasksRunning != 3 {
		t.Fatalf("after scaling in the UI the API says %+v, want 3 instances running", app.App)
	}

	b.open("#/jobs/ui.hello")
	b.waitText("the job run appears and succeeds", fmt.Sprintf(`#runs tr[data-run=%q] .status`, run.ID), 90*time.Second, equals("SUCCESS"))
	b.open("#/jobs")
	b.waitText("the DAG draws the job", `#dag g[data-node="ui.hello"] text`, 20*time.Second, equals("ui.hello"))
	b.waitText("the DAG draws the dependency", `#dag path[data-edge="ui.hello→ui.after"]`, 5*time.Second, func(string) bool { return true })

	httpJSON(t, "GET", base+"/v1/jobs/ui.hello/runs/"+run.ID, nil, &run)
	if len(run.Tasks) == 0 {
		t.Fatalf("run %s has no task", run.ID)
	}
	b.open("#/tasks/" + run.Tasks[len(run.Tasks)-1].ID)
	b.waitText("the task page shows the test app's output", "#logs", 30*time.Second, func(s string) bool { return strings.Contains(s, "hello-from-the-ui-test") })
	b.waitText("the task page shows its state", "#task-state", 5*time.Second, equals("TASK_FINISHED"))

	b.open("#/events")
	b.waitText("the event stream attaches", `#events tr[data-event="event_stream_attached"]`, 20*time.Second, func(string) bool { return true })
	if code := httpJSON(t, "PUT", base+"/v2/apps/web", map[string]int{"instances": 1}, nil); code != http.StatusOK {
		t.Fatalf("scale down: %d", code)
	}
	b.waitText("a deployment's events arrive live", `#events tr[data-event="deployment_success"]`, 60*time.Second, func(string) bool { return true })
}

// TestWebUIAsksForAToken: on a dev node with API tokens, the UI's files load but the API answers
// 401; the UI asks for a token, keeps it, and then shows the cluster. A viewer's token sees a
// task's state but, in place of its logs, why not (they need an operator's token).
func TestWebUIAsksForAToken(t *testing.T) {
	t.Parallel()
	tokens := filepath.Join(t.TempDir(), "tokens")
	const viewer, operator = "viewer-token-for-the-ui-0123", "operator-token-for-the-ui-0123"
	if err := os.WriteFile(tokens, []byte("viewer browser "+viewer+"\noperator ci "+operator+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _, _ := startMarathonDev(t, taskPorts(), "--tokens-file", tokens)
	waitJob(t, "the service framework ready", 30*time.Second, func() bool {
		code, _, _ := call(t, "POST", base+"/v2/apps", operator, json.RawMessage(`{"id": "/seen", "container": {"type": "DOCKER", "docker": {"image": "agora.local/testapp:latest"}},
			"args": ["-sleep", "24h"], "cpus": 0.1, "mem": 32, "instances": 1}`))
		return code == http.StatusCreated
	})
	var tasks struct {
		Tasks []appTask `json:"tasks"`
	}
	waitJob(t, "the app's task running", 60*time.Second, func() bool {
		_, body, _ := call(t, "GET", base+"/v2/apps/seen/tasks", viewer, nil)
		return json.Unmarshal([]byte(body), &tasks) == nil && len(tasks.Tasks) == 1 && tasks.Tasks[0].State == "TASK_RUNNING"
	})
	b := newBrowser(t, base)
	b.open("#/")
	b.waitText("the UI asks for a token", "#error", 20*time.Second, func(s string) bool { return strings.Contains(s, "token") })
	b.run("enter the token",
		chromedp.SetValue(chromedp.CSS("#token-input"), viewer),
		chromedp.Click(chromedp.CSS("#token-save")),
	)
	b.waitText("the overview with the token", "#agent-count", 30*time.Second, equals("1"))
	b.waitText("the leader line", "#leader", 10*time.Second, func(s string) bool { return strings.HasPrefix(s, "leader m-") })

	b.open("#/tasks/" + tasks.Tasks[0].ID)
	b.waitText("the task's state for a viewer", "#task-state", 20*time.Second, equals("TASK_RUNNING"))
	b.waitText("why a viewer sees no logs", "#logs-denied", 10*time.Second, func(s string) bool {
		return strings.Contains(s, "operator") && strings.Contains(s, "--viewers-read-logs")
	})
}
