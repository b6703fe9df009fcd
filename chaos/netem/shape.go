package netem

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Shape is what a Link does to each packet, in netem's terms. The zero Shape lets every packet
// through at once.
type Shape struct {
	// Delay is how long a packet is held before it goes on; Jitter spreads that uniformly over
	// [Delay-Jitter, Delay+Jitter], so packets sent less than 2×Jitter apart may overtake each
	// other.
	Delay, Jitter time.Duration
	// Loss is the probability that a packet is dropped; Reorder the probability that a packet not
	// dropped goes on at once, overtaking the delayed ones (netem's reorder). Both in [0, 1].
	Loss, Reorder float64
}

// Validate says what is wrong with s, naming the field.
func (s Shape) Validate() error {
	switch {
	case s.Delay < 0:
		return fmt.Errorf("netem: Delay %v is negative", s.Delay)
	case s.Jitter < 0:
		return fmt.Errorf("netem: Jitter %v is negative", s.Jitter)
	case s.Jitter > s.Delay:
		return fmt.Errorf("netem: Jitter %v is more than Delay %v (a delay cannot be negative)", s.Jitter, s.Delay)
	case !probability(s.Loss):
		return fmt.Errorf("netem: Loss %v is not a probability in [0, 1]", s.Loss)
	case !probability(s.Reorder):
		return fmt.Errorf("netem: Reorder %v is not a probability in [0, 1]", s.Reorder)
	}
	return nil
}

func probability(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 1 }

// fate is what becomes of one packet.
type fate struct {
	drop    bool
	reorder bool          // goes on at once, by Reorder
	delay   time.Duration // otherwise: how long it is held (0: not at all)
}

// decide draws one packet's fate, in netem's order: loss first, then reorder, then the delay.
// It draws from r only what the shape needs, so a seeded r gives the same fates every time.
func (s Shape) decide(r *rand.Rand) fate {
	if s.Loss > 0 && r.Float64() < s.Loss {
		return fate{drop: true}
	}
	if s.Reorder > 0 && r.Float64() < s.Reorder {
		return fate{reorder: true}
	}
	d := s.Delay
	if s.Jitter > 0 {
		d += time.Duration(r.Int64N(2*int64(s.Jitter)+1)) - s.Jitter
	}
	return fate{delay: d}
}
