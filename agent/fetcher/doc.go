// Package fetcher downloads a task's artifacts (api.Artifact: Marathon's fetch and uris,
// Metronome's artifacts) into its sandbox before the task starts, as Mesos's fetcher does.
//
// Use:
//
//  1. New(Config{CacheDir, CacheBytes, MaxBytes, Timeout, FileDirs, AllowNets}) makes a fetcher and reads
//     what its cache holds from an earlier run.
//  2. Fetch(ctx, sandbox, artifacts) downloads each artifact into the sandbox (creating it),
//     under OutputFile or the URI's last element; makes it executable when asked; unpacks
//     archives (.tar, .tar.gz, .tgz, .tar.bz2, .tbz2, .zip) when asked to extract; and keeps
//     what is asked to be cached in the cache, keyed by URI, so that the next task to ask for it
//     reads it from there. Its error names the URI.
//
// Bounds: each download, and each archive's unpacked content, is at most MaxBytes; all of a
// task's artifacts are fetched within Timeout; the cache holds at most CacheBytes, dropping the
// least recently used downloads first. Everything is written through an os.Root of the
// sandbox, so an archive's entries, links and names cannot reach outside it. Files keep no
// setuid, setgid or sticky bit. The executor gives the sandbox, and what is in it, to the
// task's user when it launches the task.
//
// URIs are http:// and https:// (redirects only to those), and file:// only under the
// directories FileDirs names (none by default: a task must not read the agent's host).
// Downloads connect only to addresses of the public internet or of AllowNets (none by
// default): a task must not make the agent read its host's own services, its site's network or
// a cloud's instance metadata. The check is on the address dialed, so it holds after DNS and
// across redirects (netpolicy.go).
package fetcher
