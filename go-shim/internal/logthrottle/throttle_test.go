package logthrottle

import (
	"sync"
	"testing"
	"time"
)

// clock is a clock the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1000, 0)} }

// try calls th.Try with a write that records its arguments and answers wrote.
func try(th *Throttle, wrote bool) (called bool, at time.Time, noted int64, ok bool) {
	ok = th.Try(func(now time.Time, n int64) bool {
		called, at, noted = true, now, n
		return wrote
	})
	return called, at, noted, ok
}

func TestThrottle(t *testing.T) {
	c := newClock()
	th := New(10*time.Second, c.now)
	if th.Interval() != 10*time.Second {
		t.Errorf("interval %s", th.Interval())
	}

	// The first message is due at once, with what was noted before it.
	th.Note()
	th.Note()
	if called, at, noted, ok := try(th, true); !called || !ok || !at.Equal(c.t) || noted != 2 {
		t.Fatalf("first try: called %v at %v with %d, wrote %v; want a call at %v with 2, written", called, at, noted, ok, c.t)
	}

	// Within the interval, to its last nanosecond: write is not called,
	// and what is noted meanwhile waits for the next message.
	for _, d := range []time.Duration{0, time.Second, 10*time.Second - 1} {
		th.Note()
		c.t = time.Unix(1000, 0).Add(d)
		if called, _, _, ok := try(th, true); called || ok {
			t.Fatalf("%s after a message: called %v, wrote %v; want neither", d, called, ok)
		}
	}

	// An interval after the message, the next is due and counts them.
	c.t = time.Unix(1010, 0)
	if called, at, noted, ok := try(th, true); !called || !ok || !at.Equal(c.t) || noted != 3 {
		t.Fatalf("an interval later: called %v at %v with %d, wrote %v; want a call at %v with 3, written", called, at, noted, ok, c.t)
	}

	// A write that finds nothing to say starts no interval and keeps the
	// count: the next try, however soon, may write.
	c.add(10 * time.Second)
	th.Note()
	if called, _, noted, ok := try(th, false); !called || ok || noted != 1 {
		t.Fatalf("a write that wrote nothing: called %v with %d, wrote %v; want a call with 1, not written", called, noted, ok)
	}
	c.add(time.Nanosecond)
	if called, _, noted, ok := try(th, true); !called || !ok || noted != 1 {
		t.Fatalf("the try after it: called %v with %d, wrote %v; want a call with 1, written", called, noted, ok)
	}

	// The count started again from zero.
	c.add(10 * time.Second)
	if _, _, noted, _ := try(th, true); noted != 0 {
		t.Errorf("%d noted after a message with nothing noted since, want 0", noted)
	}
}

// TestThrottleConcurrent: occurrences noted from many goroutines are each
// counted once, in one message or another.
func TestThrottleConcurrent(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	th := New(10*time.Second, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second) // every read moves the clock on
		return now
	})
	var (
		wg      sync.WaitGroup
		total   int64
		totalMu sync.Mutex
	)
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 100; i++ {
				th.Note()
				th.Try(func(_ time.Time, n int64) bool {
					totalMu.Lock()
					total += n
					totalMu.Unlock()
					return true
				})
			}
		})
	}
	wg.Wait()
	// Whatever is still noted goes into the next message.
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	th.Try(func(_ time.Time, n int64) bool { total += n; return true })
	if total != 800 {
		t.Errorf("%d occurrences in the messages, want 800", total)
	}
}
