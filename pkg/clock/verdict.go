package clock

import "time"

// Verdict says whether a master's wall clock may be used for decisions that depend on it (when
// cron runs are due): the masters compare their clocks (master/clockcheck) and the embedded
// frameworks read the verdict.
type Verdict struct {
	// Trusted is false while the clock cannot be shown to agree with a majority of the masters
	// within their maximum skew; Reason then says why.
	Trusted bool
	Reason  string
	// Lag is how far to set the time of decisions back from this master's clock: to the
	// earliest clock of the peers that agree with it when one is behind (never forward), so
	// that nothing fires before it is due by any of them.
	Lag time.Duration
}
