package chaos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// The APIs whose histories are checked, each against its own model.
const (
	apiSecrets = "secrets" // names under /v1/secrets: a grow-only set per key (values are never readable)
	apiApps    = "apps"    // a Marathon app's label: a register per app id
	apiRuns    = "runs"    // a job's runs: a grow-only set per job, elements chosen by the server
)

// OpInput is what a client asked: a write (a register's put, a set's add) or a read of one key.
type OpInput struct {
	API   string
	Key   string
	Write bool
	// Value is the value put or the element added; "" for an add whose element the server
	// chooses (a job run's id), known from the answer.
	Value string
}

// OpOutput is what the client was answered.
type OpOutput struct {
	Value      string   // a register read: the value, "" for absent
	Set        []string // a set read: its elements, sorted
	Elem       string   // a set add: the element the server chose ("" when unknown)
	Indefinite bool     // no answer, or a 5xx: it may or may not have taken effect
}

// opMeta is shown beside an operation in the visualization.
type opMeta struct{ Via, Answer string }

// History records the operations of the workload's clients: each with its client, invocation
// and completion times (monotonic, since the history began), input and output. An operation
// whose outcome is unknown (no answer, a timeout, a 5xx that may come after the request reached
// the leader) is indefinite: it may have taken effect at any time after its invocation, or
// never, so the check gives it a completion after everything else (porcupine's way of an
// operation that never returned). A definite refusal (4xx) took no effect and is no operation.
// Failed reads change nothing and are not recorded either.
type History struct {
	start time.Time

	mu  sync.Mutex // guards ops
	ops []porcupine.Operation
}

// NewHistory starts an empty history now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the monotonic time of the history (ns since its start), for an invocation.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records an operation invoked at call and completed at ret (indefinite ones: never). via
// and answer (the master asked, what it answered) are shown in the visualization.
func (h *History) Add(client int, in OpInput, call, ret int64, out OpOutput, via, answer string) {
	if out.Indefinite {
		ret = -1 // set to the end of the history when checked
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret, Metadata: opMeta{via, answer}})
}

// Ops are the operations recorded so far, indefinite ones completing after all the others.
func (h *History) Ops() []porcupine.Operation {
	h.mu.Lock()
	ops := slices.Clone(h.ops)
	h.mu.Unlock()
	var end int64
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	for i := range ops {
		if ops[i].Return < 0 {
			ops[i].Return = end + 1
		}
	}
	return ops
}

// LinearizabilityReport is what checking a history found, per API.
type LinearizabilityReport struct {
	Ops        int // operations checked
	Indefinite int
	PerAPI     map[string]int
	Took       time.Duration
	Failures   []string // a non-linearizable API (with its visualization's path), or an unknown result
}

// CheckHistory checks each API's operations against its model, at most timeout each. A
// non-linearizable history, and one the checker could not decide in time (porcupine's Unknown:
// never a pass), is a failure; for those the history and its partial linearizations are written
// as an HTML visualization into dir (made when needed), named in the failure.
func CheckHistory(ops []porcupine.Operation, timeout time.Duration, dir func() string) LinearizabilityReport {
	r := LinearizabilityReport{PerAPI: map[string]int{}}
	start := time.Now()
	byAPI := map[string][]porcupine.Operation{}
	for _, op := range ops {
		in := op.Input.(OpInput)
		byAPI[in.API] = append(byAPI[in.API], op)
		r.Ops++
		r.PerAPI[in.API]++
		if op.Output.(OpOutput).Indefinite {
			r.Indefinite++
		}
	}
	for _, api := range slices.Sorted(func(yield func(string) bool) {
		for a := range byAPI {
			if !yield(a) {
				return
			}
		}
	}) {
		model := registerModel
		if api != apiApps {
			model = setModel(byAPI[api])
		}
		res, info := porcupine.CheckOperationsVerbose(model, byAPI[api], timeout)
		if res == porcupine.Ok {
			continue
		}
		what := fmt.Sprintf("%s: history not linearizable", api)
		if res == porcupine.Unknown {
			what = fmt.Sprintf("%s: linearizability unknown, the checker gave up after %s (not a pass)", api, timeout)
		}
		path := filepath.Join(dir(), "linearizability-"+api+".html")
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			what += fmt.Sprintf(" (visualization not written: %v)", err)
		} else {
			keys := ""
			if res == porcupine.Illegal {
				keys = describeIllegal(model, byAPI[api], timeout)
			}
			what += " (" + keys + "history: " + path + ")"
		}
		r.Failures = append(r.Failures, what)
	}
	r.Took = time.Since(start)
	return r
}

// describeIllegal names the keys whose histories are not linearizable on their own.
func describeIllegal(model porcupine.Model, ops []porcupine.Operation, timeout time.Duration) string {
	var bad []string
	for _, part := range partitionByKey(ops) {
		if porcupine.CheckOperationsTimeout(model, part, timeout) == porcupine.Illegal {
			bad = append(bad, part[0].Input.(OpInput).Key)
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "keys " + strings.Join(bad, " ") + "; "
}

// partitionByKey splits a history into one per key: each key is its own object, and
// linearizability is compositional, so each is checked alone (and stays small).
func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range ops {
		k := op.Input.(OpInput).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// registerModel is a register per key: a write sets it, a read answers it ("" before any
// write: absent).
var registerModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out := input.(OpInput), output.(OpOutput)
		if in.Write {
			return true, in.Value
		}
		return out.Value == state.(string), state
	},
	DescribeOperation: describeOp,
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "absent"
		}
		return state.(string)
	},
	DescribeOperationMetadata: describeMeta,
}

// setModel is a grow-only set per key: an add puts an element in, a read answers every element.
// An add whose element the server chose and whose answer was lost (an indefinite run) may have
// added any element that some read saw and no answered add explains — or none; those
// candidates are worked out from the history first, so the model stays a finite choice.
func setModel(ops []porcupine.Operation) porcupine.Model {
	explained := map[string]bool{}
	seen := map[string]map[string]bool{} // by key
	for _, op := range ops {
		in, out := op.Input.(OpInput), op.Output.(OpOutput)
		switch {
		case in.Write && in.Value != "":
			explained[in.Key+"\x00"+in.Value] = true
		case in.Write && out.Elem != "":
			explained[in.Key+"\x00"+out.Elem] = true
		case !in.Write:
			if seen[in.Key] == nil {
				seen[in.Key] = map[string]bool{}
			}
			for _, e := range out.Set {
				seen[in.Key][e] = true
			}
		}
	}
	candidates := map[string][]string{}
	for k, elems := range seen {
		for e := range elems {
			if !explained[k+"\x00"+e] {
				candidates[k] = append(candidates[k], e)
			}
		}
		sort.Strings(candidates[k])
	}
	m := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []any { return []any{[]string{}} },
		Step: func(state, input, output any) []any {
			s := state.([]string)
			in, out := input.(OpInput), output.(OpOutput)
			if !in.Write {
				if slices.Equal(s, out.Set) {
					return []any{s}
				}
				return nil
			}
			elem := in.Value
			if elem == "" {
				elem = out.Elem
			}
			if elem != "" {
				return []any{withElem(s, elem)}
			}
			next := []any{s} // took no visible effect
			for _, c := range candidates[in.Key] {
				if _, found := slices.BinarySearch(s, c); !found {
					next = append(next, withElem(s, c))
				}
			}
			return next
		},
		Equal:             func(a, b any) bool { return slices.Equal(a.([]string), b.([]string)) },
		DescribeOperation: describeOp,
		DescribeState: func(state any) string {
			return fmt.Sprintf("%d: {%s}", len(state.([]string)), strings.Join(state.([]string), " "))
		},
		DescribeOperationMetadata: describeMeta,
	}
	return m.ToModel()
}

// withElem is s with e added, a new sorted slice (states are shared, never changed).
func withElem(s []string, e string) []string {
	i, found := slices.BinarySearch(s, e)
	if found {
		return s
	}
	return slices.Insert(slices.Clone(s), i, e)
}

func describeOp(input, output any) string {
	in, out := input.(OpInput), output.(OpOutput)
	var s string
	switch {
	case in.Write && in.API == apiApps:
		s = fmt.Sprintf("put %s", in.Value)
	case in.Write:
		e := in.Value
		if e == "" {
			e = out.Elem
		}
		if e == "" {
			e = "?"
		}
		s = "add " + e
	case in.API == apiApps:
		v := out.Value
		if v == "" {
			v = "absent"
		}
		s = "get → " + v
	default:
		s = fmt.Sprintf("read → %d: {%s}", len(out.Set), strings.Join(out.Set, " "))
	}
	if out.Indefinite {
		s += " (indefinite)"
	}
	return s
}

func describeMeta(info any) string {
	m, ok := info.(opMeta)
	if !ok {
		return ""
	}
	return m.Via + ": " + m.Answer
}

// historyDir is where a failing history's visualization goes: the test's artifact directory
// under go test -artifacts (make test: .artifacts/), else a directory under the system's temp
// dir that outlives the test; one directory for all of a scenario's failing APIs.
func historyDir(t interface{ ArtifactDir() string }) func() string {
	return sync.OnceValue(func() string {
		if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
			return t.ArtifactDir()
		}
		dir, err := os.MkdirTemp("", "agora-chaos-history-")
		if err != nil {
			return os.TempDir()
		}
		return dir
	})
}
