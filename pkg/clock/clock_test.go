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
