package frameworks

import "regexp"

// WholeMatch compiles a constraint's LIKE/UNLIKE value (Marathon's and Metronome's) to match a
// whole attribute value. The value must compile on its own, not only once anchored: "a)|(b" does
// not, yet "^(?:a)|(b)$" does, and would match any value that starts with a. (The anchored one
// can fail where the value alone does not: anchors add a level of nesting.)
func WholeMatch(value string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(value); err != nil {
		return nil, err
	}
	return regexp.Compile("^(?:" + value + ")$")
}
