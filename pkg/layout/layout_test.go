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

// masterParts lists, for each part of the master (master/doc.go), the other master packages
// it must not import: the parts import downward only, and none imports the master itself (the
// composition), the HTTP API above them, or the test helpers. These are single packages, not
// trees: "master" is the composition alone.
var masterParts = map[string][]string{
	"master/allocator":  {"master", "master/registry", "master/scheduler", "master/secrets", "master/clockcheck", "master/httpapi", "master/mastertest"},
	"master/registry":   {"master", "master/allocator", "master/scheduler", "master/secrets", "master/clockcheck", "master/httpapi", "master/mastertest"},
	"master/secrets":    {"master", "master/allocator", "master/registry", "master/scheduler", "master/clockcheck", "master/httpapi", "master/mastertest"},
	"master/clockcheck": {"master", "master/allocator", "master/registry", "master/scheduler", "master/secrets", "master/httpapi", "master/mastertest"},
	"master/scheduler":  {"master", "master/secrets", "master/clockcheck", "master/httpapi", "master/mastertest"},
	"master/httpapi":    {"master", "master/mastertest", "master/dnsserver"},
	// Service discovery reads what the master hands it (discovery.Input), and the DNS server
	// answers from the view alone: neither reaches into the parts.
	"master/discovery":  {"master", "master/allocator", "master/registry", "master/scheduler", "master/secrets", "master/clockcheck", "master/httpapi", "master/mastertest", "master/dnsserver"},
	"master/dnsserver":  {"master", "master/allocator", "master/registry", "master/scheduler", "master/secrets", "master/clockcheck", "master/httpapi", "master/mastertest"},
	"master/mastertest": {"master", "master/registry", "master/secrets", "master/clockcheck", "master/httpapi"},
}

func TestLayersImportDownwardOnly(t *testing.T) {
	lines, out := goList(t, "-test", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...")
	checked := 0
	for _, fields := range lines {
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

// testHelpers are packages outside _test.go files that only tests import; they may use what
// the code they help test must not.
var testHelpers = map[string]bool{"frameworks/frameworktest": true}

// TestFrameworksNeedNoMaster: the embedded frameworks reach the node they run in through
// frameworks.Host and the scheduler through api.Session, the contract external frameworks
// use, so no package of frameworks/ (tests aside) depends on a master package, even through
// another package.
func TestFrameworksNeedNoMaster(t *testing.T) {
	lines, out := goList(t, "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"frameworks/...")
	checked := 0
	for _, fields := range lines {
		pkg := strings.TrimPrefix(fields[0], module)
		if testHelpers[pkg] {
			continue
		}
		checked++
		for _, dep := range fields[1:] {
			if dep == module+"master" || strings.HasPrefix(dep, module+"master/") {
				t.Errorf("%s depends on %s: a framework knows its node through frameworks.Host only", pkg, dep)
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked only %d packages; is go list's output what this test expects?\n%s", checked, out)
	}
}

func TestMasterPartsImportDownwardOnly(t *testing.T) {
	lines, _ := goList(t, "-test", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"master/...")
	seen := map[string]bool{}
	for _, fields := range lines {
		// A package, its test variant ("p [p.test]") and its external tests ("p_test").
		pkg := strings.TrimSuffix(strings.TrimPrefix(fields[0], module), "_test")
		banned, ok := masterParts[pkg]
		if !ok {
			continue
		}
		seen[pkg] = true
		for _, imp := range fields[1:] {
			for _, b := range banned {
				if imp == module+b {
					t.Errorf("%s imports %s: a part of the master must not depend on %s", fields[0], imp, b)
				}
			}
		}
	}
	for part := range masterParts {
		if !seen[part] {
			t.Errorf("no package %s: is masterParts still the master's layout?", part)
		}
	}
}

// goList runs go list with args and answers the words of each line of its output, and the
// output itself.
func goList(t *testing.T, args ...string) ([][]string, []byte) {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var lines [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		lines = append(lines, strings.Fields(line))
	}
	return lines, out
}
