// Command external-framework is a small Agora framework written with nothing but the standard
// library, to show the HTTP scheduler API from outside: it subscribes, launches N tasks of the
// test app into the offers it gets, acknowledges every status update, and once all N run it
// kills them and tears itself down (or, with -keep, leaves them running and exits; subscribing
// again with the printed framework id within -failover-timeout picks them up again).
//
//	go run ./examples/external-framework -master http://127.0.0.1:8080 -tasks 3
//
// The protocol, in short (master/httpapi/scheduler.go has it whole):
//
//   - POST /api/v1/scheduler {"type":"SUBSCRIBE","subscribe":{"framework_info":{...}}} answers
//     200 and stays open: a stream of events, one JSON object per line when the request says
//     Accept: application/x-ndjson (RecordIO otherwise). The Agora-Stream-Id header names it.
//   - Every other call is its own POST to /api/v1/scheduler with the framework_id in the body and
//     the Agora-Stream-Id header; 202 means done.
//   - Events: SUBSCRIBED, OFFERS, RESCIND, UPDATE (acknowledge those with a uuid), FAILURE,
//     ERROR, HEARTBEAT.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"
)

// The few shapes of the API this framework uses, written out here rather than imported, as a
// framework in another language would.
type (
	call struct {
		FrameworkID string         `json:"framework_id,omitempty"`
		Type        string         `json:"type"`
		Subscribe   map[string]any `json:"subscribe,omitempty"`
		Accept      map[string]any `json:"accept,omitempty"`
		Decline     map[string]any `json:"decline,omitempty"`
		Kill        map[string]any `json:"kill,omitempty"`
		Acknowledge map[string]any `json:"acknowledge,omitempty"`
		Reconcile   map[string]any `json:"reconcile,omitempty"`
	}
	event struct {
		Type       string `json:"type"`
		Subscribed *struct {
			FrameworkID string `json:"framework_id"`
		} `json:"subscribed"`
		Offers *struct {
			Offers []offer `json:"offers"`
		} `json:"offers"`
		Update *struct {
			Status status `json:"status"`
		} `json:"update"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	offer struct {
		ID        string         `json:"id"`
		AgentID   string         `json:"agent_id"`
		Hostname  string         `json:"hostname"`
		Resources offerResources `json:"resources"`
	}
	offerResources struct {
		CPUs  float64     `json:"cpus"`
		Mem   float64     `json:"mem"`
		Ports [][2]uint64 `json:"ports"`
	}
	status struct {
		TaskID  string `json:"task_id"`
		AgentID string `json:"agent_id"`
		State   string `json:"state"`
		Message string `json:"message"`
		UUID    string `json:"uuid"`
	}
)

// UnmarshalJSON reads Agora's resources: ports come as Mesos writes them, "[31000-31009, 31020-31020]".
func (r *offerResources) UnmarshalJSON(b []byte) error {
	var raw struct {
		CPUs  float64 `json:"cpus"`
		Mem   float64 `json:"mem"`
		Ports string  `json:"ports"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	r.CPUs, r.Mem, r.Ports = raw.CPUs, raw.Mem, nil
	for _, part := range strings.Split(strings.Trim(raw.Ports, "[] "), ",") {
		var begin, end uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(part), "%d-%d", &begin, &end); err == nil {
			r.Ports = append(r.Ports, [2]uint64{begin, end})
		}
	}
	return nil
}

type config struct {
	master          string
	name            string
	frameworkID     string
	tasks           int
	image           string
	cpus, mem       float64
	keep            bool
	failoverTimeout time.Duration
	timeout         time.Duration
	token           string // an operator's API token, when the masters ask for one
}

func main() {
	var c config
	flag.StringVar(&c.master, "master", envOr("AGORA_MASTER", "http://127.0.0.1:8080"), "any master's HTTP API")
	flag.StringVar(&c.name, "name", "external-example", "framework name")
	flag.StringVar(&c.frameworkID, "framework-id", "", "subscribe again as this framework (after -keep)")
	flag.IntVar(&c.tasks, "tasks", 3, "how many tasks to run")
	flag.StringVar(&c.image, "image", "agora.local/testapp:latest", "image of each task")
	flag.Float64Var(&c.cpus, "cpus", 0.1, "cpus per task")
	flag.Float64Var(&c.mem, "mem", 32, "memory per task, MiB")
	flag.BoolVar(&c.keep, "keep", false, "leave the tasks running and exit once they run")
	flag.DurationVar(&c.failoverTimeout, "failover-timeout", time.Minute, "how long the master keeps the tasks after this program goes")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.StringVar(&c.token, "token", os.Getenv("AGORA_TOKEN"), "an API token with the operator role, when the masters have a --tokens-file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "external-framework:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// framework is one subscription's state.
type framework struct {
	c        config
	out      io.Writer
	url      string
	fwID     string
	streamID string
	states   map[string]string // task id → latest state
	pending  []string          // tasks to launch
	// reconciling holds the tasks asked about after subscribing again: offers wait until the
	// master has said where each one stands.
	reconciling map[string]bool
	killing     bool
}

func run(ctx context.Context, c config, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	f := &framework{c: c, out: out, url: strings.TrimRight(c.master, "/") + "/api/v1/scheduler", states: map[string]string{}, reconciling: map[string]bool{}}
	for i := range c.tasks {
		id := fmt.Sprintf("%s-task-%d", c.name, i)
		if c.frameworkID != "" {
			f.reconciling[id] = true
		} else {
			f.pending = append(f.pending, id)
		}
	}
	info := map[string]any{"name": c.name, "failover_timeout": c.failoverTimeout.Seconds()}
	if c.frameworkID != "" {
		info["id"] = c.frameworkID
	}
	body, _ := json.Marshal(call{Type: "SUBSCRIBE", Subscribe: map[string]any{"framework_info": info}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	f.authorize(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("subscribe: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	f.streamID = resp.Header.Get("Agora-Stream-Id")
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64<<10), 16<<20)
	for lines.Scan() {
		var ev event
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			return fmt.Errorf("event %q: %w", lines.Text(), err)
		}
		done, err := f.handle(ctx, ev)
		if err != nil || done {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gave up: %w; task states: %v", err, f.states)
	}
	return fmt.Errorf("the master closed the stream: %v", lines.Err())
}

// handle acts on one event; it reports true when the work is done.
func (f *framework) handle(ctx context.Context, ev event) (bool, error) {
	switch ev.Type {
	case "SUBSCRIBED":
		f.fwID = ev.Subscribed.FrameworkID
		fmt.Fprintf(f.out, "subscribed as framework %s\n", f.fwID)
		if len(f.reconciling) > 0 {
			// Back after a failover: ask where the tasks stand before launching any.
			var tasks []map[string]string
			for id := range f.reconciling {
				tasks = append(tasks, map[string]string{"task_id": id})
			}
			return false, f.call(ctx, call{Type: "RECONCILE", Reconcile: map[string]any{"tasks": tasks}})
		}
	case "OFFERS":
		for _, o := range ev.Offers.Offers {
			if err := f.useOffer(ctx, o); err != nil {
				return false, err
			}
		}
	case "UPDATE":
		st := ev.Update.Status
		if st.UUID != "" {
			if err := f.call(ctx, call{Type: "ACKNOWLEDGE", Acknowledge: map[string]any{"agent_id": st.AgentID, "task_id": st.TaskID, "uuid": st.UUID}}); err != nil {
				return false, err
			}
		}
		if f.reconciling[st.TaskID] {
			delete(f.reconciling, st.TaskID)
			if terminal(st.State) {
				f.pending = append(f.pending, st.TaskID) // gone: run it again
			} else {
				f.states[st.TaskID] = st.State
			}
			fmt.Fprintf(f.out, "reconciled task %s: %s\n", st.TaskID, st.State)
			return f.progress(ctx, st)
		}
		fmt.Fprintf(f.out, "task %s on %s: %s (update %s) %s\n", st.TaskID, st.AgentID, st.State, st.UUID, st.Message)
		f.states[st.TaskID] = st.State
		return f.progress(ctx, st)
	case "ERROR":
		return false, fmt.Errorf("the master ended the subscription: %s", ev.Error.Message)
	}
	return false, nil
}

// useOffer launches as many of the tasks still to run as the offer holds, each with one port,
// and declines the rest; once all are launched, it declines for a long while.
func (f *framework) useOffer(ctx context.Context, o offer) error {
	var tasks []map[string]any
	cpus, mem := o.Resources.CPUs, o.Resources.Mem
	ports := o.Resources.Ports
	for len(f.reconciling) == 0 && len(f.pending) > 0 && !f.killing && cpus >= f.c.cpus && mem >= f.c.mem && len(ports) > 0 {
		port := ports[0][0]
		if ports[0][0] == ports[0][1] {
			ports = ports[1:]
		} else {
			ports[0][0]++
		}
		cpus, mem = cpus-f.c.cpus, mem-f.c.mem
		tasks = append(tasks, map[string]any{
			"task_id":       f.pending[0],
			"image":         f.c.image,
			"args":          []string{"-sleep", "24h"},
			"resources":     map[string]any{"cpus": f.c.cpus, "mem": f.c.mem, "ports": fmt.Sprintf("[%d-%d]", port, port)},
			"health_checks": []map[string]any{{"protocol": "MESOS_HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30, "intervalSeconds": 2}},
		})
		f.pending = f.pending[1:]
	}
	if len(tasks) == 0 {
		refuse := 60
		if len(f.reconciling) > 0 || len(f.pending) > 0 {
			refuse = 1 // still waiting to launch
		}
		return f.call(ctx, call{Type: "DECLINE", Decline: map[string]any{"offer_ids": []string{o.ID}, "filters": map[string]any{"refuse_seconds": refuse}}})
	}
	fmt.Fprintf(f.out, "launching %d tasks on %s\n", len(tasks), o.Hostname)
	return f.call(ctx, call{Type: "ACCEPT", Accept: map[string]any{
		"offer_ids":  []string{o.ID},
		"operations": []map[string]any{{"type": "LAUNCH", "launch": map[string]any{"task_infos": tasks}}},
		"filters":    map[string]any{"refuse_seconds": 1},
	}})
}

// progress follows the tasks: a task that fails is launched again; once all run, they are
// killed (or left, with -keep); once all are killed, the framework tears itself down.
func (f *framework) progress(ctx context.Context, st status) (bool, error) {
	if terminal(st.State) && st.State != "TASK_KILLED" && !f.killing && f.states[st.TaskID] == st.State {
		return false, fmt.Errorf("task %s ended %s: %s", st.TaskID, st.State, st.Message)
	}
	count := func(state string) int {
		n := 0
		for _, s := range f.states {
			if s == state {
				n++
			}
		}
		return n
	}
	if !f.killing && count("TASK_RUNNING") == f.c.tasks {
		fmt.Fprintf(f.out, "all %d tasks running\n", f.c.tasks)
		if f.c.keep {
			fmt.Fprintf(f.out, "leaving them running; subscribe again within %s with -framework-id %s\n", f.c.failoverTimeout, f.fwID)
			return true, nil
		}
		f.killing = true
		for id := range f.states {
			if err := f.call(ctx, call{Type: "KILL", Kill: map[string]any{"task_id": id}}); err != nil {
				return false, err
			}
		}
	}
	if f.killing && count("TASK_KILLED") == f.c.tasks {
		if err := f.call(ctx, call{Type: "TEARDOWN"}); err != nil {
			return false, err
		}
		fmt.Fprintf(f.out, "all %d tasks killed; framework torn down\n", f.c.tasks)
		return true, nil
	}
	return false, nil
}

func terminal(state string) bool {
	switch state {
	case "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN":
		return true
	}
	return false
}

// call makes one call on the subscription.
func (f *framework) call(ctx context.Context, c call) error {
	c.FrameworkID = f.fwID
	body, _ := json.Marshal(c)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Agora-Stream-Id", f.streamID)
	f.authorize(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Type, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return errors.New(c.Type + ": " + resp.Status + ": " + string(bytes.TrimSpace(b)))
	}
	return nil
}

// authorize adds the API token, if any.
func (f *framework) authorize(req *http.Request) {
	if f.c.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.c.token)
	}
}
