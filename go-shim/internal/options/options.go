// Package options holds the configuration that the servicemap processor,
// connector and receiver share (each embeds Options):
//
//   - the engine options, the live service map's and the service catalog's
//     among them, and their translation to the engine's JSON (EngineJSON
//     reads the catalog file in);
//   - store_expiration_loop, the period of the expiry loop that drives the
//     engine from Go, and cache_loop, accepted for contrib compatibility;
//   - Check and NewEngine, which hand that JSON to the engine, and
//     EngineError, which names collector keys in the engine's errors.
//
// metrics_flush_interval belongs to the components that push metrics
// (metricsloop.Flush).
package options

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/servicemap/servicemap/go-shim/internal/engine"
)

// Compatibility presets. They pick the engine defaults where Grafana Tempo
// and the collector-contrib servicegraph connector disagree.
const (
	CompatTempo   = "tempo"
	CompatContrib = "contrib"
)

// Default loop periods (the contrib connector's defaults).
const (
	DefaultStoreExpirationLoop = 2 * time.Second
	DefaultCacheLoop           = time.Minute
)

// StoreConfig is contrib's `store` block: how long a half-built edge waits for
// its other side, and how many may wait at once.
type StoreConfig struct {
	TTL      *time.Duration `mapstructure:"ttl"`
	MaxItems *int           `mapstructure:"max_items"`

	_ struct{}
}

// Options are the settings common to the processor and the connector.
//
// Every engine option is a pointer or a slice: nil means "not set", and an
// option that is not set is not sent to the engine, so the default of the
// chosen compat preset applies.
type Options struct {
	// Compat chooses the preset: "tempo" or "contrib".
	Compat string `mapstructure:"compat"`

	// Keys shared with the contrib servicegraph connector.

	// Dimensions are extra labels, read from resource attributes, then span attributes.
	Dimensions []string `mapstructure:"dimensions"`
	// LatencyHistogramBuckets are the latency histogram bounds. An empty list
	// means the preset's buckets (as in contrib).
	LatencyHistogramBuckets []time.Duration `mapstructure:"latency_histogram_buckets"`
	Store                   StoreConfig     `mapstructure:"store"`
	// VirtualNodePeerAttributes name an uninstrumented peer, in priority order.
	// An explicit empty list disables virtual servers named from attributes.
	VirtualNodePeerAttributes []string `mapstructure:"virtual_node_peer_attributes"`
	// VirtualNodeExtraLabel adds the virtual_node label.
	VirtualNodeExtraLabel  *bool    `mapstructure:"virtual_node_extra_label"`
	DatabaseNameAttributes []string `mapstructure:"database_name_attributes"`
	// MetricsTimestampOffset shifts data-point timestamps into the past.
	MetricsTimestampOffset *time.Duration `mapstructure:"metrics_timestamp_offset"`
	// StoreExpirationLoop is how often waiting half-edges are expired (and
	// idle series removed).
	StoreExpirationLoop time.Duration `mapstructure:"store_expiration_loop"`
	// CacheLoop is accepted for compatibility with contrib. The engine removes
	// idle series on every expiry pass (see series_idle_timeout), so it has no
	// separate effect.
	CacheLoop time.Duration `mapstructure:"cache_loop"`

	// Engine options beyond contrib's keys (see the engine's config reference).

	EnableClientServerPrefix              *bool          `mapstructure:"enable_client_server_prefix"`
	PeerAttributes                        []string       `mapstructure:"peer_attributes"`
	PeerAttributesOnServerSpans           *bool          `mapstructure:"peer_attributes_on_server_spans"`
	VirtualClientFromPeer                 *bool          `mapstructure:"virtual_client_from_peer"`
	VirtualServerFallback                 *string        `mapstructure:"virtual_server_fallback"`
	DatabaseNaming                        *string        `mapstructure:"database_naming"`
	SpanMultiplierKey                     *string        `mapstructure:"span_multiplier_key"`
	EnableMessagingSystemLatencyHistogram *bool          `mapstructure:"enable_messaging_system_latency_histogram"`
	EnableVirtualNodeLabel                *bool          `mapstructure:"enable_virtual_node_label"`
	EnableConnectionInfo                  *bool          `mapstructure:"enable_connection_info"`
	FailedLabel                           *bool          `mapstructure:"failed_label"`
	ExpiredIncludesVirtual                *bool          `mapstructure:"expired_includes_virtual"`
	MessagingNeverVirtual                 *bool          `mapstructure:"messaging_never_virtual"`
	SpanLinks                             *bool          `mapstructure:"span_links"`
	SeriesIdleTimeout                     *time.Duration `mapstructure:"series_idle_timeout"`
	MaxSeries                             *int           `mapstructure:"max_series"`
	MaxLabelValueLength                   *int           `mapstructure:"max_label_value_length"`
	Shards                                *int           `mapstructure:"shards"`
	InitialZero                           *bool          `mapstructure:"initial_zero"`
	InitialZeroHold                       *time.Duration `mapstructure:"initial_zero_hold"`
	MaxBatchBytes                         *int           `mapstructure:"max_batch_bytes"`
	MaxUnpairedSeries                     *int           `mapstructure:"max_unpaired_series"`
	Exemplars                             *bool          `mapstructure:"exemplars"`
	TraceIDLabelName                      *string        `mapstructure:"trace_id_label_name"`
	// Histograms is classic, native or both (Tempo's generate_native_histograms).
	Histograms                      *string        `mapstructure:"histograms"`
	NativeHistogramBucketFactor     *float64       `mapstructure:"native_histogram_bucket_factor"`
	NativeHistogramMaxBucketNumber  *int           `mapstructure:"native_histogram_max_bucket_number"`
	NativeHistogramMinResetDuration *time.Duration `mapstructure:"native_histogram_min_reset_duration"`
	// ExponentialHistogramMaxSize is contrib's: exponential histograms only.
	ExponentialHistogramMaxSize *int `mapstructure:"exponential_histogram_max_size"`
	// FilterPolicies choose the spans that take part, in Tempo's format.
	FilterPolicies []FilterPolicy `mapstructure:"filter_policies"`

	// The live service map.

	Graph            *bool          `mapstructure:"graph"`
	GraphWindow      *time.Duration `mapstructure:"graph_window"`
	GraphWindowSlots *int           `mapstructure:"graph_window_slots"`
	OwnerAttribute   *string        `mapstructure:"owner_attribute"`
	SnapshotInterval *time.Duration `mapstructure:"snapshot_interval"`
	HistoryLength    *int           `mapstructure:"history_length"`
	// Caps of the map: nodes, edges, and entries over all kept snapshots.
	MaxGraphNodes     *int `mapstructure:"max_graph_nodes"`
	MaxGraphEdges     *int `mapstructure:"max_graph_edges"`
	MaxHistoryEntries *int `mapstructure:"max_history_entries"`
	// Catalog is the path of a service catalog file (YAML or JSON): owners,
	// tiers and SLOs per service or per edge.
	Catalog string `mapstructure:"catalog"`
}

// FilterPolicy is one entry of filter_policies: a span must match every
// include, one attribute of every include_any, and no exclude.
type FilterPolicy struct {
	Include    *PolicyMatch `mapstructure:"include" json:"include,omitempty"`
	IncludeAny *PolicyMatch `mapstructure:"include_any" json:"include_any,omitempty"`
	Exclude    *PolicyMatch `mapstructure:"exclude" json:"exclude,omitempty"`

	_ struct{}
}

// PolicyMatch is one part of a policy: how values compare ("strict" or
// "regex") and the conditions.
type PolicyMatch struct {
	MatchType  string            `mapstructure:"match_type" json:"match_type"`
	Attributes []PolicyAttribute `mapstructure:"attributes" json:"attributes"`

	_ struct{}
}

// PolicyAttribute is one condition: a key (resource.<attribute>,
// span.<attribute>, name, status or kind) and the value it must have.
type PolicyAttribute struct {
	Key   string `mapstructure:"key" json:"key"`
	Value any    `mapstructure:"value" json:"value"`

	_ struct{}
}

// Defaults returns the options with nothing set except the preset and the loops.
func Defaults(compat string) Options {
	return Options{
		Compat:              compat,
		StoreExpirationLoop: DefaultStoreExpirationLoop,
		CacheLoop:           DefaultCacheLoop,
	}
}

// ExpirationLoop is the period of the expiry ticker.
func (o *Options) ExpirationLoop() time.Duration {
	if o.StoreExpirationLoop <= 0 {
		return DefaultStoreExpirationLoop
	}
	return o.StoreExpirationLoop
}

// Check checks what the engine cannot see (keys that mean the same engine
// option, the loops), then asks the engine itself to accept the rest. Every
// error names its key. (It is not called Validate so that the collector does
// not run it a second time on the embedded struct; each component's
// Config.Validate calls it.)
func (o *Options) Check() error {
	var errs []error
	if o.PeerAttributes != nil && o.VirtualNodePeerAttributes != nil {
		errs = append(errs, errors.New("peer_attributes and virtual_node_peer_attributes set the same option; set only one"))
	}
	if o.EnableVirtualNodeLabel != nil && o.VirtualNodeExtraLabel != nil {
		errs = append(errs, errors.New("enable_virtual_node_label and virtual_node_extra_label set the same option; set only one"))
	}
	if o.StoreExpirationLoop < 0 {
		errs = append(errs, fmt.Errorf("store_expiration_loop: must not be negative, got %s", o.StoreExpirationLoop))
	}
	if o.CacheLoop < 0 {
		errs = append(errs, fmt.Errorf("cache_loop: must not be negative, got %s", o.CacheLoop))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	doc, err := o.EngineJSON()
	if err != nil {
		return err
	}
	if err := engine.Check(doc); err != nil {
		return EngineError(err)
	}
	return nil
}

// EngineJSON is the engine configuration: compat plus every option that was set.
func (o *Options) EngineJSON() ([]byte, error) {
	m := map[string]any{"compat": o.Compat}
	putList := func(key string, v []string) {
		if v != nil {
			m[key] = v
		}
	}
	putBool := func(key string, v *bool) {
		if v != nil {
			m[key] = *v
		}
	}
	putString := func(key string, v *string) {
		if v != nil {
			m[key] = *v
		}
	}
	putInt := func(key string, v *int) {
		if v != nil {
			m[key] = *v
		}
	}
	putDuration := func(key string, v *time.Duration) {
		if v != nil {
			m[key] = durationValue(*v)
		}
	}

	putList("dimensions", o.Dimensions)
	if len(o.LatencyHistogramBuckets) > 0 {
		bounds := make([]any, len(o.LatencyHistogramBuckets))
		for i, d := range o.LatencyHistogramBuckets {
			bounds[i] = durationValue(d)
		}
		m["latency_histogram_buckets"] = bounds
	}
	putDuration("store_ttl", o.Store.TTL)
	putInt("store_max_items", o.Store.MaxItems)
	putList("virtual_node_peer_attributes", o.VirtualNodePeerAttributes)
	putList("peer_attributes", o.PeerAttributes)
	putBool("virtual_node_extra_label", o.VirtualNodeExtraLabel)
	putBool("enable_virtual_node_label", o.EnableVirtualNodeLabel)
	putList("database_name_attributes", o.DatabaseNameAttributes)
	putDuration("metrics_timestamp_offset", o.MetricsTimestampOffset)
	putBool("enable_client_server_prefix", o.EnableClientServerPrefix)
	putBool("peer_attributes_on_server_spans", o.PeerAttributesOnServerSpans)
	putBool("virtual_client_from_peer", o.VirtualClientFromPeer)
	putString("virtual_server_fallback", o.VirtualServerFallback)
	putString("database_naming", o.DatabaseNaming)
	putString("span_multiplier_key", o.SpanMultiplierKey)
	putBool("enable_messaging_system_latency_histogram", o.EnableMessagingSystemLatencyHistogram)
	putBool("enable_connection_info", o.EnableConnectionInfo)
	putBool("failed_label", o.FailedLabel)
	putBool("expired_includes_virtual", o.ExpiredIncludesVirtual)
	putBool("messaging_never_virtual", o.MessagingNeverVirtual)
	putBool("span_links", o.SpanLinks)
	putDuration("series_idle_timeout", o.SeriesIdleTimeout)
	putInt("max_series", o.MaxSeries)
	putInt("max_label_value_length", o.MaxLabelValueLength)
	putInt("shards", o.Shards)
	putBool("initial_zero", o.InitialZero)
	putDuration("initial_zero_hold", o.InitialZeroHold)
	putInt("max_batch_bytes", o.MaxBatchBytes)
	putInt("max_unpaired_series", o.MaxUnpairedSeries)
	putBool("exemplars", o.Exemplars)
	putString("trace_id_label_name", o.TraceIDLabelName)
	putString("histograms", o.Histograms)
	if o.NativeHistogramBucketFactor != nil {
		m["native_histogram_bucket_factor"] = *o.NativeHistogramBucketFactor
	}
	putInt("native_histogram_max_bucket_number", o.NativeHistogramMaxBucketNumber)
	putDuration("native_histogram_min_reset_duration", o.NativeHistogramMinResetDuration)
	putInt("exponential_histogram_max_size", o.ExponentialHistogramMaxSize)
	if o.FilterPolicies != nil {
		m["filter_policies"] = o.FilterPolicies
	}
	putBool("graph", o.Graph)
	putDuration("graph_window", o.GraphWindow)
	putInt("graph_window_slots", o.GraphWindowSlots)
	putString("owner_attribute", o.OwnerAttribute)
	putDuration("snapshot_interval", o.SnapshotInterval)
	putInt("history_length", o.HistoryLength)
	putInt("max_graph_nodes", o.MaxGraphNodes)
	putInt("max_graph_edges", o.MaxGraphEdges)
	putInt("max_history_entries", o.MaxHistoryEntries)
	if o.Catalog != "" {
		catalog, err := readCatalog(o.Catalog)
		if err != nil {
			return nil, err
		}
		m["catalog"] = catalog
	}
	return json.Marshal(m)
}

// readCatalog reads a catalog file; YAML is a superset of JSON, so one parser
// reads both.
func readCatalog(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", path, err)
	}
	return doc, nil
}

// NewEngine creates an engine from the options.
func (o *Options) NewEngine() (*engine.Engine, error) {
	doc, err := o.EngineJSON()
	if err != nil {
		return nil, err
	}
	e, err := engine.New(doc)
	if err != nil {
		return nil, EngineError(err)
	}
	return e, nil
}

// durationValue writes a duration the way the engine reads one: Go syntax
// ("1m30s"). A negative duration stays negative so the engine rejects it and
// names the key.
func durationValue(d time.Duration) string {
	return d.String()
}

// engineKeys maps the engine's names for nested collector keys back to YAML.
var engineKeys = strings.NewReplacer(
	"`store_ttl`", "`store.ttl`",
	"`store_max_items`", "`store.max_items`",
)

// EngineError rewrites an engine configuration error so that the key it
// names is the collector configuration key.
func EngineError(err error) error {
	var ee *engine.Error
	if errors.As(err, &ee) && ee.Status == engine.StatusInvalidConfig {
		return errors.New(engineKeys.Replace(ee.Message))
	}
	return err
}
