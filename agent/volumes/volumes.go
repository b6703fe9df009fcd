package volumes

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agora-sched/agora/pkg/api"
)

// Errors of the store.
var (
	ErrSizeConflict = errors.New("volumes: a volume of that id exists with another size")
	ErrNoVolume     = errors.New("volumes: no such volume")
	ErrDestroying   = errors.New("volumes: the volume is being destroyed")
	// ErrStray: a directory of that id exists under the volumes dir that no record names (a lost
	// checkpoint?); the agent leaves it to a person and makes no volume there.
	ErrStray = errors.New("volumes: a directory of that volume exists that this agent has no record of")
)

// A volume's states, as checkpointed.
//
//	Ensure ──► creating ──(made, mounted, checked)──► ready ──BeginDestroy──► destroying ──Destroy──► (gone)
//	              └──(fails, or the agent stops: Open removes it)──► (gone)
type State string

const (
	Creating   State = "creating"
	Ready      State = "ready"
	Destroying State = "destroying"
)

// Book is where the store's records are kept durably (the agent's checkpoint).
type Book interface {
	SaveVolume(id string, data []byte) error
	Volumes() (map[string][]byte, error)
	RemoveVolume(id string) error
}

// Config configures a Store.
type Config struct {
	Dir    string // where volumes live (DataDir/volumes); made if missing
	Book   Book
	Logger *slog.Logger
}

// Volume is the store's record of one volume, checkpointed as JSON.
type Volume struct {
	api.PersistentVolume
	State State `json:"state"`
	// ImageBytes is the size of the image file, Size plus ext4's overhead.
	ImageBytes int64 `json:"image_bytes"`
	// BaseUsed is what statfs counted as used when the volume was new (ext4's own), in bytes:
	// Usage reports what tasks used beyond it.
	BaseUsed int64 `json:"base_used"`
	// Given: a task's user was given the volume's root (the first task that wrote to it).
	Given bool `json:"given,omitempty"`
}

// Store is an agent's persistent volumes.
type Store struct {
	cfg Config

	op sync.Mutex // orders Ensure and Destroy: one volume is made or removed at a time

	mu   sync.Mutex // guards vols and broken
	vols map[string]*Volume
	// broken says why a volume Open could not mount is unusable, by id.
	broken map[string]string
}

// Open reads the volumes of cfg.Book and makes each usable again (doc.go, step 1).
func Open(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	saved, err := cfg.Book.Volumes()
	if err != nil {
		return nil, fmt.Errorf("volumes: read the checkpoint: %w", err)
	}
	s := &Store{cfg: cfg, vols: map[string]*Volume{}, broken: map[string]string{}}
	ids := make([]string, 0, len(saved))
	for id := range saved {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		var v Volume
		if err := json.Unmarshal(saved[id], &v); err != nil {
			return nil, fmt.Errorf("volumes: checkpointed volume %s: %w", id, err)
		}
		switch v.State {
		case Creating:
			// Never answered for and never used: what was made of it goes.
			cfg.Logger.Warn("removing a volume the agent was making when it stopped", "volume", id)
			if err := s.remove(id); err != nil {
				return nil, err
			}
		case Destroying:
			cfg.Logger.Info("finishing the destroy of a volume", "volume", id)
			if err := s.remove(id); err != nil {
				return nil, err
			}
		default:
			if err := s.mountIfNot(id); err != nil {
				// Kept, and said: a volume is never dropped because it could not be mounted;
				// no task gets it until a restart mounts it.
				cfg.Logger.Error("a volume could not be mounted: no task gets it", "volume", id, "err", err)
				s.broken[id] = err.Error()
			}
			s.vols[id] = &v
		}
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	for _, e := range entries {
		if _, ok := s.vols[e.Name()]; !ok {
			cfg.Logger.Warn("a directory under the volumes dir that no volume of this agent's checkpoint names: left as it is", "path", filepath.Join(cfg.Dir, e.Name()))
		}
	}
	cfg.Logger.Info("volumes recovered", "volumes", len(s.vols))
	return s, nil
}

func (s *Store) dir(id string) string   { return filepath.Join(s.cfg.Dir, id) }
func (s *Store) image(id string) string { return filepath.Join(s.cfg.Dir, id, "image.ext4") }

// Root is where the volume is mounted on the host: what tasks get.
func (s *Store) Root(id string) string { return filepath.Join(s.cfg.Dir, id, "root") }

// mountIfNot mounts a volume's image at its root unless it is mounted there already.
func (s *Store) mountIfNot(id string) error {
	mounted, err := isMountPoint(s.Root(id))
	if err != nil || mounted {
		return err
	}
	if _, err := os.Stat(s.image(id)); err != nil {
		return fmt.Errorf("its image: %w", err)
	}
	if err := os.MkdirAll(s.Root(id), 0o755); err != nil {
		return err
	}
	s.cfg.Logger.Info("mounting a volume anew (the host restarted?)", "volume", id)
	return mountImage(s.image(id), s.Root(id))
}

func (s *Store) save(v *Volume) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	if err := s.cfg.Book.SaveVolume(v.ID, b); err != nil {
		return fmt.Errorf("volumes: checkpoint volume %s: %w", v.ID, err)
	}
	return nil
}

// Get returns a volume's record.
func (s *Store) Get(id string) (Volume, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[id]
	if !ok {
		return Volume{}, false
	}
	return *v, true
}

// Broken says why a volume cannot be used ("" when it can): Open could not mount it (Ensure
// tries again).
func (s *Store) Broken(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken[id]
}

// Ensure makes the volume pv.ID unless the store has it: it answers the volume and whether it
// was made now. One of another size is ErrSizeConflict; one being destroyed ErrDestroying.
func (s *Store) Ensure(pv api.PersistentVolume) (Volume, bool, error) {
	if err := api.ValidateVolumeID(pv.ID); err != nil {
		return Volume{}, false, fmt.Errorf("volumes: id %w", err)
	}
	if pv.Size <= 0 {
		return Volume{}, false, fmt.Errorf("volumes: %s: size %g MiB: must be > 0", pv.ID, pv.Size)
	}
	s.op.Lock()
	defer s.op.Unlock()
	if v, ok := s.Get(pv.ID); ok {
		switch {
		case v.State == Destroying:
			return v, false, fmt.Errorf("%w: %s", ErrDestroying, pv.ID)
		case v.Size != pv.Size:
			return v, false, fmt.Errorf("%w: %s is %g MiB, not %g", ErrSizeConflict, pv.ID, v.Size, pv.Size)
		}
		if s.Broken(pv.ID) != "" { // not mounted at start: tried again
			if err := s.mountIfNot(pv.ID); err != nil {
				return v, false, fmt.Errorf("volumes: mount %s: %w", pv.ID, err)
			}
			s.mu.Lock()
			delete(s.broken, pv.ID)
			s.mu.Unlock()
		}
		return v, false, nil
	}
	if _, err := os.Lstat(s.dir(pv.ID)); err == nil {
		return Volume{}, false, fmt.Errorf("%w: %s", ErrStray, s.dir(pv.ID))
	}
	v := &Volume{PersistentVolume: pv, State: Creating}
	if err := s.save(v); err != nil {
		return Volume{}, false, err
	}
	fail := func(err error) (Volume, bool, error) {
		if rerr := s.remove(pv.ID); rerr != nil {
			s.cfg.Logger.Error("remove a volume that could not be made", "volume", pv.ID, "err", rerr)
		}
		return Volume{}, false, fmt.Errorf("volumes: make %s: %w", pv.ID, err)
	}
	if err := os.MkdirAll(s.Root(pv.ID), 0o755); err != nil {
		return fail(err)
	}
	img, err := makeImage(s.image(pv.ID), s.Root(pv.ID), sizeBytes(pv.Size))
	if err != nil {
		return fail(err)
	}
	v.ImageBytes, v.BaseUsed = img.imageBytes, img.used
	v.State = Ready
	if err := s.save(v); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.vols[pv.ID] = v
	s.mu.Unlock()
	s.cfg.Logger.Info("volume made", "volume", pv.ID, "size_mib", pv.Size, "image_bytes", img.imageBytes,
		"usable_bytes", img.avail, "tries", img.tries, "took", img.took)
	return *v, true, nil
}

// sizeBytes is a Size in MiB, in whole bytes, rounded up.
func sizeBytes(mib float64) int64 {
	b := mib * (1 << 20)
	n := int64(b)
	if float64(n) < b {
		n++
	}
	return n
}

// Given records that a task's user was given the volume's root.
func (s *Store) Given(id string) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	v, ok := s.vols[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNoVolume, id)
	}
	c := *v
	s.mu.Unlock()
	c.Given = true
	if err := s.save(&c); err != nil {
		return err
	}
	s.mu.Lock()
	s.vols[id].Given = true
	s.mu.Unlock()
	return nil
}

// BeginDestroy marks a volume as being destroyed, durably; it answers false when there is no
// such volume. The caller then calls Destroy.
func (s *Store) BeginDestroy(id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[id]
	if !ok {
		return false, nil
	}
	if v.State == Destroying {
		return true, nil
	}
	c := *v
	c.State = Destroying
	if err := s.save(&c); err != nil {
		return true, err
	}
	v.State = Destroying
	return true, nil
}

// Destroy removes a volume BeginDestroy marked: unmounted, its loop device detached, its image
// and directory removed, its record forgotten. A volume not marked is not touched.
func (s *Store) Destroy(id string) error {
	s.op.Lock()
	defer s.op.Unlock()
	v, ok := s.Get(id)
	if !ok {
		return nil
	}
	if v.State != Destroying {
		return fmt.Errorf("volumes: %s is not being destroyed (BeginDestroy first)", id)
	}
	if err := s.remove(id); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.vols, id)
	delete(s.broken, id)
	s.mu.Unlock()
	s.cfg.Logger.Info("volume destroyed", "volume", id)
	return nil
}

// remove unmounts what is mounted at a volume's root, detaches what loop device is left on its
// image, removes its directory and then its record. It is only called for a volume being made
// or destroyed.
func (s *Store) remove(id string) error {
	if err := unmountAll(s.Root(id)); err != nil {
		return fmt.Errorf("volumes: unmount %s: %w", id, err)
	}
	if err := detachLoops(s.image(id)); err != nil {
		return fmt.Errorf("volumes: detach the loop device of %s: %w", id, err)
	}
	if err := os.RemoveAll(s.dir(id)); err != nil {
		return fmt.Errorf("volumes: remove %s: %w", id, err)
	}
	if err := s.cfg.Book.RemoveVolume(id); err != nil {
		return fmt.Errorf("volumes: forget %s: %w", id, err)
	}
	return nil
}

// List is every volume as the agent's API shows it (without the task that mounts it, which
// is the agent's to say), by id.
func (s *Store) List() []api.AgentVolume {
	s.mu.Lock()
	vs := make([]Volume, 0, len(s.vols))
	for _, v := range s.vols {
		vs = append(vs, *v)
	}
	s.mu.Unlock()
	sort.Slice(vs, func(i, j int) bool { return vs[i].ID < vs[j].ID })
	out := make([]api.AgentVolume, 0, len(vs))
	for _, v := range vs {
		var used float64
		if s.Broken(v.ID) == "" {
			used, _ = s.Usage(v)
		}
		out = append(out, api.AgentVolume{PersistentVolume: v.PersistentVolume, Path: s.Root(v.ID), Used: used})
	}
	return out
}

// Usage is how many MiB of a volume its tasks use (ext4's own blocks not counted).
func (s *Store) Usage(v Volume) (float64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.Root(v.ID), &st); err != nil {
		return 0, err
	}
	used := int64(st.Blocks-st.Bfree)*st.Bsize - v.BaseUsed
	return float64(max(used, 0)) / (1 << 20), nil
}

// Release unmounts every volume under dir (an agent's DataDir/volumes) and detaches their loop
// devices, keeping their images and records: for a host whose agent is gone for good, and for
// tests, whose temporary data dirs cannot be removed while volumes are mounted in them. A
// Store opened on dir again mounts them anew. No agent may be running on dir.
func Release(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := unmountAll(filepath.Join(dir, e.Name(), "root")); err != nil {
			errs = append(errs, err)
		}
		if err := detachLoops(filepath.Join(dir, e.Name(), "image.ext4")); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("volumes: release %s: %w", dir, errors.Join(errs...))
	}
	return nil
}
