// Package conformance checks the servicemap engine against the collector
// contrib servicegraph connector: the same traces go to both and the metrics
// that come out must match, and the two are benchmarked side by side.
package conformance
