package chaos

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Timeline is what happened during a scenario, in order, with times since its start.
type Timeline struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

// NewTimeline starts a timeline now.
func NewTimeline() *Timeline { return &Timeline{start: time.Now()} }

// Add notes an event.
func (tl *Timeline) Add(format string, args ...any) {
	if tl == nil {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.lines = append(tl.lines, fmt.Sprintf("%7.2fs  %s", time.Since(tl.start).Seconds(), fmt.Sprintf(format, args...)))
}

// String is the timeline, one event per line.
func (tl *Timeline) String() string {
	if tl == nil {
		return ""
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.lines, "\n")
}
