package chronos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/agora-sched/agora/raft"
)

// Namespace is the framework's namespace in the replicated store. Keys:
//
//	framework-id               the id the master gave the framework (frameworks.Driver)
//	job/<job id>               the job's spec, defaults filled
//	cursor/<job id>/<sched id> the latest scheduled time the schedule has acted on (a run
//	                           created or a missed run recorded): the exactly-once mark
//	run/<job id>/<run id>      a run, active or finished (finished ones within the limits)
//	history/<job id>           counts, finished and missed runs
//
// A scheduled run, the cursor it moves and the missed runs it passes are one batch, so a leader
// change at any moment neither skips a due run nor creates it twice; an attempt (its task id) is
// recorded before its task is launched.
const Namespace = "chronos"

// Applier applies the namespace's commands (raft.Batch).
func Applier() raft.Applier { return raft.BatchApplier(Namespace) }

func jobKey(id string) string            { return "job/" + id }
func cursorKey(job, sched string) string { return "cursor/" + job + "/" + sched }
func cursorPrefix(job string) string     { return "cursor/" + job + "/" }
func runKey(job, run string) string      { return "run/" + job + "/" + run }
func runPrefix(job string) string        { return "run/" + job + "/" }
func historyKey(job string) string       { return "history/" + job }

// loaded is what the store holds, read at once.
type loaded struct {
	jobs      map[string]*Job
	cursors   map[string]map[string]time.Time // job → schedule → time
	runs      map[string][]*Run               // job → runs
	histories map[string]*History
}

func load(ctx context.Context, store raft.Namespace) (*loaded, error) {
	v, err := store.View(ctx, raft.Stale)
	if err != nil {
		return nil, err
	}
	l := &loaded{jobs: map[string]*Job{}, cursors: map[string]map[string]time.Time{}, runs: map[string][]*Run{}, histories: map[string]*History{}}
	var bad error
	each := func(prefix string, f func(key string, data []byte) error) {
		v.List(prefix, func(key string, data []byte) bool {
			if err := f(strings.TrimPrefix(key, prefix), data); err != nil {
				bad = fmt.Errorf("chronos: load %s%s: %w", prefix, key, err)
			}
			return bad == nil
		})
	}
	each("job/", func(_ string, data []byte) error {
		var j Job
		if err := json.Unmarshal(data, &j); err != nil {
			return err
		}
		l.jobs[j.ID] = &j
		return nil
	})
	each("cursor/", func(key string, data []byte) error {
		job, sched, _ := strings.Cut(key, "/")
		var t time.Time
		if err := json.Unmarshal(data, &t); err != nil {
			return err
		}
		if l.cursors[job] == nil {
			l.cursors[job] = map[string]time.Time{}
		}
		l.cursors[job][sched] = t
		return nil
	})
	each("run/", func(_ string, data []byte) error {
		var r Run
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		l.runs[r.JobID] = append(l.runs[r.JobID], &r)
		return nil
	})
	each("history/", func(job string, data []byte) error {
		var h History
		if err := json.Unmarshal(data, &h); err != nil {
			return err
		}
		l.histories[job] = &h
		return nil
	})
	return l, bad
}
