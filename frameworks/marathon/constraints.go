package marathon

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/agora-sched/agora/frameworks"
)

// Constraint is one of Marathon's placement constraints: [field, operator, value?], where field
// is "hostname" (or "@hostname") or the name of an agent attribute.
type Constraint struct {
	Field    string
	Operator string
	Value    string
	re       *regexp.Regexp // LIKE, UNLIKE
	n        int            // GROUP_BY (groups), MAX_PER (most per value)
}

// The operators.
const (
	OpUnique  = "UNIQUE"
	OpCluster = "CLUSTER"
	OpGroupBy = "GROUP_BY"
	OpLike    = "LIKE"
	OpUnlike  = "UNLIKE"
	OpMaxPer  = "MAX_PER"
	OpIs      = "IS"
)

// ParseConstraint reads [field, operator, value?], saying what is wrong.
func ParseConstraint(c []string) (Constraint, error) {
	if len(c) < 2 || len(c) > 3 {
		return Constraint{}, fmt.Errorf("a constraint is [field, operator] or [field, operator, value], got %d items", len(c))
	}
	out := Constraint{Field: c[0], Operator: c[1]}
	if out.Field == "@hostname" {
		out.Field = "hostname"
	}
	if out.Field == "" {
		return out, fmt.Errorf("the field is empty")
	}
	hasValue := len(c) == 3
	if hasValue {
		out.Value = c[2]
	}
	switch out.Operator {
	case OpUnique:
		if hasValue {
			return out, fmt.Errorf("UNIQUE takes no value")
		}
	case OpCluster:
	case OpGroupBy:
		out.n = 0
		if hasValue {
			n, err := strconv.Atoi(out.Value)
			if err != nil || n < 1 {
				return out, fmt.Errorf("GROUP_BY's value is a number of groups, 1 or more; got %q", out.Value)
			}
			out.n = n
		}
	case OpLike, OpUnlike:
		if !hasValue {
			return out, fmt.Errorf("%s needs a regular expression", out.Operator)
		}
		re, err := frameworks.WholeMatch(out.Value)
		if err != nil {
			return out, fmt.Errorf("%s: %q is not a regular expression: %v", out.Operator, out.Value, err)
		}
		out.re = re
	case OpMaxPer:
		n, err := strconv.Atoi(out.Value)
		if !hasValue || err != nil || n < 1 {
			return out, fmt.Errorf("MAX_PER's value is a number, 1 or more; got %q", out.Value)
		}
		out.n = n
	case OpIs:
		if !hasValue {
			return out, fmt.Errorf("IS needs a value")
		}
	default:
		return out, fmt.Errorf("unknown operator %q (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS)", out.Operator)
	}
	return out, nil
}

// Place is where an instance runs, or where an offer would put it.
type Place struct {
	Hostname   string
	Attributes map[string]string
}

func (p Place) value(field string) (string, bool) {
	if field == "hostname" {
		return p.Hostname, true
	}
	v, ok := p.Attributes[field]
	return v, ok
}

// Allows says whether one more instance may go to candidate, given where the app's instances
// are (placed, the ones that count: not ended).
func (c Constraint) Allows(candidate Place, placed []Place) bool {
	v, ok := candidate.value(c.Field)
	if !ok {
		return false // an agent without the attribute never satisfies a constraint on it
	}
	counts := map[string]int{}
	for _, p := range placed {
		if pv, ok := p.value(c.Field); ok {
			counts[pv]++
		}
	}
	switch c.Operator {
	case OpUnique:
		return counts[v] == 0
	case OpCluster:
		if c.Value != "" {
			return v == c.Value
		}
		for other := range counts {
			if other != v {
				return false // the first instance chose the value
			}
		}
		return true
	case OpGroupBy:
		if _, seen := counts[v]; !seen && (c.n == 0 || len(counts) < c.n) {
			return true // a group without instances yet
		}
		least := -1
		for _, n := range counts {
			if least < 0 || n < least {
				least = n
			}
		}
		if c.n > 0 && len(counts) < c.n {
			least = 0 // some group has none yet
		}
		return counts[v] <= least
	case OpLike:
		return c.re.MatchString(v)
	case OpUnlike:
		return !c.re.MatchString(v)
	case OpMaxPer:
		return counts[v] < c.n
	case OpIs:
		return v == c.Value
	}
	return false
}

// AllowAll checks every constraint.
func AllowAll(cs []Constraint, candidate Place, placed []Place) bool {
	for _, c := range cs {
		if !c.Allows(candidate, placed) {
			return false
		}
	}
	return true
}

// String is the constraint as Marathon writes it in its messages: field:OPERATOR[:value].
func (c Constraint) String() string {
	if c.Value == "" {
		return c.Field + ":" + c.Operator
	}
	return c.Field + ":" + c.Operator + ":" + c.Value
}

// why says, of a candidate the constraint does not allow, what it found there: the value of
// its field, and how many of the app's instances have that value already.
func (c Constraint) why(candidate Place, placed []Place) string {
	v, ok := candidate.value(c.Field)
	if !ok {
		return fmt.Sprintf("%s: %s has no attribute %q", c, candidate.Hostname, c.Field)
	}
	switch c.Operator {
	case OpLike, OpUnlike, OpIs:
		return fmt.Sprintf("%s: %s is %q on %s", c, c.Field, v, candidate.Hostname)
	case OpCluster:
		if c.Value != "" {
			return fmt.Sprintf("%s: %s is %q on %s", c, c.Field, v, candidate.Hostname)
		}
		for _, p := range placed {
			if pv, ok := p.value(c.Field); ok && pv != v {
				return fmt.Sprintf("%s: its instances run where %s is %q, not %q", c, c.Field, pv, v)
			}
		}
	}
	n := 0
	for _, p := range placed {
		if pv, ok := p.value(c.Field); ok && pv == v {
			n++
		}
	}
	return fmt.Sprintf("%s: %d of its instances where %s is %q already", c, n, c.Field, v)
}
