package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrInsufficient: a subtraction or take asked for more than there is.
var ErrInsufficient = errors.New("resources: insufficient")

// Range is an inclusive range of values, like ports 31000-32000.
type Range struct {
	Begin uint64 `json:"begin"`
	End   uint64 `json:"end"`
}

// Ranges is a set of values kept as sorted, disjoint, non-adjacent ranges. Every function
// here returns normalized Ranges; build them with ParseRanges or NewRanges.
type Ranges []Range

// NewRanges normalizes rs: sorts it and merges overlapping and adjacent ranges. A range whose
// Begin is after its End is an error.
func NewRanges(rs ...Range) (Ranges, error) {
	for _, r := range rs {
		if r.Begin > r.End {
			return nil, fmt.Errorf("resources: range %d-%d: begin is after end", r.Begin, r.End)
		}
	}
	return normalize(slices.Clone(rs)), nil
}

func normalize(rs []Range) Ranges {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Begin < b.Begin:
			return -1
		case a.Begin > b.Begin:
			return 1
		}
		return 0
	})
	out := Ranges{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if last.End == ^uint64(0) || r.Begin <= last.End+1 {
			last.End = max(last.End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// ParseRanges reads the Mesos form "[31000-32000, 33000-33005]"; brackets are optional and a
// single value "8080" is a range of one.
func ParseRanges(s string) (Ranges, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "[")
	s = strings.TrimSuffix(s, "]")
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var rs []Range
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		b, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("resources: range %q: %q is not a number", part, lo)
		}
		e := b
		if isRange {
			if e, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 64); err != nil {
				return nil, fmt.Errorf("resources: range %q: %q is not a number", part, hi)
			}
		}
		rs = append(rs, Range{Begin: b, End: e})
	}
	return NewRanges(rs...)
}

// String is the Mesos form "[31000-32000, 33000-33005]"; "[]" when empty.
func (rs Ranges) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(r.Begin, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(r.End, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// Count is how many values the ranges hold.
func (rs Ranges) Count() uint64 {
	var n uint64
	for _, r := range rs {
		n += r.End - r.Begin + 1
	}
	return n
}

// Equal reports whether both hold the same values.
func (rs Ranges) Equal(o Ranges) bool { return slices.Equal(rs, o) }

// Add is the union.
func (rs Ranges) Add(o Ranges) Ranges {
	return normalize(append(slices.Clone(rs), o...))
}

// Contains reports whether every value of o is in rs.
func (rs Ranges) Contains(o Ranges) bool {
	i := 0
	for _, r := range o {
		for i < len(rs) && rs[i].End < r.Begin {
			i++
		}
		if i == len(rs) || rs[i].Begin > r.Begin || rs[i].End < r.End {
			return false
		}
	}
	return true
}

// Subtract removes o from rs. Every value of o must be in rs, or it fails with ErrInsufficient
// and changes nothing.
func (rs Ranges) Subtract(o Ranges) (Ranges, error) {
	if !rs.Contains(o) {
		return rs, fmt.Errorf("%w: %s is not within %s", ErrInsufficient, o, rs)
	}
	out := slices.Clone(rs)
	for _, r := range o {
		var next Ranges
		for _, have := range out {
			if r.End < have.Begin || r.Begin > have.End {
				next = append(next, have)
				continue
			}
			if have.Begin < r.Begin {
				next = append(next, Range{have.Begin, r.Begin - 1})
			}
			if have.End > r.End {
				next = append(next, Range{r.End + 1, have.End})
			}
		}
		out = next
	}
	return out, nil
}

// Take picks the n lowest values: what it took and what is left.
func (rs Ranges) Take(n int) (taken, rest Ranges, err error) {
	if n < 0 || uint64(n) > rs.Count() {
		return nil, rs, fmt.Errorf("%w: want %d values of %s", ErrInsufficient, n, rs)
	}
	left := uint64(n)
	for _, r := range rs {
		if left == 0 {
			break
		}
		size := r.End - r.Begin + 1
		if size <= left {
			taken = append(taken, r)
			left -= size
			continue
		}
		taken = append(taken, Range{r.Begin, r.Begin + left - 1})
		left = 0
	}
	rest, err = rs.Subtract(taken)
	return taken, rest, err
}

// MarshalJSON writes the Mesos /state form: "[31000-32000]".
func (rs Ranges) MarshalJSON() ([]byte, error) { return json.Marshal(rs.String()) }

// UnmarshalJSON reads "[31000-32000]" or Mesos v1's {"range":[{"begin":31000,"end":32000}]}.
func (rs *Ranges) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		r, err := ParseRanges(s)
		if err != nil {
			return err
		}
		*rs = r
		return nil
	}
	var v1 struct {
		Range []Range `json:"range"`
	}
	if err := json.Unmarshal(b, &v1); err != nil {
		return fmt.Errorf("resources: ranges: want \"[begin-end, ...]\" or {\"range\": [...]}, got %s", b)
	}
	r, err := NewRanges(v1.Range...)
	if err != nil {
		return err
	}
	*rs = r
	return nil
}
