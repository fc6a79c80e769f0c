// Package logthrottle keeps the components' messages about trouble that can
// come with every batch (batches the engine rejects, input its full caps turn
// away) to at most one per interval, each message counting what happened
// since the one before. The processor, the connector and the receiver log
// rejected batches through a RejectLog; the expiry loop that all three share
// (metricsloop) warns of overflowed caps through an OverflowLog.
package logthrottle

import (
	"sync"
	"time"
)

// Interval is the least time between two messages of one log in the
// components.
const Interval = 10 * time.Second

// Throttle lets at most one message through per interval, reading the time
// from its clock. It is safe for concurrent use.
type Throttle struct {
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	last  time.Time // when the last message was written; zero before the first
	noted int64     // occurrences noted since the last message
}

// New returns a throttle of the given interval that reads the time from
// clock (time.Now in the components, a hand-moved clock in tests).
func New(interval time.Duration, clock func() time.Time) *Throttle {
	return &Throttle{interval: interval, now: clock}
}

// Interval is the least time between two messages.
func (t *Throttle) Interval() time.Duration { return t.interval }

// Note counts one occurrence toward the next message.
func (t *Throttle) Note() {
	t.mu.Lock()
	t.noted++
	t.mu.Unlock()
}

// Try calls write when a message is due (none has been written yet, or the
// last one was written at least an interval ago) with the time its clock
// reads and the occurrences noted since the last message. When write reports
// that it wrote a message, a new interval starts and the count starts again
// from zero; when it did not, the next Try may write. Try reports whether a
// message was written. Calls of write are one at a time.
func (t *Throttle) Try(write func(now time.Time, noted int64) bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		return false
	}
	if !write(now, t.noted) {
		return false
	}
	t.last, t.noted = now, 0
	return true
}
