package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/servicegraphconnector"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// settings is one configuration, expressed once and given to both peers.
type settings struct {
	dimensions     []string
	buckets        []time.Duration // nil: each side's default (the same list)
	peerAttributes []string
	databaseNames  []string
	virtualLabel   bool
	ttl            time.Duration
	maxItems       int // 0: so many that no span is ever refused
	// expoMaxSize, when not 0, is exponential_histogram_max_size: contrib's
	// exponential latency histograms instead of buckets.
	expoMaxSize int32
}

// storeCap is the store size both peers get.
func (s settings) storeCap() int {
	if s.maxItems > 0 {
		return s.maxItems
	}
	// v0.159.0 refuses new half-edges when full without first evicting
	// expired ones; the engine first evicts an expired head (as later contrib
	// releases do). The scenarios expire everything before that could matter,
	// and with this cap nothing is ever refused.
	return 10_000_000
}

// peerAttributes and databaseNameAttributes are given to both peers
// explicitly. The contrib release we compare with (v0.159.0) still has the
// shorter default lists of its time (peer.service, db.name, db.system and
// db.name only); our contrib preset has the current ones, which are these.
var (
	peerAttributes         = []string{"peer.service", "db.name", "db.namespace", "db.system", "db.system.name"}
	databaseNameAttributes = []string{"db.name", "db.namespace"}
)

// contribPeer drives contrib's connector, created through its public factory
// exactly as a collector creates it.
type contribPeer struct {
	conn  connector.Traces
	sink  *consumertest.MetricsSink
	ttl   time.Duration
	store reflect.Value // *store.Store inside the connector

	lastConsume time.Time
	seen        int // sink entries already looked at
	last        pmetric.Metrics
}

func newContribPeer(t testing.TB, s settings) *contribPeer {
	t.Helper()
	f := servicegraphconnector.NewFactory()
	cfg := f.CreateDefaultConfig().(*servicegraphconnector.Config)
	cfg.Dimensions = s.dimensions
	cfg.LatencyHistogramBuckets = s.buckets
	cfg.ExponentialHistogramMaxSize = s.expoMaxSize
	cfg.VirtualNodePeerAttributes = s.peerAttributes
	cfg.DatabaseNameAttributes = s.databaseNames
	cfg.VirtualNodeExtraLabel = s.virtualLabel
	cfg.Store.TTL = s.ttl
	cfg.Store.MaxItems = s.storeCap()
	// Expiry runs only when the test asks for it (see expire), and metrics
	// are flushed after every ConsumeTraces call.
	cfg.StoreExpirationLoop = 24 * time.Hour
	cfg.CacheLoop = 24 * time.Hour
	zero := time.Duration(0)
	cfg.MetricsFlushInterval = &zero
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	sink := new(consumertest.MetricsSink)
	conn, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Shutdown(context.Background()) })
	return &contribPeer{conn: conn, sink: sink, ttl: s.ttl, store: contribStore(t, conn), last: pmetric.NewMetrics()}
}

// contribStore finds the connector's pairing store. contrib has no public way
// to say "expire now" (its own tests call store.Expire() from inside the
// package), and waiting for its expiry ticker would make the test depend on
// timing. The store's Expire and Len methods are exported; only the field
// holding the store is not, so it is read through reflection. If contrib
// renames the field or the methods, this fails loudly rather than silently.
func contribStore(t testing.TB, conn connector.Traces) reflect.Value {
	t.Helper()
	v := reflect.ValueOf(conn)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		t.Fatalf("contrib connector is a %T, not a pointer to a struct", conn)
	}
	f := v.Elem().FieldByName("store")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		t.Fatalf("contrib connector %T has no started store field", conn)
	}
	store := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
	for _, m := range []string{"Expire", "Len"} {
		if !store.MethodByName(m).IsValid() {
			t.Fatalf("contrib store %s has no %s method", store.Type(), m)
		}
	}
	return store
}

func (c *contribPeer) consume(t testing.TB, td ptrace.Traces) {
	t.Helper()
	if err := c.conn.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	c.lastConsume = time.Now()
	c.collect()
}

// collect takes the newest flushed metrics. With a flush interval of 0 the
// connector flushes synchronously inside ConsumeTraces, and skips the flush
// when it has no series, so no new entry means no metrics.
func (c *contribPeer) collect() {
	all := c.sink.AllMetrics()
	if len(all) > c.seen {
		c.last = all[len(all)-1]
		c.seen = len(all)
	} else {
		c.last = pmetric.NewMetrics()
	}
}

// expireAll expires every waiting half-edge. Each edge's deadline was fixed
// when it was created, at the latest during the last ConsumeTraces call, so
// once ttl has passed since that call returned, every deadline has passed:
// the wait below ends on that condition, which is certain to become true,
// and the store must then be empty.
func (c *contribPeer) expireAll(t testing.TB) {
	t.Helper()
	deadline := c.lastConsume.Add(c.ttl)
	for !time.Now().After(deadline) {
		time.Sleep(time.Until(deadline) + time.Microsecond)
	}
	c.store.MethodByName("Expire").Call(nil)
	if n := c.waiting(); n != 0 {
		t.Fatalf("contrib store still holds %d half-edges after expiry", n)
	}
	// An empty batch makes the connector flush what expiry produced.
	c.consume(t, ptrace.NewTraces())
}

func (c *contribPeer) waiting() int {
	return int(c.store.MethodByName("Len").Call(nil)[0].Int())
}

// ourPeer drives the servicemap engine through the cgo wrapper, on a clock
// the test controls.
type ourPeer struct {
	eng  *engine.Engine
	ttl  time.Duration
	now  time.Time
	last pmetric.Metrics
	m    ptrace.ProtoMarshaler
	u    pmetric.ProtoUnmarshaler
}

// engineConfig is the engine configuration equivalent to settings: the
// contrib preset, plus the same explicit options contrib gets.
func engineConfig(s settings, extra map[string]any) []byte {
	cfg := map[string]any{
		"compat":                       "contrib",
		"dimensions":                   nonNil(s.dimensions),
		"virtual_node_peer_attributes": nonNil(s.peerAttributes),
		"database_name_attributes":     nonNil(s.databaseNames),
		"virtual_node_extra_label":     s.virtualLabel,
		"store_ttl":                    s.ttl.String(),
		"store_max_items":              s.storeCap(),
	}
	if s.buckets != nil {
		b := make([]float64, len(s.buckets))
		for i, d := range s.buckets {
			b[i] = d.Seconds()
		}
		cfg["latency_histogram_buckets"] = b
	}
	if s.expoMaxSize != 0 {
		cfg["exponential_histogram_max_size"] = s.expoMaxSize
	}
	for k, v := range extra {
		cfg[k] = v
	}
	doc, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return doc
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func newOurPeer(t testing.TB, config []byte, ttl time.Duration) *ourPeer {
	t.Helper()
	eng, err := engine.New(config)
	if err != nil {
		t.Fatalf("engine config %s: %v", config, err)
	}
	t.Cleanup(eng.Close)
	return &ourPeer{eng: eng, ttl: ttl, now: time.Unix(1_800_000_000, 0), last: pmetric.NewMetrics()}
}

func (o *ourPeer) consume(t testing.TB, td ptrace.Traces) {
	t.Helper()
	b, err := o.m.MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	o.now = o.now.Add(time.Microsecond)
	if err := o.eng.Consume(b, o.now); err != nil {
		t.Fatal(err)
	}
	o.render(t)
}

// expireAll expires at the first instant every waiting deadline has passed,
// as contribPeer.expireAll does on the wall clock.
func (o *ourPeer) expireAll(t testing.TB) {
	t.Helper()
	o.now = o.now.Add(o.ttl + time.Millisecond)
	if err := o.eng.Expire(o.now); err != nil {
		t.Fatal(err)
	}
	if n := o.stats(t).Waiting; n != 0 {
		t.Fatalf("engine still holds %d half-edges after expiry", n)
	}
	o.render(t)
}

func (o *ourPeer) render(t testing.TB) {
	t.Helper()
	raw, err := o.eng.Render(engine.FormatOTLPMetrics, o.now)
	if err != nil {
		t.Fatal(err)
	}
	md, err := o.u.UnmarshalMetrics(raw)
	if err != nil {
		t.Fatalf("engine wrote undecodable OTLP metrics: %v", err)
	}
	o.last = md
}

// engineStats is the part of the engine's self-report the tests read.
type engineStats struct {
	Waiting     int64 `json:"waiting"`
	StoreBytes  int64 `json:"store_bytes"`
	EdgesNew    int64 `json:"edges_new"`
	SpansDrop   int64 `json:"spans_dropped"`
	SpansRecv   int64 `json:"spans_received"`
	EdgesExpire int64 `json:"edges_expired"`
	// Requests dropped because a filter policy left out one side.
	EdgesFiltered int64 `json:"edges_dropped_by_filter"`
}

func (o *ourPeer) stats(t testing.TB) engineStats {
	t.Helper()
	raw, err := o.eng.Render(engine.FormatStatsJSON, o.now)
	if err != nil {
		t.Fatal(err)
	}
	var s engineStats
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("stats %s: %v", raw, err)
	}
	return s
}

// runBoth plays a scenario on both peers, comparing their metrics after every
// step. It returns the differences of the first step that has any, prefixed
// with that step, and contrib's metrics at the end.
func runBoth(t testing.TB, s settings, ourConfig []byte, steps []step) ([]string, pmetric.Metrics) {
	t.Helper()
	c := newContribPeer(t, s)
	o := newOurPeer(t, ourConfig, s.ttl)
	for i, st := range steps {
		if st.expire {
			c.expireAll(t)
			o.expireAll(t)
		} else {
			c.consume(t, st.traces)
			o.consume(t, st.traces)
		}
		if d := diffMetrics(c.last, o.last); len(d) > 0 {
			return append([]string{fmt.Sprintf("after step %d of %d (%s):", i+1, len(steps), st)}, d...), c.last
		}
	}
	return nil, c.last
}
