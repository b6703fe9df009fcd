package fetcher

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// Defaults of Config.
const (
	DefaultMaxBytes   = 1 << 30 // 1 GiB
	DefaultTimeout    = 5 * time.Minute
	DefaultCacheBytes = 2 << 30 // 2 GiB
)

// Config configures a Fetcher.
type Config struct {
	// CacheDir holds cached downloads; empty: no cache (artifacts asking for it are fetched
	// anew each time).
	CacheDir string
	// CacheBytes bounds the cache (default DefaultCacheBytes; negative: no cache).
	CacheBytes int64
	// MaxBytes bounds each download and each archive's unpacked content (default
	// DefaultMaxBytes).
	MaxBytes int64
	// Timeout bounds the fetching of all of one task's artifacts (default DefaultTimeout).
	Timeout time.Duration
	// FileDirs are the directories whose files file:// URIs may name; none by default.
	FileDirs []string
	// AllowNets are the networks other than the public internet that http(s) artifacts may come
	// from. None by default: loopback, link-local (cloud metadata), private (RFC 1918, unique
	// local, carrier-grade NAT), unspecified, multicast and reserved addresses are refused, as
	// they are when connecting (after DNS, and on every redirect).
	AllowNets []netip.Prefix
	// Client downloads (default: a client that follows redirects to http and https only and
	// keeps to AllowNets). A client given here is used as is.
	Client *http.Client
	Logger *slog.Logger
}

// Fetcher fetches artifacts into sandboxes; it is safe for concurrent use.
type Fetcher struct {
	cfg Config

	mu    sync.Mutex // guards the fields below
	cache map[string]*entry
	used  int64  // bytes the cache holds
	seq   uint64 // of the latest use
}

// entry is one cached download, the file CacheDir/<key>.
type entry struct {
	size int64
	used uint64 // seq of its latest use
}

// New makes a fetcher; it drops what an earlier run left half-downloaded in the cache.
func New(cfg Config) (*Fetcher, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.CacheBytes < 0 {
		cfg.CacheDir = ""
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = newClient(cfg.AllowNets)
	}
	for i, d := range cfg.FileDirs {
		abs, err := filepath.Abs(d)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			return nil, fmt.Errorf("fetcher: file dir %s: %w", d, err)
		}
		cfg.FileDirs[i] = abs
	}
	f := &Fetcher{cfg: cfg, cache: map[string]*entry{}}
	if cfg.CacheDir == "" {
		return f, nil
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("fetcher: cache: %w", err)
	}
	des, err := os.ReadDir(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("fetcher: cache: %w", err)
	}
	type found struct {
		key  string
		size int64
		mod  time.Time
	}
	var have []found
	for _, de := range des {
		p := filepath.Join(cfg.CacheDir, de.Name())
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() || len(de.Name()) != sha256.Size*2 {
			os.RemoveAll(p) // a download cut short, or nothing of ours
			continue
		}
		have = append(have, found{de.Name(), fi.Size(), fi.ModTime()})
	}
	sort.Slice(have, func(i, j int) bool { return have[i].mod.Before(have[j].mod) })
	for _, h := range have {
		f.seq++
		f.cache[h.key] = &entry{size: h.size, used: f.seq}
		f.used += h.size
	}
	f.mu.Lock()
	f.evictLocked("")
	f.mu.Unlock()
	return f, nil
}

// Fetch fetches a task's artifacts into its sandbox, in order; the first failure ends it, with
// an error naming the URI.
func (f *Fetcher) Fetch(ctx context.Context, sandbox string, as []api.Artifact) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	if err := os.MkdirAll(sandbox, 0o700); err != nil {
		return fmt.Errorf("fetcher: sandbox: %w", err)
	}
	root, err := os.OpenRoot(sandbox)
	if err != nil {
		return fmt.Errorf("fetcher: sandbox: %w", err)
	}
	defer root.Close()
	for _, a := range as {
		if err := f.fetch(ctx, root, a); err != nil {
			if ctx.Err() == context.DeadlineExceeded {
				err = fmt.Errorf("%w (the agent's limit for fetching a task's artifacts is %s: --fetch-timeout)", err, f.cfg.Timeout)
			}
			return fmt.Errorf("fetch %s: %w", a.URI, err)
		}
	}
	return nil
}

func (f *Fetcher) fetch(ctx context.Context, root *os.Root, a api.Artifact) error {
	if err := api.ArtifactURI(a.URI); err != nil {
		return err
	}
	name, err := api.ArtifactName(a)
	if err != nil {
		return err
	}
	if err := api.SandboxPath(name); err != nil {
		return fmt.Errorf("output file: %w", err)
	}
	src, err := f.open(ctx, a)
	if err != nil {
		return err
	}
	defer src.Close()
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := os.FileMode(0o644)
	if a.Executable {
		mode = 0o755
	}
	dst, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	n, err := io.Copy(dst, io.LimitReader(contextReader{ctx, src}, f.cfg.MaxBytes+1))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > f.cfg.MaxBytes {
		err = f.tooBig()
	}
	if err != nil {
		root.Remove(name)
		return err
	}
	if err := root.Chmod(name, mode); err != nil { // whatever the umask took away
		return err
	}
	if a.Extract && api.IsArchive(name) {
		if err := f.extract(ctx, root, name); err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
	}
	return nil
}

func (f *Fetcher) tooBig() error {
	return fmt.Errorf("larger than the agent's limit of %d bytes (--fetch-max-bytes)", f.cfg.MaxBytes)
}

// open answers the artifact's content: from the cache, a download, or a file of an allowed
// directory.
func (f *Fetcher) open(ctx context.Context, a api.Artifact) (io.ReadCloser, error) {
	u, err := url.Parse(a.URI)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "file" {
		return f.openFile(u.Path)
	}
	if a.Cache && f.cfg.CacheDir != "" {
		return f.cached(ctx, a.URI)
	}
	resp, err := f.get(ctx, a.URI)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// openFile opens a file under one of FileDirs, its links followed.
func (f *Fetcher) openFile(p string) (io.ReadCloser, error) {
	if len(f.cfg.FileDirs) == 0 {
		return nil, errors.New("this agent fetches no file:// URIs (agora agent --fetch-file-dir DIR allows a directory)")
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	allowed := false
	for _, d := range f.cfg.FileDirs {
		if real == d || strings.HasPrefix(real, d+string(filepath.Separator)) {
			allowed = true
		}
	}
	if !allowed {
		return nil, fmt.Errorf("%s is not under a directory this agent lets tasks fetch from (--fetch-file-dir: %s)", p, strings.Join(f.cfg.FileDirs, ", "))
	}
	file, err := os.Open(real)
	if err != nil {
		return nil, err
	}
	if fi, err := file.Stat(); err != nil || !fi.Mode().IsRegular() {
		file.Close()
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return file, nil
}

// get starts a download; a status other than 200 is an error.
func (f *Fetcher) get(ctx context.Context, uri string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		var refused refusedError
		if errors.As(err, &refused) {
			return nil, refused
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URI is named by the caller
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		resp.Body.Close()
		return nil, f.tooBig()
	}
	return resp, nil
}

// cached answers the cached download of uri, downloading it into the cache first if it is not
// there.
func (f *Fetcher) cached(ctx context.Context, uri string) (io.ReadCloser, error) {
	sum := sha256.Sum256([]byte(uri))
	key := hex.EncodeToString(sum[:])
	final := filepath.Join(f.cfg.CacheDir, key)
	f.mu.Lock()
	if e := f.cache[key]; e != nil {
		file, err := os.Open(final)
		if err == nil {
			f.seq++
			e.used = f.seq
			f.mu.Unlock()
			now := time.Now()
			os.Chtimes(final, now, now) // the order of use, for the next start
			return file, nil
		}
		f.used -= e.size
		delete(f.cache, key)
	}
	f.mu.Unlock()

	resp, err := f.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var suffix [8]byte
	rand.Read(suffix[:])
	part := final + "." + hex.EncodeToString(suffix[:]) + ".part"
	tmp, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fetcher: cache: %w", err)
	}
	n, err := io.Copy(tmp, io.LimitReader(contextReader{ctx, resp.Body}, f.cfg.MaxBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > f.cfg.MaxBytes {
		err = f.tooBig()
	}
	if err != nil {
		os.Remove(part)
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := os.Rename(part, final); err != nil {
		os.Remove(part)
		return nil, fmt.Errorf("fetcher: cache: %w", err)
	}
	file, err := os.Open(final) // open before eviction may remove it: the reader keeps it
	if err != nil {
		return nil, fmt.Errorf("fetcher: cache: %w", err)
	}
	if old := f.cache[key]; old != nil {
		f.used -= old.size
	}
	f.seq++
	f.cache[key] = &entry{size: n, used: f.seq}
	f.used += n
	f.evictLocked(key)
	return file, nil
}

// evictLocked removes the least recently used downloads until the cache is within its bound;
// keep (just added) goes last, and only when it alone is over the bound.
func (f *Fetcher) evictLocked(keep string) {
	for f.used > f.cfg.CacheBytes && len(f.cache) > 0 {
		victim := ""
		for k, e := range f.cache {
			if k == keep && len(f.cache) > 1 {
				continue
			}
			if victim == "" || e.used < f.cache[victim].used {
				victim = k
			}
		}
		if err := os.Remove(filepath.Join(f.cfg.CacheDir, victim)); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.cfg.Logger.Warn("fetch cache: remove", "file", victim, "err", err)
		}
		f.used -= f.cache[victim].size
		delete(f.cache, victim)
	}
}

// CacheUsage is how many downloads the cache holds and their bytes.
func (f *Fetcher) CacheUsage() (entries int, bytes int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cache), f.used
}

// contextReader stops reading once ctx ends (a stalled file source, a slow disk).
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
