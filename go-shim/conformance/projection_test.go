package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/servicemap/servicemap/go-shim/conformance/internal/workload"
	"github.com/servicemap/servicemap/go-shim/internal/engine"
	"github.com/servicemap/servicemap/go-shim/internal/projection"
)

// formatGraphJSON is SM_FORMAT_GRAPH_JSON of the C header: the live service
// map, which reads more attributes than the metrics do.
const formatGraphJSON = engine.Format(4)

// TestProjectionMatchesFullEncoding feeds the differential scenarios and the
// benchmark workload to two engines, one given each batch encoded in full
// (projection.Full), the other given what the connector and processor hand
// it (projection.ForEngine: only what the engine says it reads), and
// requires the same metrics, service map and self-report from both after
// every step.
func TestProjectionMatchesFullEncoding(t *testing.T) {
	type scenario struct {
		name  string
		s     settings
		steps []step
		extra map[string]any
	}
	var scenarios []scenario
	for seed := uint64(1); seed <= uint64(differentialSeeds(t)); seed++ {
		s := seedSettings(seed)
		bounds := s.buckets
		if bounds == nil {
			bounds = contribDefaultBuckets
		}
		scenarios = append(scenarios, scenario{fmt.Sprintf("seed=%d", seed), s, newGenerator(seed, bounds).scenario(60), nil})
	}
	var wl []step
	for _, td := range workload.Batches(workload.Options{BatchSpans: 500, Batches: 12, Seed: 5}) {
		wl = append(wl, step{traces: td})
	}
	scenarios = append(scenarios, scenario{"workload", benchSettings(), append(wl, step{expire: true}), nil})
	// Filter policies read span names and attributes the projection
	// otherwise leaves out.
	filtered := []any{
		map[string]any{"exclude": map[string]any{"match_type": "regex", "attributes": []any{
			map[string]any{"key": "name", "value": "^(GET|SELECT) "},
		}}},
		map[string]any{"exclude": map[string]any{"match_type": "strict", "attributes": []any{
			map[string]any{"key": "resource.service.name", "value": workload.ServiceName(3)},
		}}},
	}
	scenarios = append(scenarios, scenario{"workload/filtered", benchSettings(), append(wl, step{expire: true}),
		map[string]any{"filter_policies": filtered}})

	for n, sc := range scenarios {
		// Every other scenario runs without the live service map, which
		// needs fewer attributes.
		graph := n%2 == 0
		t.Run(fmt.Sprintf("%s/graph=%v", sc.name, graph), func(t *testing.T) {
			extra := map[string]any{"graph": graph}
			for k, v := range sc.extra {
				extra[k] = v
			}
			config := engineConfig(sc.s, extra)
			full := newOurPeer(t, config, sc.s.ttl)
			proj := newOurPeer(t, config, sc.s.ttl)
			encode, err := projection.ForEngine(proj.eng)
			if err != nil {
				t.Fatal(err)
			}
			var buf []byte
			for i, st := range sc.steps {
				if st.expire {
					full.expireAll(t)
					proj.expireAll(t)
				} else {
					raw, err := projection.Full(nil, st.traces)
					if err != nil {
						t.Fatal(err)
					}
					small, err := encode(buf[:0], st.traces)
					if err != nil {
						t.Fatal(err)
					}
					buf = small
					if len(small) >= len(raw) && st.traces.SpanCount() > 0 {
						t.Errorf("step %d: projected %d bytes, full %d", i+1, len(small), len(raw))
					}
					full.now = full.now.Add(time.Microsecond)
					proj.now = full.now
					if err := full.eng.Consume(raw, full.now); err != nil {
						t.Fatal(err)
					}
					if err := proj.eng.Consume(small, proj.now); err != nil {
						t.Fatalf("step %d: the engine rejects the projected batch: %v", i+1, err)
					}
					full.render(t)
					proj.render(t)
				}
				if d := diffMetrics(full.last, proj.last); len(d) > 0 {
					t.Fatalf("step %d: metrics differ (full vs projected):\n%s", i+1, strings.Join(d, "\n"))
				}
				formats := []engine.Format{engine.FormatStatsJSON}
				if graph {
					formats = append(formats, formatGraphJSON)
				}
				for _, f := range formats {
					a, err1 := full.eng.Render(f, full.now)
					b, err2 := proj.eng.Render(f, proj.now)
					if err1 != nil || err2 != nil {
						t.Fatal(err1, err2)
					}
					if f == engine.FormatStatsJSON {
						// store_bytes counts allocated capacity, which may
						// grow differently; everything else must match.
						a, b = withoutStoreBytes(t, a), withoutStoreBytes(t, b)
					}
					if !bytes.Equal(a, b) {
						t.Fatalf("step %d: %s differs (full vs projected):\n%s\n%s", i+1, f, a, b)
					}
				}
			}
			if sc.extra["filter_policies"] != nil {
				stats, err := full.eng.Render(engine.FormatStatsJSON, full.now)
				if err != nil {
					t.Fatal(err)
				}
				var m struct {
					SpansFiltered        float64 `json:"spans_filtered"`
					EdgesDroppedByFilter float64 `json:"edges_dropped_by_filter"`
				}
				if err := json.Unmarshal(stats, &m); err != nil {
					t.Fatal(err)
				}
				if m.SpansFiltered == 0 || m.EdgesDroppedByFilter == 0 {
					t.Fatalf("the policies filtered nothing: %s", stats)
				}
			}
		})
	}
}

func withoutStoreBytes(t *testing.T, raw []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "store_bytes")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
