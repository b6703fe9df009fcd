package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/agora-sched/agora/pkg/clock"
)

// chaosClockPoll is how often --chaos-clock-file is read again.
const chaosClockPoll = 200 * time.Millisecond

// masterClock is the wall clock a master decides with: the system's, or — for the chaos
// harness, with --chaos-faults only — the system's moved by --chaos-clock-offset, then by what
// --chaos-clock-file says (a Go duration such as 90s or -2m; no file: the flag's offset), read
// again every 200 ms while the master runs.
func masterClock(c *cli.Context, logger *slog.Logger) (clock.Clock, error) {
	offset, file := c.Duration("chaos-clock-offset"), c.String("chaos-clock-file")
	if offset == 0 && file == "" {
		return clock.Real{}, nil
	}
	if !c.Bool("chaos-faults") {
		return nil, usageError{"--chaos-clock-offset and --chaos-clock-file are fault injection for the chaos harness: they need --chaos-faults"}
	}
	clk := clock.NewShifted(clock.Real{}, offset)
	if file == "" {
		logger.Warn("fault injection: this master's clock is shifted", "offset", offset)
		return clk, nil
	}
	read := func() {
		want := offset
		b, err := os.ReadFile(file)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			logger.Warn("fault injection: --chaos-clock-file", "err", err)
			return
		default:
			d, err := time.ParseDuration(strings.TrimSpace(string(b)))
			if err != nil {
				logger.Warn("fault injection: --chaos-clock-file", "err", fmt.Errorf("%s: %w", file, err))
				return
			}
			want = d
		}
		if want != clk.Offset() {
			clk.SetOffset(want)
			logger.Warn("fault injection: this master's clock is shifted", "offset", want)
		}
	}
	read()
	go func() {
		for {
			select {
			case <-c.Context.Done():
				return
			case <-time.After(chaosClockPoll):
				read()
			}
		}
	}()
	return clk, nil
}
