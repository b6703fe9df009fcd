package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestChaosClockNeedsChaosFaults: the clock-skew hooks are refused (a usage error naming the
// flag) without --chaos-faults, are hidden from --help, and --max-clock-skew must be positive.
func TestChaosClockNeedsChaosFaults(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--chaos-clock-offset", "90s"}, "--chaos-faults"},
		{[]string{"--chaos-clock-file", "/tmp/x"}, "--chaos-faults"},
		{[]string{"--max-clock-skew", "-1s"}, "--max-clock-skew"},
	} {
		args := append([]string{"agora", "master", "--data-dir", t.TempDir(), "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"}, tc.args...)
		err := run(context.Background(), args, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a usage error naming %s", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"agora", "master", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "chaos") || !strings.Contains(out.String(), "--max-clock-skew") {
		t.Fatalf("master --help shows a chaos hook, or lacks --max-clock-skew:\n%s", out.String())
	}
}
