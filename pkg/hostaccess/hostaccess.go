// Package hostaccess is what an agent lets tasks do with its host beyond their own container:
// mount the host volumes it declares (agora agent --host-volume NAME=PATH[:rw]), run as root
// (--allow-root-tasks), run privileged (--allow-privileged); how that is told to masters and
// frameworks (as agent attributes); and whether a task's needs are met.
//
// Nothing of the host is mountable and no task runs as root unless an agent says so. Use:
//
//  1. The agent parses each --host-volume with Parse and checks it against the paths it
//     protects (Protected); it registers with the attributes of Attribute, and RootAttribute
//     and api.PrivilegedAttribute when it allows those.
//  2. A framework states a task's Needs. At POST, Nowhere says which needs no registered agent
//     meets (a 422 naming the field); when placing, Unmet says whether the offer's agent meets
//     them all.
//  3. The agent grants each volume of a launch again (the last line of defence) with Grant,
//     and mounts the path Resolve answers: symbolic links followed, still inside the volume.
package hostaccess

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/pkg/api"
)

// AttributePrefix starts the agent attribute of each host volume it declares:
// "agora.volume.NAME" = "PATH:ro" or "PATH:rw".
const AttributePrefix = "agora.volume."

// RootAttribute ("agora.root": "true") is the attribute of an agent that runs tasks as root
// (agora agent --allow-root-tasks).
const RootAttribute = "agora.root"

// Volume is a host directory (or file) an agent lets tasks mount.
type Volume struct {
	Name     string
	Path     string // absolute and clean
	ReadOnly bool
}

// ErrNotGranted: no declared volume covers the request.
var ErrNotGranted = errors.New("hostaccess: not granted")

// validName: 1 to 63 letters, digits, '-', '_' and '.', starting with a letter or digit.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

// Parse reads NAME=PATH, NAME=PATH:ro or NAME=PATH:rw (read-only unless :rw is given).
func Parse(s string) (Volume, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || !validName(name) {
		return Volume{}, fmt.Errorf("%q: want NAME=PATH[:ro|:rw], NAME of letters, digits, '-', '_' and '.'", s)
	}
	v := Volume{Name: name, ReadOnly: true}
	switch {
	case strings.HasSuffix(rest, ":rw"):
		rest, v.ReadOnly = strings.TrimSuffix(rest, ":rw"), false
	case strings.HasSuffix(rest, ":ro"):
		rest = strings.TrimSuffix(rest, ":ro")
	}
	if !filepath.IsAbs(rest) {
		return Volume{}, fmt.Errorf("%q: the path %q is not absolute", s, rest)
	}
	v.Path = filepath.Clean(rest)
	return v, nil
}

// String is the volume as Parse reads it.
func (v Volume) String() string {
	mode := "ro"
	if !v.ReadOnly {
		mode = "rw"
	}
	return v.Name + "=" + v.Path + ":" + mode
}

// Attribute is the agent attribute that declares the volume.
func (v Volume) Attribute() (string, string) {
	mode := "ro"
	if !v.ReadOnly {
		mode = "rw"
	}
	return AttributePrefix + v.Name, v.Path + ":" + mode
}

// FromAttributes reads the host volumes an agent declares from its attributes, sorted by name;
// malformed ones are left out.
func FromAttributes(attrs map[string]string) []Volume {
	var out []Volume
	for k, val := range attrs {
		name, ok := strings.CutPrefix(k, AttributePrefix)
		if !ok || !validName(name) {
			continue
		}
		path, mode, _ := cutLast(val, ":")
		if !filepath.IsAbs(path) || mode != "ro" && mode != "rw" {
			continue
		}
		out = append(out, Volume{Name: name, Path: filepath.Clean(path), ReadOnly: mode == "ro"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// Within says whether path is dir or lies below it (both clean and absolute).
func Within(path, dir string) bool {
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}

// Grant finds the volume that lets a task mount hostPath — a volume's name, its path, or a path
// below it — read-only or read-write, and answers the host path to mount (clean, before
// symbolic links are followed: the agent does that with Resolve). "/" is never granted.
func Grant(vols []Volume, hostPath string, readOnly bool) (Volume, string, error) {
	if hostPath == "" {
		return Volume{}, "", fmt.Errorf("%w: an empty host path", ErrNotGranted)
	}
	var path string
	if !strings.HasPrefix(hostPath, "/") {
		for _, v := range vols {
			if v.Name == hostPath {
				path = v.Path
			}
		}
		if path == "" {
			return Volume{}, "", fmt.Errorf("%w: no host volume is named %q", ErrNotGranted, hostPath)
		}
	} else {
		path = filepath.Clean(hostPath)
	}
	if path == "/" {
		return Volume{}, "", fmt.Errorf("%w: the host's root directory is never mounted", ErrNotGranted)
	}
	readOnlyOnly := false
	for _, v := range vols {
		if !Within(path, v.Path) {
			continue
		}
		if readOnly || !v.ReadOnly {
			return v, path, nil
		}
		readOnlyOnly = true
	}
	if readOnlyOnly {
		return Volume{}, "", fmt.Errorf("%w: %s is a read-only host volume (mount it with mode RO)", ErrNotGranted, path)
	}
	return Volume{}, "", fmt.Errorf("%w: %s is in no declared host volume (agora agent --host-volume NAME=PATH[:rw])", ErrNotGranted, path)
}

// Resolve is the path to mount for a path Grant answered within v: symbolic links followed, and
// still inside v's own (resolved) path, so that a link a task left in a read-write volume cannot
// point a later mount elsewhere on the host.
func Resolve(v Volume, path string) (string, error) {
	base, err := filepath.EvalSymlinks(v.Path)
	if err != nil {
		return "", fmt.Errorf("host volume %s: %w", v.Name, err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("host path %s does not exist on this agent", path)
		}
		return "", err
	}
	if !Within(real, base) {
		return "", fmt.Errorf("%w: %s leads to %s, outside the host volume %s (%s)", ErrNotGranted, path, real, v.Name, v.Path)
	}
	return real, nil
}

// Protected says why a path may not be declared, or mounted: it is, holds or lies in one of
// the protected paths (the agent's and masters' data dirs, key and secret files, /root,
// containerd's state), or it is a system directory asked for read-write. nil when it may.
func Protected(path string, readOnly bool, protected []string) error {
	if path == "/" {
		return errors.New("the host's root directory may not be a host volume")
	}
	for _, p := range protected {
		if p == "" {
			continue
		}
		p = filepath.Clean(p)
		if Within(path, p) || Within(p, path) {
			return fmt.Errorf("%s may not be a host volume: it holds or lies in %s, which tasks must never see", path, p)
		}
	}
	if !readOnly {
		for _, sys := range SystemDirs {
			if Within(path, sys) {
				return fmt.Errorf("%s is a system directory: it may be a host volume read-only only", path)
			}
		}
	}
	return nil
}

// AlwaysProtected are host paths no task may see, on any agent.
var AlwaysProtected = []string{"/root", "/var/lib/containerd", "/run/containerd", "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d", "/etc/agora", "/proc", "/sys", "/dev", "/boot"}

// SystemDirs are the host's programs, libraries and configuration: never writable by a task.
var SystemDirs = []string{"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/var/lib", "/run"}

// IsRoot says whether a task's user names root itself: "root" or uid 0, with or without a group.
// (A name that is uid 0 only inside an image is found when the agent resolves it.)
func IsRoot(user string) bool {
	name, _, _ := strings.Cut(strings.TrimSpace(user), ":")
	if name == "root" {
		return true
	}
	n, err := strconv.ParseUint(name, 10, 32)
	return err == nil && n == 0
}

// Needs are what a task asks of its agent that only some agents allow.
type Needs struct {
	Privileged bool
	User       string // root only where RootAttribute is set
	Volumes    []api.Volume
}

// Part names which need an Unmet is about.
type Part string

// Parts of Needs; PartAll: each is met somewhere, but by no one agent.
const (
	PartPrivileged Part = "privileged"
	PartUser       Part = "user"
	PartVolume     Part = "volume"
	PartAll        Part = ""
)

// Unmet is a need an agent (or every agent) does not meet, and why: for one agent, what follows
// "the agent"; from Nowhere, a whole sentence.
type Unmet struct {
	Part  Part
	Index int // of the volume
	Why   string
}

// Unmet lists the needs an agent of these attributes does not meet; none: it may take the task.
func (n Needs) Unmet(attrs map[string]string) []Unmet {
	var out []Unmet
	if n.Privileged && attrs[api.PrivilegedAttribute] != "true" {
		out = append(out, Unmet{Part: PartPrivileged, Why: "runs no privileged containers (agora agent --allow-privileged)"})
	}
	if IsRoot(n.User) && attrs[RootAttribute] != "true" {
		out = append(out, Unmet{Part: PartUser, Why: "runs no tasks as root (agora agent --allow-root-tasks)"})
	}
	vols := FromAttributes(attrs)
	for i, v := range n.Volumes {
		if _, _, err := Grant(vols, v.HostPath, v.ReadOnly); err != nil {
			out = append(out, Unmet{Part: PartVolume, Index: i, Why: strings.TrimPrefix(err.Error(), ErrNotGranted.Error()+": ")})
		}
	}
	return out
}

// Nowhere lists the needs that none of the agents meets, each with why; when each is met by some
// agent but no agent meets them all, one Unmet of PartAll. None: some agent may take the task,
// or there is no agent yet to judge by (a cluster starting: every task waits for one).
func (n Needs) Nowhere(agents []api.Agent) []Unmet {
	if len(agents) == 0 {
		return nil
	}
	missing := map[Unmet]int{} // by part and index: how many agents miss it
	for _, ag := range agents {
		unmet := n.Unmet(ag.Attributes)
		if len(unmet) == 0 {
			return nil
		}
		for _, u := range unmet {
			missing[Unmet{Part: u.Part, Index: u.Index}]++
		}
	}
	var out []Unmet
	for _, u := range n.Unmet(nil) { // every need, in order, with the words for no agent at all
		if missing[Unmet{Part: u.Part, Index: u.Index}] < len(agents) {
			continue // some agent meets this one
		}
		switch u.Part {
		case PartVolume:
			var all []Volume
			for _, ag := range agents {
				all = append(all, FromAttributes(ag.Attributes)...)
			}
			_, _, err := Grant(all, n.Volumes[u.Index].HostPath, n.Volumes[u.Index].ReadOnly)
			u.Why = "no agent allows it: " + strings.TrimPrefix(err.Error(), ErrNotGranted.Error()+": ")
		case PartPrivileged:
			u.Why = "no registered agent runs privileged containers: start one with agora agent --allow-privileged"
		case PartUser:
			u.Why = "no registered agent runs tasks as root: start one with agora agent --allow-root-tasks"
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		out = append(out, Unmet{Part: PartAll, Why: "each need is met by some agent, but no agent meets them all (privileged, root, host volumes)"})
	}
	return out
}

// ValidUser checks the form of a task's user: empty, or a name or uid, optionally :group or
// :gid, of letters, digits, '_', '-' and '.' (whether it exists is the agent's to find).
func ValidUser(u string) error {
	if u == "" {
		return nil
	}
	name, group, hasGroup := strings.Cut(u, ":")
	for _, part := range []string{name, group} {
		if part == "" && (part == name || hasGroup) {
			return fmt.Errorf("%q: want NAME, UID, NAME:GROUP or UID:GID", u)
		}
		if len(part) > 32 {
			return fmt.Errorf("%q: a user or group name has at most 32 characters", u)
		}
		for i, c := range part {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || i > 0 && (c == '-' || c == '.')) {
				return fmt.Errorf("%q: a user or group has letters, digits, '_', '-' and '.', not starting with '-' or '.'", u)
			}
		}
	}
	return nil
}

// ValidHostPath checks the form of a volume's host path as a task asks for it: an absolute path,
// or the name of a host volume.
func ValidHostPath(p string) bool {
	if strings.HasPrefix(p, "/") {
		return !strings.Contains(p, "\x00")
	}
	return validName(p)
}
