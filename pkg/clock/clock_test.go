package clock

import (
	"testing"
	"time"
)

func TestFakeFiresOnlyWhenDue(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	a, b := f.After(time.Second), f.After(3*time.Second)
	f.Advance(999 * time.Millisecond)
	select {
	case <-a:
		t.Fatal("fired early")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-a; !got.Equal(time.Unix(1, 0)) {
		t.Fatalf("fired at %v", got)
	}
	if f.Waiters() != 1 {
		t.Fatalf("waiters = %d", f.Waiters())
	}
	f.Advance(2 * time.Second)
	<-b
	if now := <-f.After(0); !now.Equal(time.Unix(3, 0)) {
		t.Fatalf("After(0) = %v", now)
	}
	var _ Clock = Real{}
	var _ Clock = f
}

func TestShiftedStepsWithoutMovingTimers(t *testing.T) {
	f := NewFake(time.Unix(100, 0))
	s := NewShifted(f, 90*time.Second)
	if got := s.Now(); !got.Equal(time.Unix(190, 0)) {
		t.Fatalf("Now = %v, want base + 90 s", got)
	}
	after := s.After(time.Second)
	s.SetOffset(-time.Second)
	if got := s.Now(); !got.Equal(time.Unix(99, 0)) {
		t.Fatalf("after SetOffset(-1s): Now = %v", got)
	}
	f.Advance(time.Second)
	<-after // a timer is the base clock's: one second of it, whatever the offset says
	if s.Offset() != -time.Second {
		t.Fatalf("Offset = %v", s.Offset())
	}
	var _ Clock = s
}
