package traffic

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSameSeedSameDraws: two sources of one seed and stream draw alike; a
// different stream draws otherwise.
func TestSameSeedSameDraws(t *testing.T) {
	a, b, other := New(7, 3), New(7, 3), New(7, 4)
	same := true
	for i := 0; i < 100; i++ {
		ta, tb, to := a.TraceID(), b.TraceID(), other.TraceID()
		if ta != tb || a.SpanID() != b.SpanID() || a.IntN(1000) != b.IntN(1000) {
			t.Fatalf("draw %d differs between two sources of one seed", i)
		}
		_, _ = other.SpanID(), other.IntN(1000)
		same = same && ta == to
	}
	if same {
		t.Error("another stream drew the same trace IDs")
	}
}

// TestIDs: the IDs are the PCG's words, big-endian, with the low bit of
// the first set; never all zero.
func TestIDs(t *testing.T) {
	r := New(1, 2)
	words := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		trace := r.TraceID()
		hi, lo := words.Uint64(), words.Uint64()
		if got := binary.BigEndian.Uint64(trace[:8]); got != hi|1 {
			t.Fatalf("trace ID %d: first word %x, want %x", i, got, hi|1)
		}
		if got := binary.BigEndian.Uint64(trace[8:]); got != lo {
			t.Fatalf("trace ID %d: second word %x, want %x", i, got, lo)
		}
		span := r.SpanID()
		if got, w := binary.BigEndian.Uint64(span[:]), words.Uint64()|1; got != w {
			t.Fatalf("span ID %d: %x, want %x", i, got, w)
		}
		if trace.IsEmpty() || span.IsEmpty() {
			t.Fatalf("an empty ID at draw %d", i)
		}
	}
}

func TestBetweenAndChance(t *testing.T) {
	r := New(1, 2)
	for i := 0; i < 1000; i++ {
		if d := r.Between(time.Millisecond, 3*time.Millisecond); d < time.Millisecond || d >= 3*time.Millisecond {
			t.Fatalf("Between(1ms, 3ms) = %s", d)
		}
		if r.Chance(0) {
			t.Fatal("Chance(0) was true")
		}
		if !r.Chance(1) {
			t.Fatal("Chance(1) was false")
		}
	}
}
