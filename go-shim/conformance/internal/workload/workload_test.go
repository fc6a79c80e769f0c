package workload

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestShape(t *testing.T) {
	batches := Batches(Options{BatchSpans: 1000, Batches: 20, Seed: 1})
	var m ptrace.ProtoMarshaler
	spans, bytes, resources := 0, 0, 0
	for _, td := range batches {
		b, err := m.MarshalTraces(td)
		if err != nil {
			t.Fatal(err)
		}
		spans += td.SpanCount()
		bytes += len(b)
		resources += td.ResourceSpans().Len()
	}
	perSpan := bytes / spans
	t.Logf("%d spans in %d batches, %d resources, %d bytes per span encoded", spans, len(batches), resources, perSpan)
	if perSpan < 300 || perSpan > 550 {
		t.Errorf("%d bytes per span; the benchmarks promise about 400", perSpan)
	}
	if spans < 19_000 || spans > 21_000 {
		t.Errorf("%d spans, want about 20000", spans)
	}
	lone := LoneClients(2500, 1000, 1)
	n := 0
	for _, td := range lone {
		n += td.SpanCount()
	}
	if len(lone) != 3 || n != 2500 {
		t.Errorf("LoneClients: %d batches, %d spans", len(lone), n)
	}
}
