package logthrottle

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

func TestRejectLogIsRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := newClock()
	r := NewRejectLog(zap.New(core), 10*time.Second, c.now, "the batch was dropped")
	bad := &engine.Error{Op: "consume", Status: engine.StatusInvalidInput, Message: "malformed"}

	if !r.Reject(bad, 3) {
		t.Fatal("first rejection not logged")
	}
	for i := 0; i < 5; i++ {
		c.add(time.Second)
		if r.Reject(bad, 3) {
			t.Fatalf("rejection %d within the interval was logged", i+2)
		}
	}
	c.add(5 * time.Second)
	if !r.Reject(errors.New("other"), 1) {
		t.Fatal("rejection after the interval not logged")
	}
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2", len(entries))
	}
	if entries[0].Level != zapcore.WarnLevel || entries[1].Level != zapcore.ErrorLevel {
		t.Errorf("levels %v, %v", entries[0].Level, entries[1].Level)
	}
	if want := "servicemap engine rejected a trace batch; the batch was dropped"; entries[0].Message != want {
		t.Errorf("message %q, want %q", entries[0].Message, want)
	}
	checkFields(t, entries[0], map[string]any{
		"error": "servicemap consume: malformed", "spans_in_batch": int64(3), "rejected_since_last_message": int64(1),
		"log_interval": 10 * time.Second})
	if want := "servicemap engine failed to take a trace batch; the batch was dropped"; entries[1].Message != want {
		t.Errorf("message %q, want %q", entries[1].Message, want)
	}
	checkFields(t, entries[1], map[string]any{
		"error": "other", "spans_in_batch": int64(1), "rejected_since_last_message": int64(6),
		"log_interval": 10 * time.Second})
}

// fakeStats is a statistics source the test rewrites, counting its reads.
type fakeStats struct {
	values map[string]float64
	err    error
	reads  int
}

func (f *fakeStats) read(time.Time) (map[string]float64, error) {
	f.reads++
	return f.values, f.err
}

func TestOverflowLogIsRateLimited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	src := &fakeStats{values: map[string]float64{"series_refused": 0, "values_truncated": 0, "spans_dropped": 5,
		"overflow_graph_nodes": 0, "overflow_graph_edges": 0, "overflow_interner": 0, "overflow_unpaired_series": 0}}
	c := newClock()
	t0 := c.t
	at := func(d time.Duration) { c.t = t0.Add(d) }
	o := NewOverflowLog(zap.New(core), 10*time.Second, c.now, src.read)
	const message = "servicemap engine caps overflowed: input beyond them was refused, folded or truncated; " +
		"each field counts what one cap turned away since the last message"

	// Nothing overflowed: no message (spans_dropped is not a cap).
	if o.Check() || logs.Len() != 0 {
		t.Fatalf("logged with no overflow: %v", logs.All())
	}

	src.values = map[string]float64{"series_refused": 3, "values_truncated": 0, "spans_dropped": 9,
		"overflow_graph_nodes": 0, "overflow_graph_edges": 12, "overflow_interner": 0, "overflow_unpaired_series": 0}
	at(time.Second)
	if !o.Check() {
		t.Fatal("first overflow not logged")
	}
	checkEntry(t, logs.All()[0], message, map[string]any{
		"caps": []any{"overflow_graph_edges", "series_refused"}, "overflow_graph_edges": int64(12), "series_refused": int64(3),
		"log_interval": 10 * time.Second})

	// Within the interval: neither logged nor read.
	src.values = map[string]float64{"series_refused": 4, "values_truncated": 5, "spans_dropped": 9,
		"overflow_graph_nodes": 0, "overflow_graph_edges": 20, "overflow_interner": 0, "overflow_unpaired_series": 0}
	reads := src.reads
	at(2 * time.Second)
	first := o.Check()
	at(10 * time.Second)
	if first || o.Check() || logs.Len() != 1 || src.reads != reads {
		t.Fatalf("within the interval: %d messages, %d reads", logs.Len(), src.reads-reads)
	}

	// Once it has passed: everything that grew since the last message.
	at(11 * time.Second)
	if !o.Check() {
		t.Fatal("overflow after the interval not logged")
	}
	checkEntry(t, logs.All()[1], message, map[string]any{
		"caps":                 []any{"overflow_graph_edges", "series_refused", "values_truncated"},
		"overflow_graph_edges": int64(8), "series_refused": int64(1), "values_truncated": int64(5),
		"log_interval": 10 * time.Second})

	// A check that finds nothing new writes nothing and starts no interval,
	// so the next growth is logged at once.
	at(30 * time.Second)
	if o.Check() || logs.Len() != 2 {
		t.Fatalf("logged without growth: %v", logs.All()[2:])
	}
	src.values = map[string]float64{"series_refused": 4, "values_truncated": 5, "spans_dropped": 9,
		"overflow_graph_nodes": 0, "overflow_graph_edges": 20, "overflow_interner": 2, "overflow_unpaired_series": 0}
	at(31 * time.Second)
	if !o.Check() {
		t.Fatal("growth after a quiet check not logged")
	}
	checkEntry(t, logs.All()[2], message, map[string]any{
		"caps": []any{"overflow_interner"}, "overflow_interner": int64(2), "log_interval": 10 * time.Second})

	// An unreadable report is not an overflow.
	src.err = errors.New("engine closed")
	at(time.Minute)
	if o.Check() || logs.Len() != 3 {
		t.Fatalf("logged on a failed read: %v", logs.All()[3:])
	}
}

// checkEntry compares a warning's message and its fields, all of them.
func checkEntry(t *testing.T, e observer.LoggedEntry, message string, fields map[string]any) {
	t.Helper()
	if e.Level != zapcore.WarnLevel || e.Message != message {
		t.Errorf("entry %v %q, want warn %q", e.Level, e.Message, message)
	}
	checkFields(t, e, fields)
}

// checkFields compares an entry's fields, all of them.
func checkFields(t *testing.T, e observer.LoggedEntry, fields map[string]any) {
	t.Helper()
	got := e.ContextMap()
	if len(got) != len(fields) {
		t.Errorf("fields %v, want %v", got, fields)
	}
	for k, v := range fields {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) || fmt.Sprintf("%T", got[k]) != fmt.Sprintf("%T", v) {
			t.Errorf("field %s = %#v, want %#v", k, got[k], v)
		}
	}
}
