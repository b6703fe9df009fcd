package resources

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"
)

func mustRanges(t testing.TB, s string) Ranges {
	t.Helper()
	r, err := ParseRanges(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRanges(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"", "[]", false},
		{"[]", "[]", false},
		{"[31000-32000]", "[31000-32000]", false},
		{"31000-32000", "[31000-32000]", false},
		{"[8080]", "[8080-8080]", false},
		{" [ 3-4 , 1-2 ] ", "[1-4]", false},             // adjacent merge
		{"[1-10, 5-20, 30-30]", "[1-20, 30-30]", false}, // overlap merge
		{"[5-1]", "", true},
		{"[a-b]", "", true},
		{"[1-]", "", true},
	}
	for _, tt := range tests {
		got, err := ParseRanges(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseRanges(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseRanges(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestRangesSetOperations(t *testing.T) {
	tests := []struct {
		a, b        string
		union, diff string // diff "" means: b is not contained, Subtract fails
		contains    bool
	}{
		{"[1-10]", "[3-4]", "[1-10]", "[1-2, 5-10]", true},
		{"[1-10]", "[1-10]", "[1-10]", "[]", true},
		{"[1-10]", "[1-1]", "[1-10]", "[2-10]", true},
		{"[1-10]", "[10-10]", "[1-10]", "[1-9]", true},
		{"[1-10, 20-30]", "[5-5, 25-30]", "[1-10, 20-30]", "[1-4, 6-10, 20-24]", true},
		{"[1-10]", "[9-12]", "[1-12]", "", false},
		{"[1-10]", "[11-12]", "[1-12]", "", false},
		{"[]", "[1-1]", "[1-1]", "", false},
		{"[1-5]", "[]", "[1-5]", "[1-5]", true},
	}
	for _, tt := range tests {
		a, b := mustRanges(t, tt.a), mustRanges(t, tt.b)
		if got := a.Add(b).String(); got != tt.union {
			t.Errorf("%s + %s = %s, want %s", a, b, got, tt.union)
		}
		if got := a.Contains(b); got != tt.contains {
			t.Errorf("%s contains %s = %v, want %v", a, b, got, tt.contains)
		}
		diff, err := a.Subtract(b)
		if tt.diff == "" {
			if !errors.Is(err, ErrInsufficient) || !diff.Equal(a) {
				t.Errorf("%s - %s = %v, %v; want ErrInsufficient and no change", a, b, diff, err)
			}
			continue
		}
		if err != nil || diff.String() != tt.diff {
			t.Errorf("%s - %s = %v, %v; want %s", a, b, diff, err, tt.diff)
		}
	}
}

func TestRangesTake(t *testing.T) {
	rs := mustRanges(t, "[10-12, 20-25]")
	taken, rest, err := rs.Take(5)
	if err != nil || taken.String() != "[10-12, 20-21]" || rest.String() != "[22-25]" {
		t.Fatalf("Take(5) = %v %v %v", taken, rest, err)
	}
	if _, _, err := rs.Take(10); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("Take(10) of 9: %v", err)
	}
	if taken, rest, err := rs.Take(0); err != nil || len(taken) != 0 || !rest.Equal(rs) {
		t.Fatalf("Take(0) = %v %v %v", taken, rest, err)
	}
}

// TestRangesAgainstNaiveSets checks every operation against a plain set of ints over a small
// universe, for random inputs.
func TestRangesAgainstNaiveSets(t *testing.T) {
	const universe = 64
	rng := rand.New(rand.NewSource(42))
	random := func() (Ranges, map[uint64]bool) {
		set := map[uint64]bool{}
		var rs []Range
		for i := rng.Intn(5); i > 0; i-- {
			b := uint64(rng.Intn(universe))
			e := b + uint64(rng.Intn(8))
			rs = append(rs, Range{b, e})
			for v := b; v <= e; v++ {
				set[v] = true
			}
		}
		r, err := NewRanges(rs...)
		if err != nil {
			t.Fatal(err)
		}
		return r, set
	}
	toSet := func(r Ranges) map[uint64]bool {
		set := map[uint64]bool{}
		for _, x := range r {
			for v := x.Begin; v <= x.End; v++ {
				set[v] = true
			}
		}
		return set
	}
	equal := func(a, b map[uint64]bool) bool {
		if len(a) != len(b) {
			return false
		}
		for k := range a {
			if !b[k] {
				return false
			}
		}
		return true
	}
	for i := 0; i < 2000; i++ {
		a, as := random()
		b, bs := random()
		union := map[uint64]bool{}
		for k := range as {
			union[k] = true
		}
		for k := range bs {
			union[k] = true
		}
		if !equal(toSet(a.Add(b)), union) {
			t.Fatalf("%s + %s = %s", a, b, a.Add(b))
		}
		contains := true
		for k := range bs {
			contains = contains && as[k]
		}
		if a.Contains(b) != contains {
			t.Fatalf("%s contains %s: got %v", a, b, !contains)
		}
		if contains {
			diff, err := a.Subtract(b)
			want := map[uint64]bool{}
			for k := range as {
				if !bs[k] {
					want[k] = true
				}
			}
			if err != nil || !equal(toSet(diff), want) {
				t.Fatalf("%s - %s = %s, %v", a, b, diff, err)
			}
		}
		if a.Count() != uint64(len(as)) {
			t.Fatalf("count of %s = %d, want %d", a, a.Count(), len(as))
		}
		// Normalized: sorted, disjoint, never adjacent.
		for j := 1; j < len(a); j++ {
			if a[j].Begin <= a[j-1].End+1 {
				t.Fatalf("%s is not normalized", a)
			}
		}
	}
}

func TestResourcesArithmetic(t *testing.T) {
	agent := Resources{CPUs: 4, Mem: 8192, Disk: 20000, Ports: Ranges{{31000, 32000}}}
	task := Resources{CPUs: 0.1, Mem: 128, Ports: Ranges{{31000, 31001}}}

	left, err := agent.Subtract(task)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Resources{CPUs: 3.9, Mem: 8064, Disk: 20000, Ports: Ranges{{31002, 32000}}}); !left.Equal(want) {
		t.Fatalf("agent - task = %v, want %v", left, want)
	}
	if back := left.Add(task); !back.Equal(agent) {
		t.Fatalf("(agent - task) + task = %v", back)
	}
	if !task.Fits(agent) || agent.Fits(task) {
		t.Fatal("Fits is backwards")
	}

	// Three decimals: no drift from repeated small steps.
	var sum Resources
	for i := 0; i < 10; i++ {
		sum = sum.Add(Resources{CPUs: 0.1})
	}
	if sum.CPUs != 1 {
		t.Fatalf("ten times 0.1 cpus = %v", sum.CPUs)
	}
	if (Resources{CPUs: 0.1}).Add(Resources{CPUs: 0.2}).CPUs != 0.3 {
		t.Fatal("0.1 + 0.2 != 0.3")
	}

	// Never negative: a subtraction that does not fit names what is short and changes nothing.
	tests := []struct {
		need Resources
		msg  string
	}{
		{Resources{CPUs: 5}, "resources: insufficient cpus: have 4, need 5"},
		{Resources{Mem: 9000}, "resources: insufficient mem: have 8192, need 9000"},
		{Resources{Disk: 20000.001}, "resources: insufficient disk: have 20000, need 20000.001"},
		{Resources{Ports: Ranges{{80, 80}}}, "is not within"},
	}
	for _, tt := range tests {
		got, err := agent.Subtract(tt.need)
		if !errors.Is(err, ErrInsufficient) || !strings.Contains(err.Error(), tt.msg) || !got.Equal(agent) {
			t.Errorf("agent - %v = %v, %v; want %q and no change", tt.need, got, err, tt.msg)
		}
	}
}

func TestParseAndString(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"cpus:4;mem:8192;disk:20000;ports:[31000-32000]", "cpus:4;mem:8192;disk:20000;ports:[31000-32000]", ""},
		{" cpus : 0.5 ; mem:64 ", "cpus:0.5;mem:64", ""},
		{"", "", ""},
		{"cpus:4;cpus:2", "", "cpus given twice"},
		{"gpus:1", "", `unknown resource "gpus"`},
		{"cpus:many", "", `cpus: "many" is not a number`},
		{"cpus", "", "want name:value"},
		{"cpus:-1", "", "resources: cpus: must be >= 0, got -1"},
		{"mem:NaN", "", "mem: must be a finite number"},
		{"ports:[65000-70000]", "", "ports go up to 65535"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) = %v, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	var fe *FieldError
	if _, err := Parse("disk:-5"); !errors.As(err, &fe) || fe.Field != "disk" {
		t.Errorf("a bad field is not a *FieldError naming it: %v", err)
	}
}

func TestJSONForms(t *testing.T) {
	r := Resources{CPUs: 4, Mem: 8192, Disk: 20000, Ports: Ranges{{31000, 32000}, {33000, 33005}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"cpus":4,"mem":8192,"disk":20000,"ports":"[31000-32000, 33000-33005]"}`; string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
	var back Resources
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(r) {
		t.Fatalf("round trip = %v, %v", back, err)
	}

	arr, err := json.Marshal(r.MesosArray())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(arr), `{"name":"cpus","type":"SCALAR","scalar":{"value":4}}`) ||
		!strings.Contains(string(arr), `{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000},{"begin":33000,"end":33005}]}}`) {
		t.Fatalf("v1 array = %s", arr)
	}
	var fromArr Resources
	if err := json.Unmarshal(arr, &fromArr); err != nil || !fromArr.Equal(r) {
		t.Fatalf("from v1 array = %v, %v", fromArr, err)
	}
	if err := json.Unmarshal([]byte(`[{"name":"gpus","type":"SCALAR","scalar":{"value":1}}]`), &fromArr); err == nil || !strings.Contains(err.Error(), `"gpus"`) {
		t.Fatalf("unknown resource in the array form: %v", err)
	}
	var rs Ranges
	if err := json.Unmarshal([]byte(`{"range":[{"begin":5,"end":1}]}`), &rs); err == nil {
		t.Fatal("a backwards range was accepted")
	}
	if err := json.Unmarshal([]byte(`42`), &rs); err == nil {
		t.Fatal("a number was accepted as ranges")
	}
}

func TestValidateRejectsInfinity(t *testing.T) {
	if err := (Resources{CPUs: math.Inf(1)}).Validate(); err == nil {
		t.Fatal("infinite cpus accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("cpus:4;mem:8192;disk:20000;ports:[31000-32000]")
	f.Add("ports:[1-2, 5-9]")
	// Tricky ones: rounding to nothing, past float64 once rounded, negatives, NaN, repeats.
	f.Add(" cpus : 0.0004 ; mem:1e-3;;")
	f.Add("cpus:1.7976931348623157e308")
	f.Add("cpus:-0;mem:-1")
	f.Add("cpus:NaN;disk:Inf")
	f.Add("cpus:0x1p-2")
	f.Add("cpus:1;cpus:2")
	f.Add("gpus:1")
	f.Add("ports:[65535-65536]")
	f.Add("ports:8080")
	f.Add("ports:[]")
	f.Add("ports:[0-18446744073709551615]")
	f.Add("ports:[5-1]")
	f.Add("cpus")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(r.String())
		if err != nil || !again.Equal(r) {
			t.Fatalf("Parse(%q) = %v, but its String %q parses to %v, %v", s, r, r.String(), again, err)
		}
	})
}

func FuzzParseRanges(f *testing.F) {
	f.Add("[31000-32000, 33000-33005]")
	f.Add("8080")
	f.Add("[1-3, 2-5, 7, 6]")
	f.Add("[0-18446744073709551615, 5]")
	f.Add("[18446744073709551615-18446744073709551615, 0-18446744073709551614]")
	f.Add("[18446744073709551616]")
	f.Add("[-1-5]")
	f.Add("[5-1]")
	f.Add("[1-2-3]")
	f.Add("[,]")
	f.Add("[]")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRanges(s)
		if err != nil {
			return
		}
		again, err := ParseRanges(r.String())
		if err != nil || !again.Equal(r) {
			t.Fatalf("ParseRanges(%q) = %v; its String re-parses to %v, %v", s, r, again, err)
		}
	})
}

func FuzzUnmarshalJSON(f *testing.F) {
	f.Add([]byte(`{"cpus":4,"mem":8192,"ports":"[1-5]"}`))
	f.Add([]byte(`[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]`))
	f.Add([]byte(`[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1}},{"name":"cpus","type":"SCALAR","scalar":{"value":0.2}},
		{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31005},{"begin":31003,"end":32000}]}}]`))
	f.Add([]byte(`{"cpus":1,"ports":{"range":[{"begin":0,"end":18446744073709551615}]}}`))
	f.Add([]byte(`{"cpus":1e308,"mem":-1,"disk":1e-4}`))
	f.Add([]byte(`[{"name":"gpus","type":"SCALAR","scalar":{"value":1}}]`))
	f.Add([]byte(`[{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":5,"end":1}]}}]`))
	f.Add([]byte(`[{"name":"mem"}]`))
	f.Add([]byte(` [null]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`"cpus:1"`))
	f.Add([]byte(``))
	f.Add([]byte(` { "cpus" : -0.5e+1 , "disk":0, "mem": 1.25E2,"ports":"[31000-31001, 5-5]" } `))
	f.Add([]byte(`{"cpus":1,"cpus":2}`))
	f.Add([]byte(`{"cpus":01}`))
	f.Add([]byte(`{"CPUS":1}`))
	f.Add([]byte(`{"cpus":1,}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Resources
		err := json.Unmarshal(b, &r)
		if flat, ok := unmarshalFlat(b); ok {
			// The fast path reads only what the general one reads the same.
			type general Resources // encoding/json without the fast path
			var g general
			gerr := json.Unmarshal(b, &g)
			want := Resources(g)
			want.CPUs, want.Mem, want.Disk = round(want.CPUs), round(want.Mem), round(want.Disk)
			if gerr != nil || err != nil || !flat.Equal(want) || !flat.Equal(r) {
				t.Fatalf("%s: fast path %v, general %v (%v), Unmarshal %v (%v)", b, flat, want, gerr, r, err)
			}
		}
		if err != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			if r.Validate() == nil {
				t.Fatalf("valid %v does not marshal: %v", r, err)
			}
			return
		}
		var again Resources
		if err := json.Unmarshal(out, &again); err != nil || !again.Equal(r) {
			t.Fatalf("%s -> %v -> %s -> %v, %v", b, r, out, again, err)
		}
	})
}

func benchResources() (Resources, Resources) {
	var ports []Range
	for i := uint64(0); i < 10; i++ {
		ports = append(ports, Range{31000 + i*100, 31050 + i*100})
	}
	agent := Resources{CPUs: 32, Mem: 131072, Disk: 1 << 20, Ports: normalize(ports)}
	task := Resources{CPUs: 0.5, Mem: 512, Disk: 100, Ports: Ranges{{31010, 31011}, {31510, 31510}}}
	return agent, task
}

func BenchmarkAdd(b *testing.B) {
	agent, task := benchResources()
	b.ReportAllocs()
	for b.Loop() {
		_ = agent.Add(task)
	}
}

func BenchmarkSubtract(b *testing.B) {
	agent, task := benchResources()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := agent.Subtract(task); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkContains(b *testing.B) {
	agent, task := benchResources()
	b.ReportAllocs()
	for b.Loop() {
		if !agent.Contains(task) {
			b.Fatal("does not contain")
		}
	}
}

func BenchmarkRangesTake(b *testing.B) {
	agent, _ := benchResources()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := agent.Ports.Take(3); err != nil {
			b.Fatal(err)
		}
	}
}
