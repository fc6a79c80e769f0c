package testutil

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := NewClock(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("Now() = %v, want %v", c.Now(), t0)
	}
	c.Add(time.Minute)
	if want := t0.Add(time.Minute); !c.Now().Equal(want) {
		t.Errorf("after Add: %v, want %v", c.Now(), want)
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Errorf("after Set: %v, want %v", c.Now(), t0)
	}
}

// TestTicker: Tick hands its time to the loop and returns only once the
// loop has reported the tick handled.
func TestTicker(t *testing.T) {
	expiry, push := NewTicker(), NewTicker()
	newTicker := Tickers(t, map[time.Duration]*Ticker{time.Second: expiry, time.Minute: push})
	ticks, stop := newTicker(time.Second)
	defer stop()
	got := make(chan time.Time, 1)
	go func() {
		now := <-ticks
		got <- now
		expiry.Handled()
	}()
	t0 := time.Unix(1_700_000_000, 0)
	expiry.Tick(t0)
	select {
	case now := <-got:
		if !now.Equal(t0) {
			t.Errorf("the loop got %v, want %v", now, t0)
		}
	default:
		t.Fatal("Tick returned before the loop had the tick")
	}
	if other, _ := newTicker(time.Minute); other != (<-chan time.Time)(push.c) {
		t.Error("the push period got another ticker's channel")
	}
}
