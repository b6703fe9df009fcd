package chaos

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// hand is a hand-made history: operations with the times given; ret -1 is indefinite.
type hand struct{ h History }

func (x *hand) op(client int, in OpInput, call int64, out OpOutput, ret int64) {
	if ret < 0 {
		out.Indefinite = true
	}
	x.h.ops = append(x.h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret, Metadata: opMeta{"m1", "hand-made"}})
}

func put(key, v string) OpInput      { return OpInput{API: apiApps, Key: key, Write: true, Value: v} }
func get(key string) OpInput         { return OpInput{API: apiApps, Key: key} }
func add(api, key, e string) OpInput { return OpInput{API: api, Key: key, Write: true, Value: e} }
func read(api, key string) OpInput   { return OpInput{API: api, Key: key} }

func TestCheckHistoryFailsOnAStaleReadAndSavesIt(t *testing.T) {
	var x hand
	// Client 0's write is acknowledged at 10; client 1 reads at 20..30 from a master that has not
	// applied it: the old value after an acknowledged write.
	x.op(0, put("/r", "v1"), 0, OpOutput{}, 10)
	x.op(0, put("/r", "v2"), 11, OpOutput{}, 15)
	x.op(1, get("/r"), 20, OpOutput{Value: "v1"}, 30)
	// Another key, linearizable on its own: it must not be named.
	x.op(2, put("/other", "a"), 0, OpOutput{}, 5)
	x.op(2, get("/other"), 6, OpOutput{Value: "a"}, 7)
	// A set read after an acknowledged add that misses it.
	x.op(0, add(apiSecrets, "s0", "e1"), 40, OpOutput{}, 50)
	x.op(1, read(apiSecrets, "s0"), 60, OpOutput{Set: []string{}}, 70)
	dir := t.ArtifactDir()
	r := CheckHistory(x.h.Ops(), 10*time.Second, func() string { return dir })
	if r.Ops != 7 || r.Indefinite != 0 {
		t.Errorf("counted %d ops, %d indefinite; want 7, 0", r.Ops, r.Indefinite)
	}
	if len(r.Failures) != 2 {
		t.Fatalf("want a failure for apps and one for secrets, got %q", r.Failures)
	}
	for i, api := range []string{apiApps, apiSecrets} {
		f := r.Failures[i]
		path := filepath.Join(dir, "linearizability-"+api+".html")
		if !strings.HasPrefix(f, api+": history not linearizable") || !strings.Contains(f, path) {
			t.Errorf("failure %q: want %s not linearizable, naming %s", f, api, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the visualization was not saved: %v", err)
		}
		if !strings.Contains(string(b), "<html") || !strings.Contains(string(b), "hand-made") {
			t.Errorf("%s is not the history's visualization (%d bytes)", path, len(b))
		}
	}
	if !strings.Contains(r.Failures[0], "keys /r;") {
		t.Errorf("want only key /r named: %q", r.Failures[0])
	}
}

func TestCheckHistoryPassesWithIndefiniteOps(t *testing.T) {
	var x hand
	// A put that timed out, seen by a read while it was still unanswered; then one that timed
	// out and never took effect.
	x.op(0, put("/r", "v1"), 0, OpOutput{}, -1)
	x.op(1, get("/r"), 5, OpOutput{Value: "v1"}, 6)
	x.op(3, put("/r", "v2"), 10, OpOutput{}, 12)
	x.op(1, get("/r"), 13, OpOutput{Value: "v2"}, 14)
	x.op(3, put("/r", "v3"), 15, OpOutput{}, -1)
	x.op(1, get("/r"), 20, OpOutput{Value: "v2"}, 21)
	// A read of an app before anything was put: absent.
	x.op(2, get("/new"), 0, OpOutput{Value: ""}, 1)
	// A run whose POST timed out (its id unknown) shows up in a read; an answered one after.
	x.op(0, add(apiRuns, "job", ""), 0, OpOutput{}, -1)
	x.op(1, read(apiRuns, "job"), 5, OpOutput{Set: []string{"r1"}}, 6)
	x.op(4, add(apiRuns, "job", ""), 7, OpOutput{Elem: "r2"}, 8)
	x.op(1, read(apiRuns, "job"), 9, OpOutput{Set: []string{"r1", "r2"}}, 10)
	// A secret whose PUT failed with a 5xx and that no read ever sees.
	x.op(2, add(apiSecrets, "s0", "e1"), 0, OpOutput{}, -1)
	x.op(2, add(apiSecrets, "s0", "e2"), 3, OpOutput{}, 4)
	x.op(1, read(apiSecrets, "s0"), 30, OpOutput{Set: []string{"e2"}}, 31)
	ops := x.h.Ops()
	for _, op := range ops {
		if op.Output.(OpOutput).Indefinite && op.Return != 32 {
			t.Errorf("an indefinite op completes at %d, want the end of the history (32)", op.Return)
		}
	}
	r := CheckHistory(ops, 10*time.Second, func() string { t.Fatal("a visualization for a linearizable history"); return "" })
	if len(r.Failures) > 0 {
		t.Fatalf("a linearizable history failed: %q", r.Failures)
	}
	if r.Ops != 14 || r.Indefinite != 4 || r.PerAPI[apiApps] != 7 || r.PerAPI[apiRuns] != 4 {
		t.Errorf("counted %d ops (%v), %d indefinite", r.Ops, r.PerAPI, r.Indefinite)
	}
}

func TestCheckHistoryFailsOnRunsInventedOrLost(t *testing.T) {
	for name, ops := range map[string]func(x *hand){
		"invented": func(x *hand) {
			x.op(0, add(apiRuns, "job", ""), 0, OpOutput{Elem: "r1"}, 2)
			x.op(1, read(apiRuns, "job"), 3, OpOutput{Set: []string{"r1", "r9"}}, 4)
		},
		"seen then lost": func(x *hand) {
			x.op(0, add(apiRuns, "job", ""), 0, OpOutput{}, -1)
			x.op(1, read(apiRuns, "job"), 3, OpOutput{Set: []string{"r1"}}, 4)
			x.op(1, read(apiRuns, "job"), 5, OpOutput{Set: []string{}}, 6)
		},
		"seen before it was asked": func(x *hand) {
			x.op(1, read(apiRuns, "job"), 0, OpOutput{Set: []string{"r1"}}, 1)
			x.op(0, add(apiRuns, "job", ""), 5, OpOutput{}, -1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			var x hand
			ops(&x)
			dir := t.ArtifactDir()
			r := CheckHistory(x.h.Ops(), 10*time.Second, func() string { return dir })
			if len(r.Failures) != 1 || !strings.HasPrefix(r.Failures[0], "runs: history not linearizable") {
				t.Fatalf("want runs not linearizable, got %q", r.Failures)
			}
		})
	}
}

func TestNotAppliedOnlyWhenCertain(t *testing.T) {
	for _, c := range []struct {
		code int
		err  error
		want bool
	}{
		{0, &url.Error{Op: "Put", URL: "http://m1", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, true},
		{503, errors.New(`PUT http://m1/v1/secrets/x: 503 {"message": "no leader is elected yet; retry in a moment"}`), true},
		{503, errors.New(`PUT http://m1/v1/secrets/x: 503 {"message": "raft: not the leader, and no leader is known; retry"}`), true},
		{503, errors.New(`POST http://m1/v1/jobs/j/runs: 503 {"message": "chronos: could not commit: raft: not the leader, and no leader is known"}`), true},
		{503, errors.New(`PUT http://m1/v2/apps/a: 503 {"message": "the service framework is not running on this master yet; retry"}`), true},
		{503, errors.New(`PUT http://m1/v1/secrets/x: 503 {"message": "raft: outcome of the write is unknown: leadership lost while committing log; retry"}`), false},
		{500, errors.New(`PUT http://m1/v2/apps/a: 500 {"message": "raft: outcome of the write is unknown: not the leader"}`), false},
		{502, errors.New(`PUT http://m1/v1/secrets/x: 502 {"message": "forwarding to the leader at m2 failed: EOF; retry"}`), false},
		{0, context.DeadlineExceeded, false},
	} {
		if got := notApplied(c.code, c.err); got != c.want {
			t.Errorf("notApplied(%d, %v) = %t, want %t", c.code, c.err, got, c.want)
		}
	}
}
