package master

import (
	"time"

	"github.com/agora-sched/agora/master/clockcheck"
	"github.com/agora-sched/agora/pkg/clock"
)

// DefaultMaxClockSkew is --max-clock-skew's default (clockcheck.DefaultMaxSkew says why).
const DefaultMaxClockSkew = clockcheck.DefaultMaxSkew

// ClockVerdict says whether this master's wall clock may be used for decisions that depend on
// it (when cron runs are due): clockcheck.Verdict.
type ClockVerdict = clockcheck.Verdict

// CheckClock is the clock verdict now (master/clockcheck).
func (m *Master) CheckClock() ClockVerdict { return m.clockGuard.Verdict() }

// Clock is the wall clock this master and the frameworks it hosts decide with (Config.Clock).
func (m *Master) Clock() clock.Clock { return m.cfg.Clock }

// MaxClockSkew is how far this master's clock may be off the others' (Config.MaxClockSkew).
func (m *Master) MaxClockSkew() time.Duration { return m.cfg.MaxClockSkew }
