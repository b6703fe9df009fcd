package resources

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Resources is a bundle of one agent's resources, or what a task uses: the scalars Mesos and
// Marathon use (cpus, mem and disk in MiB) and a set of ports. Its JSON is the shape of an
// agent's resources in Mesos's /master/state:
//
//	{"cpus": 4, "mem": 8192, "disk": 20000, "ports": "[31000-32000]"}
//
// Scalars keep three decimals, as Mesos's fixed-point arithmetic does, so adding and
// subtracting many times never drifts (0.1 + 0.2 is 0.3).
type Resources struct {
	CPUs  float64 `json:"cpus"`
	Mem   float64 `json:"mem"`
	Disk  float64 `json:"disk"`
	Ports Ranges  `json:"ports"`
}

// FieldError says which field of a bundle is wrong and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "resources: " + e.Field + ": " + e.Msg }

// round keeps three decimals.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }

// Validate rejects negative, NaN and infinite scalars and ports above 65535.
func (r Resources) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpus", r.CPUs}, {"mem", r.Mem}, {"disk", r.Disk}} {
		switch {
		case math.IsNaN(f.v) || math.IsInf(f.v, 0):
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("must be a finite number, got %v", f.v)}
		case f.v < 0:
			return &FieldError{Field: f.name, Msg: fmt.Sprintf("must be >= 0, got %v", f.v)}
		}
	}
	if n := len(r.Ports); n > 0 && r.Ports[n-1].End > 65535 {
		return &FieldError{Field: "ports", Msg: fmt.Sprintf("ports go up to 65535, got %d", r.Ports[n-1].End)}
	}
	return nil
}

// IsEmpty reports whether the bundle holds nothing.
func (r Resources) IsEmpty() bool {
	return round(r.CPUs) == 0 && round(r.Mem) == 0 && round(r.Disk) == 0 && len(r.Ports) == 0
}

// Equal compares to three decimals.
func (r Resources) Equal(o Resources) bool {
	return round(r.CPUs) == round(o.CPUs) && round(r.Mem) == round(o.Mem) &&
		round(r.Disk) == round(o.Disk) && r.Ports.Equal(o.Ports)
}

// Add returns the sum.
func (r Resources) Add(o Resources) Resources {
	return Resources{
		CPUs:  round(r.CPUs + o.CPUs),
		Mem:   round(r.Mem + o.Mem),
		Disk:  round(r.Disk + o.Disk),
		Ports: r.Ports.Add(o.Ports),
	}
}

// Contains reports whether o fits within r.
func (r Resources) Contains(o Resources) bool {
	return round(o.CPUs) <= round(r.CPUs) && round(o.Mem) <= round(r.Mem) &&
		round(o.Disk) <= round(r.Disk) && r.Ports.Contains(o.Ports)
}

// Fits reports whether r fits within in.
func (r Resources) Fits(in Resources) bool { return in.Contains(r) }

// Subtract returns r less o. It never goes below zero: when o does not fit in r it fails with
// ErrInsufficient naming the first resource that is short, and returns r unchanged.
func (r Resources) Subtract(o Resources) (Resources, error) {
	for _, f := range []struct {
		name       string
		have, need float64
	}{{"cpus", r.CPUs, o.CPUs}, {"mem", r.Mem, o.Mem}, {"disk", r.Disk, o.Disk}} {
		if round(f.need) > round(f.have) {
			return r, fmt.Errorf("%w %s: have %s, need %s", ErrInsufficient, f.name, fmtScalar(f.have), fmtScalar(f.need))
		}
	}
	ports, err := r.Ports.Subtract(o.Ports)
	if err != nil {
		return r, err
	}
	return Resources{
		CPUs:  round(r.CPUs - o.CPUs),
		Mem:   round(r.Mem - o.Mem),
		Disk:  round(r.Disk - o.Disk),
		Ports: ports,
	}, nil
}

func fmtScalar(v float64) string { return strconv.FormatFloat(round(v), 'f', -1, 64) }

// String is the form of the agent's --resources flag: "cpus:4;mem:8192;disk:20000;ports:[31000-32000]",
// leaving out what is zero or empty.
func (r Resources) String() string {
	var parts []string
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpus", r.CPUs}, {"mem", r.Mem}, {"disk", r.Disk}} {
		if round(f.v) != 0 {
			parts = append(parts, f.name+":"+fmtScalar(f.v))
		}
	}
	if len(r.Ports) > 0 {
		parts = append(parts, "ports:"+r.Ports.String())
	}
	return strings.Join(parts, ";")
}

// Parse reads the agent's --resources flag: "cpus:4;mem:8192;disk:20000;ports:[31000-32000]".
func Parse(s string) (Resources, error) {
	var r Resources
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		name = strings.TrimSpace(name)
		if !ok {
			return Resources{}, fmt.Errorf("resources: %q: want name:value", part)
		}
		if seen[name] {
			return Resources{}, fmt.Errorf("resources: %s given twice", name)
		}
		seen[name] = true
		value = strings.TrimSpace(value)
		if name == "ports" {
			ports, err := ParseRanges(value)
			if err != nil {
				return Resources{}, err
			}
			r.Ports = ports
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return Resources{}, fmt.Errorf("resources: %s: %q is not a number", name, value)
		}
		switch name {
		case "cpus":
			r.CPUs = round(v)
		case "mem":
			r.Mem = round(v)
		case "disk":
			r.Disk = round(v)
		default:
			return Resources{}, fmt.Errorf("resources: unknown resource %q (know cpus, mem, disk, ports)", name)
		}
	}
	return r, r.Validate()
}

// Resource is one element of the Mesos v1 API's array form.
type Resource struct {
	Name   string  `json:"name"`
	Type   string  `json:"type"` // SCALAR or RANGES
	Scalar *Scalar `json:"scalar,omitempty"`
	Ranges *struct {
		Range []Range `json:"range"`
	} `json:"ranges,omitempty"`
}

// Scalar is a Mesos v1 scalar value.
type Scalar struct {
	Value float64 `json:"value"`
}

// MesosArray is the Mesos v1 API's array form of the bundle.
func (r Resources) MesosArray() []Resource {
	var out []Resource
	for _, f := range []struct {
		name string
		v    float64
	}{{"cpus", r.CPUs}, {"mem", r.Mem}, {"disk", r.Disk}} {
		if round(f.v) != 0 {
			out = append(out, Resource{Name: f.name, Type: "SCALAR", Scalar: &Scalar{Value: round(f.v)}})
		}
	}
	if len(r.Ports) > 0 {
		res := Resource{Name: "ports", Type: "RANGES"}
		res.Ranges = &struct {
			Range []Range `json:"range"`
		}{Range: r.Ports}
		out = append(out, res)
	}
	return out
}

// UnmarshalJSON reads the /state object form, or the Mesos v1 array form.
func (r *Resources) UnmarshalJSON(b []byte) error {
	if flat, ok := unmarshalFlat(b); ok {
		*r = flat
		return nil
	}
	trimmed := strings.TrimSpace(string(b))
	if strings.HasPrefix(trimmed, "[") {
		var arr []Resource
		if err := json.Unmarshal(b, &arr); err != nil {
			return fmt.Errorf("resources: %w", err)
		}
		var out Resources
		for _, res := range arr {
			switch {
			case res.Name == "ports" && res.Ranges != nil:
				ports, err := NewRanges(res.Ranges.Range...)
				if err != nil {
					return err
				}
				out.Ports = out.Ports.Add(ports)
			case res.Scalar == nil:
				return fmt.Errorf("resources: %q: want a scalar value", res.Name)
			case res.Name == "cpus":
				out.CPUs = round(out.CPUs + res.Scalar.Value)
			case res.Name == "mem":
				out.Mem = round(out.Mem + res.Scalar.Value)
			case res.Name == "disk":
				out.Disk = round(out.Disk + res.Scalar.Value)
			default:
				return fmt.Errorf("resources: unknown resource %q", res.Name)
			}
		}
		*r = out
		return nil
	}
	type plain Resources
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("resources: %w", err)
	}
	*r = Resources(p)
	r.CPUs, r.Mem, r.Disk = round(r.CPUs), round(r.Mem), round(r.Disk)
	return nil
}

// MinTaskMem is the least memory (MiB) a task may ask for: the container's limit must hold
// runc's own start-up, which runs inside it. Measured with runc 1.1.5 on Linux 6.18 (cgroup
// v1): runc's init peaks at 2.2 to 2.7 MiB in the container's cgroup, so a limit of 3 MiB or
// less fails the start ("unable to set memory limit", or the init killed before the task
// runs) and 4 MiB is the least that starts; 6 MiB, Docker's own floor, leaves room for other
// runc versions and cgroup v2, which charges the kernel's memory too. Mesos raised any lower
// limit to 32 MiB and Metronome's job schema asks for at least 32.
const MinTaskMem = 6.0

// unmarshalFlat reads the object form as Agora writes it — cpus, mem and disk as JSON numbers,
// ports as the string form, each name exactly so, no escapes — in one pass, without encoding/json
// reading the bytes again: each task a registration lists carries one, and a new leader reads
// 100,000 of them within a second of its election. ok is false for anything else (names in
// another case, ports in Mesos v1's form, a bad number, bad JSON), which the general path reads
// and judges; where both read a form, they agree (FuzzUnmarshalJSON checks it).
func unmarshalFlat(b []byte) (r Resources, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return r, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return r, skipSpace(b, i+1) == len(b)
	}
	for {
		key, next, ok := flatString(b, i)
		if !ok {
			return r, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return r, false
		}
		i = skipSpace(b, i+1)
		switch key {
		case "cpus", "mem", "disk":
			end := numberEnd(b, i)
			if end < 0 {
				return r, false
			}
			v, err := strconv.ParseFloat(string(b[i:end]), 64)
			if err != nil {
				return r, false
			}
			switch key {
			case "cpus":
				r.CPUs = round(v)
			case "mem":
				r.Mem = round(v)
			default:
				r.Disk = round(v)
			}
			i = end
		case "ports":
			s, next, ok := flatString(b, i)
			if !ok {
				return r, false
			}
			ports, err := ParseRanges(s)
			if err != nil {
				return r, false
			}
			r.Ports, i = ports, next
		default:
			return r, false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return r, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return r, skipSpace(b, i+1) == len(b)
		default:
			return r, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// flatString reads a JSON string at b[i] that has no escapes and only printable ASCII, and
// returns it and the index after its closing quote.
func flatString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return "", 0, false
		}
	}
	return "", 0, false
}

// numberEnd is the index after the JSON number at b[i] (RFC 8259's grammar: -?int frac? exp?),
// or -1 when none starts there.
func numberEnd(b []byte, i int) int {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}
