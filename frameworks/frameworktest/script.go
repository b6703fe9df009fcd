package frameworktest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Scripts runs the scripts that pattern names (testdata/x/*.txt), each in a subtest of its own
// with a fresh interpreter from start. A script is commands, each on a line of its own followed
// by a line "----" and the block the command is expected to print, ended by a blank line; lines
// beginning with "#" and blank lines between blocks are comments, kept as they are. do runs one
// command and returns what it printed ("ok" stands for nothing).
//
// A block that differs fails the test with the lines that differ. With go test's -rewrite flag
// (or AGORA_REWRITE=1) a script that ran is written again with what its commands print now:
// for a change of behaviour made on purpose, read in the diff.
func Scripts(t *testing.T, pattern string, start func(t *testing.T) (do func(cmd string) string)) {
	t.Helper()
	rewrite := *rewriteFlag || os.Getenv("AGORA_REWRITE") != ""
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts match %s", pattern)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runScript(t, f, rewrite, start(t))
		})
	}
}

// rewriteFlag is go test's -rewrite in every package whose tests run scripts.
var rewriteFlag = flag.Bool("rewrite", false, "rewrite the expected blocks of the scripts (testdata/*/*.txt) with what they print now")

// scriptStep is a command of a script, the comments before it and the block expected of it.
type scriptStep struct {
	comments []string
	cmd      string
	want     string
}

func parseSteps(t *testing.T, file, text string) []scriptStep {
	var steps []scriptStep
	var comments []string
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		if l := lines[i]; strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			comments = append(comments, l)
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: command %q has no ---- line after it", file, i+1, lines[i])
		}
		st := scriptStep{comments: comments, cmd: lines[i]}
		comments = nil
		end := i + 2
		for end < len(lines) && lines[end] != "" {
			end++
		}
		st.want = strings.Join(lines[i+2:end], "\n")
		steps = append(steps, st)
		i = end // the blank line that ends the block
	}
	return steps
}

func runScript(t *testing.T, file string, rewrite bool, do func(cmd string) string) {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	same := true
	for _, st := range parseSteps(t, file, string(text)) {
		got := strings.TrimRight(do(st.cmd), "\n")
		if got == "" {
			got = "ok"
		}
		if got != st.want {
			same = false
			if !rewrite {
				t.Errorf("%s: %s\n%s", file, st.cmd, blockDiff(st.want, got))
			}
		}
		for _, c := range st.comments {
			out.WriteString(c + "\n")
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n\n", st.cmd, got)
	}
	if rewrite && !same && !t.Failed() {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s rewritten", file)
	}
}

// blockDiff marks the lines of the expected block that are not printed ("-") and the lines
// printed that are not expected ("+"), line against line.
func blockDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		switch {
		case i < len(w) && i < len(g) && w[i] == g[i]:
			fmt.Fprintf(&b, "  %s\n", w[i])
		default:
			if i < len(w) {
				fmt.Fprintf(&b, "- %s\n", w[i])
			}
			if i < len(g) {
				fmt.Fprintf(&b, "+ %s\n", g[i])
			}
		}
	}
	return b.String()
}
