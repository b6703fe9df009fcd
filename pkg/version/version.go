// Package version says which build of Agora is running.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is the release, set at link time: -ldflags "-X github.com/agora-sched/agora/pkg/version.Version=v0.1.0".
var Version = "dev"

// Info describes the running build; its JSON is what GET /v1/info carries under "build".
type Info struct {
	Version   string `json:"version"`
	GitSHA    string `json:"git_sha,omitempty"`
	GitDirty  bool   `json:"git_dirty,omitempty"`
	BuildTime string `json:"build_time,omitempty"`
	GoVersion string `json:"go_version"`
}

// Get reads the version control facts the Go toolchain stamped into the binary.
func Get() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.GitSHA = s.Value
		case "vcs.modified":
			info.GitDirty = s.Value == "true"
		case "vcs.time":
			info.BuildTime = s.Value
		}
	}
	return info
}

// String is the one-line form `agora --version` prints.
func (i Info) String() string {
	s := i.Version
	if i.GitSHA != "" {
		sha := i.GitSHA
		if len(sha) > 12 {
			sha = sha[:12]
		}
		s += " (" + sha
		if i.GitDirty {
			s += "-dirty"
		}
		s += ")"
	}
	return s + " " + i.GoVersion
}
