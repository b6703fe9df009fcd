package main

import (
	"maps"
	"testing"
)

func TestParseWeights(t *testing.T) {
	good := map[string]map[string]float64{
		"":                      {},
		"prod:3;batch:1":        {"prod": 3, "batch": 1},
		" prod : 2.5 ; ":        {"prod": 2.5},
		"ml:0.5;analytics:1e-1": {"ml": 0.5, "analytics": 0.1},
	}
	for in, want := range good {
		got, err := parseWeights(in)
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("parseWeights(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"prod", "prod:0", "prod:-1", ":2", "prod:x", "prod:+Inf", "prod:NaN"} {
		if got, err := parseWeights(in); err == nil {
			t.Errorf("parseWeights(%q) = %v, want an error", in, got)
		}
	}
}
