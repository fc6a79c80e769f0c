package testutil

import (
	"testing"
	"time"
)

// Ticker stands in for one of a metricsloop.Loop's tickers: the test ticks
// it by hand, and the loop's After hook for it (AfterExpire, AfterPush)
// reports each tick handled, so that Tick returns once the loop has done
// its work.
type Ticker struct {
	c       chan time.Time
	handled chan struct{}
}

// NewTicker returns a ticker that ticks only when Tick is called.
func NewTicker() *Ticker {
	return &Ticker{c: make(chan time.Time), handled: make(chan struct{}, 1)}
}

// Tick sends one tick at now and waits until the loop has handled it.
func (k *Ticker) Tick(now time.Time) {
	k.c <- now
	<-k.handled
}

// Handled is the loop's After hook for this ticker.
func (k *Ticker) Handled() { k.handled <- struct{}{} }

// Tickers is a loop's NewTicker seam that hands out, for each period, the
// ticker byPeriod has for it (never stopped: a test's ticker only stops
// ticking), and fails the test when the loop asks for any other period.
func Tickers(t testing.TB, byPeriod map[time.Duration]*Ticker) func(time.Duration) (<-chan time.Time, func()) {
	return func(d time.Duration) (<-chan time.Time, func()) {
		k, ok := byPeriod[d]
		if !ok {
			t.Errorf("unexpected ticker period %s", d)
			return nil, func() {}
		}
		return k.c, func() {}
	}
}
