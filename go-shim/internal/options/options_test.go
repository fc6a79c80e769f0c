package options

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/confmap"
	"go.yaml.in/yaml/v3"
)

func ptr[T any](v T) *T { return &v }

func decode(t *testing.T, o *Options) map[string]any {
	t.Helper()
	doc, err := o.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUnsetOptionsAreNotSent(t *testing.T) {
	for _, compat := range []string{CompatTempo, CompatContrib} {
		o := Defaults(compat)
		doc, err := o.EngineJSON()
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"compat":"` + compat + `"}`; string(doc) != want {
			t.Errorf("defaults of %s give %s, want %s", compat, doc, want)
		}
		if err := o.Check(); err != nil {
			t.Errorf("defaults of %s: %v", compat, err)
		}
	}
}

func TestEverySetOptionIsSent(t *testing.T) {
	o := Defaults(CompatContrib)
	o.Dimensions = []string{"http.method"}
	o.LatencyHistogramBuckets = []time.Duration{2 * time.Millisecond, 100 * time.Millisecond, 1500 * time.Millisecond}
	o.Store = StoreConfig{TTL: ptr(3 * time.Second), MaxItems: ptr(500)}
	o.VirtualNodePeerAttributes = []string{}
	o.VirtualNodeExtraLabel = ptr(true)
	o.DatabaseNameAttributes = []string{"db.namespace"}
	o.MetricsTimestampOffset = ptr(5 * time.Second)
	o.EnableClientServerPrefix = ptr(false)
	o.PeerAttributesOnServerSpans = ptr(true)
	o.VirtualClientFromPeer = ptr(true)
	o.VirtualServerFallback = ptr("")
	o.DatabaseNaming = ptr("peer_first")
	o.SpanMultiplierKey = ptr("sampling.ratio")
	o.EnableMessagingSystemLatencyHistogram = ptr(true)
	o.EnableConnectionInfo = ptr(true)
	o.FailedLabel = ptr(false)
	o.ExpiredIncludesVirtual = ptr(false)
	o.MessagingNeverVirtual = ptr(false)
	o.SpanLinks = ptr(false)
	o.SeriesIdleTimeout = ptr(time.Hour)
	o.MaxSeries = ptr(10)
	o.MaxLabelValueLength = ptr(64)
	o.Shards = ptr(4)
	o.InitialZero = ptr(false)
	o.InitialZeroHold = ptr(15 * time.Second)
	o.MaxBatchBytes = ptr(1 << 20)
	o.MaxUnpairedSeries = ptr(20)
	o.Exemplars = ptr(false)
	o.TraceIDLabelName = ptr("trace_id")
	o.MaxGraphNodes = ptr(30)
	o.MaxGraphEdges = ptr(40)
	o.MaxHistoryEntries = ptr(50)
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
	m := decode(t, &o)
	want := map[string]any{
		"compat":                                    "contrib",
		"dimensions":                                []any{"http.method"},
		"latency_histogram_buckets":                 []any{"2ms", "100ms", "1.5s"},
		"store_ttl":                                 "3s",
		"store_max_items":                           float64(500),
		"virtual_node_peer_attributes":              []any{},
		"virtual_node_extra_label":                  true,
		"database_name_attributes":                  []any{"db.namespace"},
		"metrics_timestamp_offset":                  "5s",
		"enable_client_server_prefix":               false,
		"peer_attributes_on_server_spans":           true,
		"virtual_client_from_peer":                  true,
		"virtual_server_fallback":                   "",
		"database_naming":                           "peer_first",
		"span_multiplier_key":                       "sampling.ratio",
		"enable_messaging_system_latency_histogram": true,
		"enable_connection_info":                    true,
		"failed_label":                              false,
		"expired_includes_virtual":                  false,
		"messaging_never_virtual":                   false,
		"span_links":                                false,
		"series_idle_timeout":                       "1h0m0s",
		"max_series":                                float64(10),
		"max_label_value_length":                    float64(64),
		"shards":                                    float64(4),
		"initial_zero":                              false,
		"initial_zero_hold":                         "15s",
		"max_batch_bytes":                           float64(1 << 20),
		"max_unpaired_series":                       float64(20),
		"exemplars":                                 false,
		"trace_id_label_name":                       "trace_id",
		"max_graph_nodes":                           float64(30),
		"max_graph_edges":                           float64(40),
		"max_history_entries":                       float64(50),
	}
	if len(m) != len(want) {
		t.Errorf("sent %d keys, want %d: %v", len(m), len(want), m)
	}
	for k, v := range want {
		got, _ := json.Marshal(m[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("%s = %s, want %s", k, got, exp)
		}
	}
}

func TestCheckErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(o *Options)
		key  string
	}{
		{"compat", func(o *Options) { o.Compat = "jaeger" }, "`compat`"},
		{"empty compat", func(o *Options) { o.Compat = "" }, "`compat`"},
		{"ttl", func(o *Options) { o.Store.TTL = ptr(-time.Second) }, "`store.ttl`"},
		{"max items", func(o *Options) { o.Store.MaxItems = ptr(0) }, "`store.max_items`"},
		{"buckets order", func(o *Options) {
			o.LatencyHistogramBuckets = []time.Duration{time.Second, time.Millisecond}
		}, "`latency_histogram_buckets[1]`"},
		{"negative bucket", func(o *Options) { o.LatencyHistogramBuckets = []time.Duration{-time.Second} }, "`latency_histogram_buckets[0]`"},
		{"empty dimension", func(o *Options) { o.Dimensions = []string{"a", ""} }, "`dimensions[1]`"},
		{"database naming", func(o *Options) { o.DatabaseNaming = ptr("alphabetical") }, "`database_naming`"},
		{"shards", func(o *Options) { o.Shards = ptr(5000) }, "`shards`"},
		{"max series", func(o *Options) { o.MaxSeries = ptr(-1) }, "`max_series`"},
		{"max graph edges", func(o *Options) { o.MaxGraphEdges = ptr(-1) }, "`max_graph_edges`"},
		{"idle timeout", func(o *Options) { o.SeriesIdleTimeout = ptr(-time.Minute) }, "`series_idle_timeout`"},
		{"peer aliases", func(o *Options) {
			o.PeerAttributes = []string{"a"}
			o.VirtualNodePeerAttributes = []string{"b"}
		}, "virtual_node_peer_attributes"},
		{"label aliases", func(o *Options) {
			o.EnableVirtualNodeLabel = ptr(true)
			o.VirtualNodeExtraLabel = ptr(true)
		}, "virtual_node_extra_label"},
		{"expiration loop", func(o *Options) { o.StoreExpirationLoop = -time.Second }, "store_expiration_loop"},
		{"cache loop", func(o *Options) { o.CacheLoop = -time.Second }, "cache_loop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults(CompatTempo)
			tc.mod(&o)
			err := o.Check()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %s", err, tc.key)
			}
		})
	}
}

func TestExpirationLoop(t *testing.T) {
	o := Defaults(CompatTempo)
	if o.ExpirationLoop() != DefaultStoreExpirationLoop {
		t.Errorf("default loop %s", o.ExpirationLoop())
	}
	o.StoreExpirationLoop = 0
	if o.ExpirationLoop() != DefaultStoreExpirationLoop {
		t.Errorf("zero loop gives %s, want the default", o.ExpirationLoop())
	}
	o.StoreExpirationLoop = time.Second
	if o.ExpirationLoop() != time.Second {
		t.Errorf("loop %s", o.ExpirationLoop())
	}
}

func TestNewEngine(t *testing.T) {
	o := Defaults(CompatContrib)
	e, err := o.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	o.Store.MaxItems = ptr(0)
	if _, err := o.NewEngine(); err == nil || !strings.Contains(err.Error(), "`store.max_items`") {
		t.Fatalf("NewEngine with bad max_items: %v", err)
	}
}

func TestCatalogFileIsReadAsYAMLOrJSON(t *testing.T) {
	dir := t.TempDir()
	yamlPath := filepath.Join(dir, "catalog.yaml")
	yamlDoc := "services:\n  checkout:\n    owner: team-shop\n    slo:\n      latency: {percentile: 0.9, threshold: 300ms}\n"
	if err := os.WriteFile(yamlPath, []byte(yamlDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Defaults(CompatTempo)
	o.Catalog = yamlPath
	doc, err := o.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"catalog":{"services":{"checkout":{"owner":"team-shop","slo":{"latency":{"percentile":0.9,"threshold":"300ms"}}}}},"compat":"tempo"}`
	if string(doc) != want {
		t.Errorf("engine JSON\n got %s\nwant %s", doc, want)
	}
	if err := o.Check(); err != nil {
		t.Errorf("a valid catalog was rejected: %v", err)
	}

	badPath := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badPath, []byte(`{"services":{"checkout":{"slo":{"availability":7}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o.Catalog = badPath
	err = o.Check()
	if err == nil || !strings.Contains(err.Error(), "catalog.services.checkout.slo.availability") {
		t.Errorf("bad catalog: %v", err)
	}
	o.Catalog = filepath.Join(dir, "missing.yaml")
	if err := o.Check(); err == nil || !strings.Contains(err.Error(), "catalog: open") {
		t.Errorf("missing catalog file: %v", err)
	}
}

// Filter policies go from collector YAML to the engine as Tempo writes them,
// and a bad one is refused naming the element.
func TestFilterPoliciesFromYAML(t *testing.T) {
	const doc = `
filter_policies:
  - include:
      match_type: strict
      attributes:
        - key: resource.service.name
          value: checkout
        - key: span.http.status_code
          value: 200
  - exclude:
      match_type: regex
      attributes:
        - key: name
          value: "^GET /health"
`
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
		t.Fatal(err)
	}
	o := Defaults(CompatTempo)
	if err := confmap.NewFromStringMap(raw).Unmarshal(&o); err != nil {
		t.Fatal(err)
	}
	got, err := o.EngineJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"compat":"tempo","filter_policies":[` +
		`{"include":{"match_type":"strict","attributes":[{"key":"resource.service.name","value":"checkout"},{"key":"span.http.status_code","value":200}]}},` +
		`{"exclude":{"match_type":"regex","attributes":[{"key":"name","value":"^GET /health"}]}}]}`
	if string(got) != want {
		t.Errorf("engine JSON\n got %s\nwant %s", got, want)
	}
	if err := o.Check(); err != nil {
		t.Errorf("valid policies were refused: %v", err)
	}
	o.FilterPolicies[0].Include.MatchType = "exact"
	if err := o.Check(); err == nil || !strings.Contains(err.Error(), "`filter_policies[0].include.match_type`") {
		t.Errorf("a bad match_type: %v", err)
	}
}
