package api

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Artifact is a file an agent downloads into a task's sandbox before the task starts: Mesos's
// CommandInfo.URI, which Marathon's fetch and uris, Metronome's artifacts and Chronos's fetch
// become.
type Artifact struct {
	// URI is where the file is: http:// or https://, or file:// of a directory the agent lets
	// tasks fetch from (agora agent --fetch-file-dir; none by default).
	URI string `json:"uri"`
	// Extract unpacks an archive (.tar, .tar.gz, .tgz, .tar.bz2, .tbz2, .zip) into the sandbox;
	// a file of another kind is left as it is.
	Extract bool `json:"extract,omitempty"`
	// Executable makes the file executable (mode 0755).
	Executable bool `json:"executable,omitempty"`
	// Cache keeps the download in the agent's cache, keyed by URI, for later launches.
	Cache bool `json:"cache,omitempty"`
	// OutputFile names the file in the sandbox (a relative path); default: the URI's last
	// element.
	OutputFile string `json:"output_file,omitempty"`
}

// MaxArtifacts is the most artifacts one task may fetch.
const MaxArtifacts = 64

// ValidateArtifacts checks a task's artifacts; the error is a *FieldError naming
// prefix[i].field (prefix is "artifacts" in Agora's own API).
func ValidateArtifacts(prefix string, as []Artifact) error {
	if len(as) > MaxArtifacts {
		return &FieldError{Field: prefix, Msg: fmt.Sprintf("%d artifacts: at most %d", len(as), MaxArtifacts)}
	}
	for i, a := range as {
		if err := ArtifactURI(a.URI); err != nil {
			return &FieldError{Field: fmt.Sprintf("%s[%d].uri", prefix, i), Msg: err.Error()}
		}
		if name, err := ArtifactName(a); err == nil && a.Extract && unextractable(name) {
			return &FieldError{Field: fmt.Sprintf("%s[%d].extract", prefix, i), Msg: fmt.Sprintf("%s: agents extract .tar, .tar.gz, .tgz, .tar.bz2, .tbz2 and .zip archives, not xz ones", name)}
		}
		if a.OutputFile != "" {
			if err := SandboxPath(a.OutputFile); err != nil {
				return &FieldError{Field: fmt.Sprintf("%s[%d].output_file", prefix, i), Msg: err.Error()}
			}
		} else if _, err := ArtifactName(a); err != nil {
			return &FieldError{Field: fmt.Sprintf("%s[%d].uri", prefix, i), Msg: err.Error()}
		}
	}
	return nil
}

// ArtifactURI checks that an artifact's URI is one agents can fetch: http(s) with a host, or
// file:// with an absolute path (which agents fetch only from the directories they allow).
func ArtifactURI(s string) error {
	if s == "" {
		return fmt.Errorf("is required")
	}
	if len(s) > 4096 {
		return fmt.Errorf("is longer than 4096 characters")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URI: %v", s, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", s)
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" || !path.IsAbs(u.Path) {
			return fmt.Errorf("%q: a file URI is file:///absolute/path", s)
		}
		if path.Clean(u.Path) != u.Path {
			return fmt.Errorf("%q: the path must be clean (no '..', '//' or trailing '/')", s)
		}
	default:
		return fmt.Errorf("%q: the scheme must be http, https or file", s)
	}
	return nil
}

// SandboxPath checks a path that must stay inside a task's sandbox: relative, clean, not empty.
func SandboxPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("is empty")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must be relative to the sandbox", p)
	case path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("%q must be a clean path inside the sandbox (no '..')", p)
	case len(p) > 1024:
		return fmt.Errorf("is longer than 1024 characters")
	}
	return nil
}

// ArtifactName is the artifact's file name in the sandbox: OutputFile, or the URI path's last
// element.
func ArtifactName(a Artifact) (string, error) {
	if a.OutputFile != "" {
		return a.OutputFile, nil
	}
	u, err := url.Parse(a.URI)
	if err != nil {
		return "", err
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == ".." || name == "" {
		return "", fmt.Errorf("%q names no file: give an output file name", a.URI)
	}
	return name, nil
}

// unextractable says whether a name is an archive Mesos would extract but agents cannot.
func unextractable(name string) bool {
	n := strings.ToLower(name)
	return strings.HasSuffix(n, ".txz") || strings.HasSuffix(n, ".tar.xz")
}

// IsArchive says whether a file name has an extension agents extract.
func IsArchive(name string) bool {
	return ArchiveKind(name) != ""
}

// ArchiveKind is the kind of archive a file name says ("tar", "tar.gz", "tar.bz2", "zip"), or ""
// for a file that is no archive agents extract.
func ArchiveKind(name string) string {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar"):
		return "tar"
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return "tar.gz"
	case strings.HasSuffix(n, ".tar.bz2"), strings.HasSuffix(n, ".tbz2"):
		return "tar.bz2"
	case strings.HasSuffix(n, ".zip"):
		return "zip"
	}
	return ""
}
