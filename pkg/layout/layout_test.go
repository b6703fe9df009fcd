// Package layout holds a test of the layers docs/DESIGN.md draws: arrows point down only.
package layout

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/agora-sched/agora/"

// forbidden lists, for each layer, the layers its packages (tests included) must not import.
var forbidden = map[string][]string{
	"pkg/":        {"master", "agent", "frameworks", "raft", "cmd", "chaos"},
	"raft/":       {"master", "agent", "frameworks", "cmd", "chaos"},
	"agent/":      {"master", "frameworks", "raft", "cmd", "chaos"},
	"master/":     {"agent", "frameworks", "cmd", "chaos"},
	"frameworks/": {"agent", "cmd", "chaos"},
	// The chaos harness drives the agora binary over its APIs, as users do: it reads their
	// answers with types of its own and imports none of the code it tests.
	"chaos/": {"master", "agent", "frameworks", "raft", "cmd"},
	// The chaos harness uses netem; netem stands alone.
	"chaos/netem/": {"master", "agent", "frameworks", "raft", "cmd", "chaos", "pkg"},
}

func TestLayersImportDownwardOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-test", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		for layer, banned := range forbidden {
			if !strings.HasPrefix(pkg, layer) && pkg != strings.TrimSuffix(layer, "/") {
				continue
			}
			checked++
			for _, imp := range fields[1:] {
				for _, b := range banned {
					if strings.HasPrefix(imp, module+b+"/") || imp == module+b {
						t.Errorf("%s imports %s: %s must not depend on %s", pkg, imp, strings.TrimSuffix(layer, "/"), b)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d packages; is go list's output what this test expects?\n%s", checked, out)
	}
}
