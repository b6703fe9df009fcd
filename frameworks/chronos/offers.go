package chronos

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/agora-sched/agora/frameworks"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
)

// useOfferLocked launches, into one offer, the waiting runs that fit it (resources, placement),
// recording each attempt first; it returns the runs still waiting.
func (s *Service) useOfferLocked(st *leaderState, o api.Offer, queue []*Run, w *work, now time.Time) []*Run {
	left := o.Resources
	var infos []api.TaskInfo
	rest := queue[:0]
	for i, r := range queue {
		js := st.jobs[r.JobID]
		rs := js.job.Run
		need := resources.Resources{CPUs: rs.CPUs, Mem: rs.Mem, Disk: rs.Disk}
		if why := fitRun(js, need, left, o); len(why) > 0 {
			st.offerStats(r).NotUsed(o, why, now)
			rest = append(rest, r)
			if left.CPUs < 0.01 || left.Mem < 1 {
				rest = append(rest, queue[i+1:]...) // nothing more fits
				break
			}
			continue
		}
		secrets, missing := frameworks.ResolveSecrets(context.Background(), s.m.Secret, rs.Env, rs.secretVolumes(), rs.Secrets)
		if missing != "" {
			// Nothing can run without its secrets: the run fails now, saying which is missing.
			r.fail(now, missing)
			s.finishLocked(st, js, r, w, now)
			continue
		}
		left, _ = left.Subtract(need)
		delete(st.waits, r)
		taskID := fmt.Sprintf("%s_%s.%d", r.JobID, r.ID, r.nextAttempt())
		r.launch(taskID, o, now)
		st.byTask[taskID] = r
		w.putRun(r)
		ti := taskInfo(js.job, r, taskID, need)
		ti.SecretEnv, ti.SecretFiles = secrets.Env, secrets.Files
		infos = append(infos, ti)
		if r.ScheduledAt != nil && r.Attempts == 1 {
			w.lags = append(w.lags, now.Sub(*r.ScheduledAt))
		}
	}
	if len(infos) == 0 {
		refuse := 120.0 // nothing waits that fits: keep these resources away for a while (revived on changes)
		if len(rest) > 0 {
			refuse = 5
		}
		w.declines = append(w.declines, decline{offerID: o.ID, refuse: refuse})
		return rest
	}
	w.launches = append(w.launches, launch{offerID: o.ID, infos: infos})
	return rest
}

// fitRun says why a run's task, which needs need, does not fit what is left of an offer (none:
// it fits): every reason, in Marathon's names and Agora's words.
func fitRun(js *jobState, need, left resources.Resources, o api.Offer) []frameworks.Mismatch {
	var why []frameworks.Mismatch
	for _, c := range js.constraints {
		if !c.allows(o.Hostname, o.Attributes) {
			why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: c.why(o.Hostname, o.Attributes)})
		}
	}
	for _, u := range js.needs.Unmet(o.Attributes) {
		why = append(why, frameworks.Mismatch{Reason: frameworks.UnfulfilledConstraint, Detail: frameworks.UnmetDetail(js.needs, u, o.Hostname)})
	}
	return append(why, frameworks.ShortOf(need, left, o.Hostname)...)
}

// offersWantedLocked revives offers when runs wait and suppresses them when none does.
func (s *Service) offersWantedLocked(st *leaderState, w *work, waiting bool) {
	switch {
	case waiting && st.suppressed:
		st.suppressed = false
		w.calls = append(w.calls, api.Call{Type: api.CallRevive})
	case !waiting && !st.suppressed:
		st.suppressed = true
		w.calls = append(w.calls, api.Call{Type: api.CallSuppress})
	}
}

// taskInfo is the launch of one attempt.
func taskInfo(j *Job, r *Run, taskID string, res resources.Resources) api.TaskInfo {
	rs := j.Run
	env := frameworks.PlainEnv(rs.Env)
	env["AGORA_JOB_ID"] = j.ID
	env["AGORA_RUN_ID"] = r.ID
	if r.ScheduledAt != nil {
		env["AGORA_SCHEDULED_AT"] = r.ScheduledAt.UTC().Format(time.RFC3339)
	}
	dockerEnv, dockerLabels := rs.dockerEnvAndLabels()
	for k, v := range dockerEnv {
		env[k] = v
	}
	labels := j.Labels
	if len(dockerLabels) > 0 {
		labels = maps.Clone(dockerLabels)
		maps.Copy(labels, j.Labels)
	}
	needs := rs.Needs()
	ti := api.TaskInfo{TaskID: taskID, Name: j.ID, Resources: res, Cmd: rs.Cmd, Args: rs.Args, Env: env, Labels: labels,
		KillGracePeriodSeconds: rs.TaskKillGracePeriodSeconds, User: needs.User, Volumes: needs.Volumes, Artifacts: rs.artifacts()}
	if rs.Docker != nil {
		ti.Image, ti.ForcePull = rs.Docker.Image, rs.Docker.ForcePullImage
	}
	return ti
}
