package version

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		info Info
		want string
	}{
		{Info{Version: "dev", GoVersion: "go1.26"}, "dev go1.26"},
		{Info{Version: "v0.1.0", GitSHA: "0123456789abcdef", GoVersion: "go1.26"}, "v0.1.0 (0123456789ab) go1.26"},
		{Info{Version: "v0.1.0", GitSHA: "abc", GitDirty: true, GoVersion: "go1.26"}, "v0.1.0 (abc-dirty) go1.26"},
	}
	for _, tt := range tests {
		if got := tt.info.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.info, got, tt.want)
		}
	}
}

func TestGetNamesTheGoVersion(t *testing.T) {
	got := Get()
	if got.Version != Version || !strings.HasPrefix(got.GoVersion, "go") {
		t.Fatalf("Get() = %+v", got)
	}
}
