package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

// The workload's checked objects: secrets under lin/<set>/ (a set each), two Marathon apps of no
// instances whose label is a register, and a job without schedules whose runs are a set.
var (
	linSets = []string{"s0", "s1", "s2"}
	linApps = []string{"/chaos-lin/reg-1", "/chaos-lin/reg-2"}
)

const (
	linClients = 3
	linJob     = "chaos-lin-runs"
	linLabel   = "chaos-lin"
	// linCheckTimeout bounds porcupine's search per API; a history of a scenario takes
	// milliseconds on 2 cores, so reaching it means a search blown up, reported as unknown.
	linCheckTimeout = 60 * time.Second
)

// startHistory creates the job whose runs the clients start, and starts the clients.
func (w *Workload) startHistory(t testing.TB) {
	t.Helper()
	job := map[string]any{"id": linJob, "run": map[string]any{"docker": map[string]string{"image": containerdtest.TestAppImage}, "args": []string{"-print-args", "run"},
		"cpus": 0.05, "mem": 32}, "successfulHistoryLimit": 1000, "failedHistoryLimit": 1000} // every run kept: the set the clients read
	if _, err := w.c.Do("POST", "/v1/jobs", job, nil); err != nil {
		t.Fatalf("create %s: %v", linJob, err)
	}
	w.hist = NewHistory()
	w.done.Add(linClients)
	for i := range linClients {
		go w.linClient(i)
	}
}

// linClient is one client of the history: it writes and reads the checked objects through a
// master picked at random each time, followers included, with the API's default consistency.
// Values are unique (client and sequence number). After an indefinite operation it goes on
// under a new client id, as the old operation may still be under way (Jepsen's rule).
func (w *Workload) linClient(n int) {
	defer w.done.Done()
	rng := rand.New(rand.NewPCG(uint64(n), 0x6c696e))
	id := n
	for seq := 1; ; seq++ {
		select {
		case <-w.stop:
			return
		case <-time.After(time.Duration(100+rng.IntN(100)) * time.Millisecond):
		}
		m := w.c.Masters[rng.IntN(len(w.c.Masters))]
		val := fmt.Sprintf("c%d-%d", n, seq)
		h := w.hist
		call := h.Now()
		if rng.IntN(40) < 8 { // read every set at once: one read per set
			w.linReadSets(m, id, call)
			continue
		}
		in, out, code, ok, err := w.linOp(rng, m, val)
		if !ok {
			continue // a failed read changes nothing
		}
		ret := h.Now()
		answer := fmt.Sprint(code)
		switch {
		case err == nil:
		case code >= 400 && code < 500 || notApplied(code, err):
			// Refused: it took no effect, so it is no operation. The workload's own requests are
			// valid, so note a 4xx: only a conflict with another client's change is expected.
			if code != http.StatusConflict && code < 500 {
				w.c.Event("history: %s %s refused by %s: %v", in.API, in.Key, m.Name, err)
			}
			continue
		default:
			// No answer, or a 5xx: it may have reached the leader and committed.
			out = OpOutput{Indefinite: true}
			answer = err.Error()
		}
		h.Add(id, in, call, ret, out, m.Name, answer)
		if out.Indefinite {
			id += linClients
		}
	}
}

// linOp makes one operation of the history through master m: a write (a secret added to a set,
// an app's label, a run started) or a read of one object. ok is false for a read that failed:
// it changes nothing and is no operation.
func (w *Workload) linOp(rng *rand.Rand, m *Node, val string) (in OpInput, out OpOutput, code int, ok bool, err error) {
	switch k := rng.IntN(32); { // with the reads of every set (8 in 40), the mix is 10:8:9:9:1:3
	case k < 10: // add a secret to a set
		set := linSets[rng.IntN(len(linSets))]
		in = OpInput{API: apiSecrets, Key: set, Write: true, Value: val}
		code, err = w.c.call("PUT", m.HTTP+"/v1/secrets/lin/"+set+"/"+val, "", map[string]string{"value": val}, nil)
	case k < 19: // create or change an app's label
		app := linApps[rng.IntN(len(linApps))]
		in = OpInput{API: apiApps, Key: app, Write: true, Value: val}
		def := map[string]any{"id": app, "container": map[string]any{"type": "DOCKER", "docker": map[string]string{"image": containerdtest.TestAppImage}},
			"args": []string{"-sleep", "24h"}, "cpus": 0.01, "mem": 8, "instances": 0, "labels": map[string]string{linLabel: val}}
		// force: a change of an app without instances supersedes its deployment at once.
		code, err = w.c.call("PUT", m.HTTP+"/v2/apps"+app+"?force=true", "", def, nil)
	case k < 28: // read an app's label
		app := linApps[rng.IntN(len(linApps))]
		in = OpInput{API: apiApps, Key: app}
		var got struct {
			App struct {
				Labels map[string]string `json:"labels"`
			} `json:"app"`
		}
		code, err = w.c.call("GET", m.HTTP+"/v2/apps"+app, "", nil, &got)
		switch {
		case err == nil:
			out.Value = got.App.Labels[linLabel]
		case code == http.StatusNotFound:
			err = nil // absent: a read all the same
		default:
			return in, out, code, false, err
		}
	case k < 29: // start a run
		in = OpInput{API: apiRuns, Key: linJob, Write: true}
		var run jobRun
		code, err = w.c.call("POST", m.HTTP+"/v1/jobs/"+linJob+"/runs", "", nil, &run)
		out.Elem = run.ID
	default: // read the runs
		in = OpInput{API: apiRuns, Key: linJob}
		var runs []jobRun
		code, err = w.c.call("GET", m.HTTP+"/v1/jobs/"+linJob+"/runs?include=finished", "", nil, &runs)
		if err != nil {
			return in, out, code, false, err
		}
		out.Set = []string{}
		for _, r := range runs {
			out.Set = append(out.Set, r.ID)
		}
		slices.Sort(out.Set)
	}
	return in, out, code, true, err
}

// linReadSets reads every set at once through master m: one read of each set in the history.
func (w *Workload) linReadSets(m *Node, id int, call int64) {
	h := w.hist
	var list struct {
		Secrets []string `json:"secrets"`
	}
	code, err := w.c.call("GET", m.HTTP+"/v1/secrets", "", nil, &list)
	ret := h.Now()
	if err != nil {
		return // a failed read changes nothing
	}
	for _, set := range linSets {
		elems := []string{}
		for _, s := range list.Secrets {
			if e, ok := strings.CutPrefix(s, "lin/"+set+"/"); ok {
				elems = append(elems, e)
			}
		}
		slices.Sort(elems)
		h.Add(id, OpInput{API: apiSecrets, Key: set}, call, ret, OpOutput{Set: elems}, m.Name, fmt.Sprint(code))
	}
}

// notApplied says whether a write certainly reached no store: the connection was refused, or
// the answer is a 503 a master gives only then — no leader to forward it to, a master that does
// not lead (any more) and did not propose it (raft's ErrNotLeader: the entry was never
// appended), or a framework not loaded yet. Every other 5xx (an unknown outcome, a failed
// forward) and every request left unanswered is indefinite.
func notApplied(code int, err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true // the request was never sent: the master is down
	}
	if code != http.StatusServiceUnavailable {
		return false
	}
	msg := err.Error()
	if strings.Contains(msg, "outcome") {
		return false
	}
	for _, s := range []string{"not the leader", "no leader is elected yet", "not running on this master yet"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkHistory checks the history the clients recorded.
func (w *Workload) checkHistory(t testing.TB, v *Verdict) {
	r := CheckHistory(w.hist.Ops(), linCheckTimeout, historyDir(t))
	for _, f := range r.Failures {
		v.fail("linearizability: %s", f)
	}
	v.note("history %d ops (secrets %d, apps %d, runs %d; %d indefinite) checked in %.3fs", r.Ops,
		r.PerAPI[apiSecrets], r.PerAPI[apiApps], r.PerAPI[apiRuns], r.Indefinite, r.Took.Seconds())
}
