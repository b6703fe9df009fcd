package netem

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		s    Shape
		want string
	}{
		{Shape{Delay: -time.Millisecond}, "Delay"},
		{Shape{Delay: time.Millisecond, Jitter: -time.Millisecond}, "Jitter"},
		{Shape{Delay: time.Millisecond, Jitter: 2 * time.Millisecond}, "Jitter"},
		{Shape{Loss: -0.1}, "Loss"},
		{Shape{Loss: 1.5}, "Loss"},
		{Shape{Loss: math.NaN()}, "Loss"},
		{Shape{Reorder: 2}, "Reorder"},
		{Shape{Reorder: math.Inf(1)}, "Reorder"},
	} {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.s, err, tc.want)
		}
		if _, err := Apply("netem-no-such-ns", []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32")}, tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply %+v: error %v, want one naming %s", tc.s, err, tc.want)
		}
	}
	for _, s := range []Shape{{}, {Delay: time.Second, Jitter: time.Second, Loss: 1, Reorder: 1}, {Loss: 0.3}} {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

func TestApplyRefusesBadTargets(t *testing.T) {
	ok := []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32")}
	for _, tc := range []struct {
		ns   string
		dsts []netip.Prefix
		want string
	}{
		{"netem-no-such-ns", ok, `network namespace "netem-no-such-ns" does not exist`},
		{"../etc", ok, "is not a name"},
		{"", ok, "is not a name"},
		{"netem-no-such-ns", nil, "no destination prefixes"},
		{"netem-no-such-ns", []netip.Prefix{{}}, "dsts[0]"},
	} {
		l, err := Apply(tc.ns, tc.dsts, Shape{Delay: time.Millisecond})
		if err == nil {
			l.Close()
			t.Errorf("Apply(%q, %v) worked", tc.ns, tc.dsts)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply(%q, %v): %v, want %q in it", tc.ns, tc.dsts, err, tc.want)
		}
	}
}

// TestDecideFollowsTheShape draws many fates with a fixed seed: the fractions dropped and
// reordered are the shape's, delays stay within Delay±Jitter and reach both ends.
func TestDecideFollowsTheShape(t *testing.T) {
	const n = 200_000
	s := Shape{Delay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond, Loss: 0.3, Reorder: 0.25}
	r := rand.New(rand.NewPCG(1, 2))
	var dropped, reordered, delayed int
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	for range n {
		f := s.decide(r)
		switch {
		case f.drop:
			dropped++
		case f.reorder:
			reordered++
		default:
			delayed++
			lo, hi = min(lo, f.delay), max(hi, f.delay)
		}
	}
	// With the seed fixed the figures are fixed; the bounds (about 5 standard deviations) say
	// what they mean.
	if f := float64(dropped) / n; math.Abs(f-0.3) > 0.005 {
		t.Errorf("dropped %.4f of packets, want 0.3", f)
	}
	if f := float64(reordered) / float64(n-dropped); math.Abs(f-0.25) > 0.006 {
		t.Errorf("reordered %.4f of the packets not dropped, want 0.25", f)
	}
	if lo < 5*time.Millisecond || hi > 35*time.Millisecond {
		t.Errorf("delays from %v to %v, want within 5ms..35ms", lo, hi)
	}
	if lo > 5*time.Millisecond+100*time.Microsecond || hi < 35*time.Millisecond-100*time.Microsecond {
		t.Errorf("delays from %v to %v do not cover 5ms..35ms", lo, hi)
	}

	// A plain delay draws nothing and is the same for every packet.
	plain := Shape{Delay: 50 * time.Millisecond}
	for range 100 {
		if f := plain.decide(r); f != (fate{delay: 50 * time.Millisecond}) {
			t.Fatalf("Delay alone gave %+v", f)
		}
	}
	if f := (Shape{Loss: 1}).decide(r); !f.drop {
		t.Errorf("Loss 1 let a packet through: %+v", f)
	}
}

// TestHeldHeapOrdersLikeSort checks the heap against sorting, packets pushed and popped at random.
func TestHeldHeapOrdersLikeSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		var h heldHeap
		var naive []heldPacket
		id := uint32(0)
		for range r.IntN(300) {
			if len(naive) > 0 && r.IntN(3) == 0 {
				slices.SortFunc(naive, func(a, b heldPacket) int {
					if a.due != b.due {
						return int(a.due - b.due)
					}
					return int(a.id) - int(b.id)
				})
				want := naive[0]
				naive = naive[1:]
				if got := h.pop(); got != want {
					t.Fatalf("round %d: popped %+v, want %+v", round, got, want)
				}
				continue
			}
			id++
			p := heldPacket{due: r.Int64N(50), id: id}
			h.push(p)
			naive = append(naive, p)
		}
		if h.Len() != len(naive) {
			t.Fatalf("round %d: heap holds %d, want %d", round, h.Len(), len(naive))
		}
	}
}
