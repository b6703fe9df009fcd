package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnitsUseRealFlags reads examples/systemd's units, fills in agora.env and runs each
// ExecStart's command line through the CLI with --help: a flag the binary does not know (one
// renamed since the units were written) fails here, not on an operator's host.
func TestSystemdUnitsUseRealFlags(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "systemd")
	env := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "agora.env"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	f.Close()
	units, _ := filepath.Glob(filepath.Join(dir, "*.service"))
	if len(units) != 3 {
		t.Fatalf("units: %v, want the master's, the agent's and agora lb's", units)
	}
	vars := regexp.MustCompile(`\$\{(\w+)\}`)
	for _, unit := range units {
		data, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "\\\n", " ")
		m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("%s has no ExecStart", unit)
		}
		line := vars.ReplaceAllStringFunc(m[1], func(v string) string {
			name := vars.FindStringSubmatch(v)[1]
			val, ok := env[name]
			if !ok {
				t.Errorf("%s uses ${%s}, which agora.env does not set", unit, name)
			}
			return val
		})
		args := strings.Fields(line)
		if filepath.Base(args[0]) != "agora" {
			t.Fatalf("%s starts %s", unit, args[0])
		}
		args[0] = "agora"
		if err := run(context.Background(), append(args, "--help"), io.Discard, io.Discard); err != nil {
			t.Errorf("%s: agora %s: %v", filepath.Base(unit), strings.Join(args[1:], " "), err)
		}
	}
}
