package discovery

import (
	"strings"
	"testing"
)

func TestLabels(t *testing.T) {
	long := strings.Repeat("abcdefghij", 8)
	tests := []struct {
		f        func(string) string
		in, want string
	}{
		{TaskLabel, "/group/web", "web-group"},
		{TaskLabel, "/a/b/c", "c-b-a"},
		{TaskLabel, "/web", "web"},
		{TaskLabel, "prod.backup", "prod-backup"},
		{TaskLabel, "My_Task  Name!", "my-task-name"},
		{TaskLabel, "/Shop/API.v2", "api-v2-shop"},
		{TaskLabel, "...", ""},
		{TaskLabel, long, long[:MaxLabel]},
		{TaskLabel, strings.Repeat("a", 62) + ".b", strings.Repeat("a", 62)}, // no '-' left at the cut
		{FrameworkLabel, "Marathon", "marathon"},
		{FrameworkLabel, "my.framework_1", "my-framework-1"},
		{AgentLabel, "4C7F1E1A-2D3B-4E5F-8A9B-0C1D2E3F4A5B-S12", "4c7f1e1a-2d3b-4e5f-8a9b-0c1d2e3f4a5b-s12"},
	}
	for _, tt := range tests {
		if got := tt.f(tt.in); got != tt.want {
			t.Errorf("%q → %q, want %q", tt.in, got, tt.want)
		}
		if got := tt.f(tt.in); len(got) > MaxLabel {
			t.Errorf("%q → %d bytes", tt.in, len(got))
		}
	}
}

func TestInstanceLabel(t *testing.T) {
	a := InstanceLabel("web-group", "task-1", "uuid-S4")
	b := InstanceLabel("web-group", "task-2", "uuid-S4")
	if !strings.HasPrefix(a, "web-group-") || !strings.HasSuffix(a, "-s4") || len(a) != len("web-group-xxxxx-s4") {
		t.Fatalf("InstanceLabel = %q, want web-group-<5 chars>-s4", a)
	}
	if a == b {
		t.Fatalf("two tasks on one agent share the label %q", a)
	}
	if again := InstanceLabel("web-group", "task-1", "uuid-S4"); again != a {
		t.Fatalf("not stable: %q then %q", a, again)
	}
	long := InstanceLabel(strings.Repeat("x", MaxLabel), "t", "uuid-S123")
	if len(long) > MaxLabel || !strings.HasSuffix(long, "-s123") {
		t.Fatalf("a long task label: %q (%d bytes)", long, len(long))
	}
	if got := Label(long); got != long {
		t.Fatalf("InstanceLabel %q is not a label (%q)", long, got)
	}
}
