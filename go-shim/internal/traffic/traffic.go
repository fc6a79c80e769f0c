// Package traffic is the seeded randomness that the shim's trace generators
// draw from: cmd/demotraffic's shop, and the conformance module's benchmark
// workload and differential scenarios. A generator's traffic is fixed by its
// seed: the same seed and stream give the same draws, IDs included.
package traffic

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Rand is a seeded random source with the draws trace generators share.
// Its embedded *rand.Rand serves the rest (IntN, Float64, Shuffle, ...).
type Rand struct {
	*rand.Rand
}

// New returns the source of seed on stream: a PCG whose two words they are.
// Each generator keeps a stream of its own, so that one seed gives two
// generators unrelated traffic.
func New(seed, stream uint64) *Rand {
	return &Rand{rand.New(rand.NewPCG(seed, stream))}
}

// Chance reports true with probability p.
func (r *Rand) Chance(p float64) bool { return r.Float64() < p }

// Between returns a duration in [lo, hi); hi must be above lo.
func (r *Rand) Between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// TraceID draws a trace ID from two words, big-endian; the first is odd, so
// the ID is never the invalid all-zero one.
func (r *Rand) TraceID() pcommon.TraceID {
	var id [16]byte
	binary.BigEndian.PutUint64(id[:8], r.Uint64()|1)
	binary.BigEndian.PutUint64(id[8:], r.Uint64())
	return id
}

// SpanID draws a span ID from one word, big-endian, made odd so that the ID
// is never the invalid all-zero one.
func (r *Rand) SpanID() pcommon.SpanID {
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], r.Uint64()|1)
	return id
}
