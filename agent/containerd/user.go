package containerd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	ctrd "github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/oci"
	"github.com/moby/sys/user"
)

// DefaultUser is whom a task runs as when neither it nor its image names a user.
const DefaultUser = "nobody"

// ErrRootRefused: the task would run as uid 0 on an agent that does not allow it.
var ErrRootRefused = errors.New("containerd: runs as root")

// identity is a resolved user: the ids a task's process gets.
type identity struct {
	UID, GID uint32
	Groups   []uint32 // supplementary
}

// resolveUser reads a user spec (name, uid, name:group or uid:gid) against the passwd and group
// files under etc. A numeric uid without an entry gets its own number as gid, not root's group.
func resolveUser(spec, etc string) (identity, error) {
	defaults := &user.ExecUser{}
	if name, _, _ := strings.Cut(spec, ":"); name != "" {
		if n, err := strconv.Atoi(name); err == nil {
			defaults.Uid, defaults.Gid = n, n
		}
	}
	u, err := user.GetExecUserPath(spec, defaults, filepath.Join(etc, "passwd"), filepath.Join(etc, "group"))
	if err != nil {
		return identity{}, err
	}
	if u.Uid < 0 || u.Gid < 0 {
		return identity{}, fmt.Errorf("user %q: negative id", spec)
	}
	id := identity{UID: uint32(u.Uid), GID: uint32(u.Gid)}
	for _, g := range u.Sgids {
		if g >= 0 && uint32(g) != id.GID {
			id.Groups = append(id.Groups, uint32(g))
		}
	}
	return id, nil
}

// withUser is the SpecOpt that sets whom the task's process runs as; it goes after the image's
// config (which sets the image's own USER). The order of choice:
//
//  1. the task's user (Marathon's user, Metronome's run.user), looked up in the image's /etc
//     and then in the agent's (a host-rootfs task: the agent's copy of the host's /etc);
//  2. the image's USER when it names someone other than root;
//  3. the agent's default task user (e.g. nobody), resolved when the executor started.
//
// uid 0 is refused unless the agent allows root tasks. Capabilities are dropped to none for
// anyone but root. got receives the identity, for the sandbox's owner.
func (e *Executor) withUser(s Spec, imageUser string, got *identity) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, spec *oci.Spec) error {
		var id identity
		var err error
		switch {
		case s.User != "":
			id, err = e.lookupUser(ctx, client, c, s.User, s.Image != "")
			if err != nil {
				return fmt.Errorf("%w: %s: user %q: %v", ErrBadSpec, s.TaskID, s.User, err)
			}
		case imageUser != "" && spec.Process != nil && spec.Process.User.UID != 0:
			id = identity{UID: spec.Process.User.UID, GID: spec.Process.User.GID, Groups: spec.Process.User.AdditionalGids}
		default:
			id = e.defaultUser
		}
		if id.UID == 0 && !e.cfg.AllowRoot {
			who := s.User
			if who == "" {
				who = "the default task user"
			}
			return fmt.Errorf("%w: %s: %s is uid 0, and this agent does not run tasks as root (agora agent --allow-root-tasks)", ErrRootRefused, s.TaskID, who)
		}
		if spec.Process == nil {
			return fmt.Errorf("containerd: %s: the spec has no process", s.TaskID)
		}
		spec.Process.User.UID, spec.Process.User.GID = id.UID, id.GID
		spec.Process.User.AdditionalGids = id.Groups
		if id.UID != 0 && spec.Process.Capabilities != nil {
			// Nothing a non-root task does needs a capability; none is left to regain.
			caps := spec.Process.Capabilities
			caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient = nil, nil, nil, nil, nil
		}
		*got = id
		return nil
	}
}

// lookupUser resolves a task's user: in the image's own /etc first (fromImage), then in the
// agent's copy of the host's.
func (e *Executor) lookupUser(ctx context.Context, client oci.Client, c *containers.Container, spec string, fromImage bool) (identity, error) {
	if fromImage && c.SnapshotKey != "" {
		var id identity
		var inImage error
		mounts, err := client.SnapshotService(c.Snapshotter).Mounts(ctx, c.SnapshotKey)
		if err != nil {
			return identity{}, err
		}
		err = mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
			id, inImage = resolveUser(spec, filepath.Join(root, "etc"))
			return nil
		})
		if err != nil {
			return identity{}, err
		}
		if inImage == nil {
			return id, nil
		}
	}
	id, err := resolveUser(spec, e.hostEtc)
	if err != nil {
		return identity{}, fmt.Errorf("not in the image nor on this agent: %v", err)
	}
	return id, nil
}

// imageUser is the USER of an image's config ("" when it names none).
func imageUser(ctx context.Context, img ctrd.Image) (string, error) {
	spec, err := img.Spec(ctx)
	if err != nil {
		return "", fmt.Errorf("containerd: image config of %s: %w", img.Name(), err)
	}
	return spec.Config.User, nil
}
