# servicemap: every build, test and demo step. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
GO ?= go
RUST_LIB := target/release/libservicemap.a

# Collector shim and distribution.
GO_SHIM := go-shim
TOOLS_BIN := $(CURDIR)/bin/tools
OCB_VERSION := v0.159.0
BUILDER := $(TOOLS_BIN)/builder-$(OCB_VERSION)
COLLECTOR := bin/otelcol-servicemap
DEMO_RATE ?= 20
DEMO_DURATION ?= 10m
# Go's build cache does not hash the Rust archive that cgo links, so a stale
# library could be reused after a Rust rebuild. A define carrying the
# archive's checksum changes the cache key of every cgo package instead.
CGO_ENV = CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -DSERVICEMAP_LIB_SHA256=$$(sha256sum $(CURDIR)/$(RUST_LIB) | cut -c1-16)"

.PHONY: help build rust collector test test-rust test-go test-e2e demo bench setup-test clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: rust collector ## Build the Rust library, the CLI and bin/otelcol-servicemap

rust: ## Build the Rust static library, shared library and CLI (release)
	$(CARGO) build --release --locked

test: test-rust test-go test-conformance test-e2e ## Run every test (what CI runs)

test-rust: rust ## Rust unit and integration tests, the C ABI test, the header check
	$(CARGO) test --release --locked

$(BUILDER):
	mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION)
	mv $(TOOLS_BIN)/builder $@

collector: rust $(BUILDER) ## Build bin/otelcol-servicemap with OCB (cgo; links the Rust static library)
	$(CGO_ENV) $(BUILDER) --config=builder-config.yaml
	mkdir -p bin
	cp $(GO_SHIM)/_build/otelcol-servicemap $(COLLECTOR)

test-go: rust ## go vet and go test -race for the collector shim
	cd $(GO_SHIM) && $(CGO_ENV) $(GO) vet ./...
	cd $(GO_SHIM) && $(CGO_ENV) $(GO) test -race ./...

# The demo: the collector with examples/processor.yaml and a realistic
# topology of demo traffic, bounded by DEMO_DURATION. While it runs, open
# http://localhost:9464/ for the live map. At the end it prints the request
# counters (a new series reads 0 for initial_zero_hold, 15s in the example).
demo: build ## Run the collector with live demo traffic: map on localhost:9464/, metrics on /metrics
	cd $(GO_SHIM) && $(GO) build -o ../bin/demotraffic ./cmd/demotraffic
	@set -e; \
	$(COLLECTOR) --config=examples/processor.yaml 2> bin/demo-collector.log & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true' EXIT; \
	for i in $$(seq 100); do curl -sf -o /dev/null http://localhost:9464/metrics && break; sleep 0.2; done; \
	echo; \
	echo "servicemap demo: sending traffic for $(DEMO_DURATION) (Ctrl-C stops)"; \
	echo "  live map:   http://localhost:9464/"; \
	echo "  metrics:    curl localhost:9464/metrics"; \
	echo "  impact:     curl 'localhost:9464/api/impact?service=postgres'"; \
	echo "  graphviz:   curl localhost:9464/graph.dot"; \
	echo "  collector log: bin/demo-collector.log"; \
	echo; \
	bin/demotraffic -rate $(DEMO_RATE) -duration $(DEMO_DURATION); \
	echo "waiting for unpaired spans to expire into virtual nodes (store.ttl 10s)..."; sleep 12; \
	curl -s http://localhost:9464/metrics | grep '^traces_service_graph_request_total'; \
	curl -s 'http://localhost:9464/api/impact?service=postgres'

# Python and end-to-end tests run from a virtual environment that
# setup-test makes (tests/e2e/setup.sh, which also installs Prometheus).
VENV := $(CURDIR)/.venv
PYTEST = $(VENV)/bin/python -m pytest

.PHONY: test-python

setup-test: ## Install the test tools: Prometheus and promtool (apt), .venv with tests/e2e/requirements.txt
	VENV=$(VENV) bash tests/e2e/setup.sh

test-python: rust setup-test ## Python ctypes tests against target/release/libservicemap.so
	$(PYTEST) tests/python

test-e2e: collector setup-test test-python ## The built collector fed by the OpenTelemetry SDK and scraped by Prometheus
	$(PYTEST) -v --durations=5 tests/e2e

clean:
	$(CARGO) clean
	rm -rf bin $(GO_SHIM)/_build

# Conformance against contrib's servicegraph connector (go-shim/conformance,
# its own Go module): the differential test, Tempo scenarios, and the
# side-by-side benchmarks recorded in BENCHMARKS.md.
CONFORMANCE := $(GO_SHIM)/conformance

.PHONY: test-conformance bench-conformance bench-collector

test-conformance: rust ## Differential test against contrib's servicegraph connector, Tempo scenarios
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) vet ./...
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) test -count=1 ./...

bench-conformance: rust ## Benchmarks against contrib's connector: CPU per span, memory per waiting span
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) test -run '^$$' -bench BenchmarkVsContrib -benchmem -count=1 .
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) test -run '^$$' -bench BenchmarkWaitingSpanMemory -benchtime=1x -count=1 .

bench-collector: rust ## Whole collector, contrib's connector vs servicemap: CPU seconds per million spans
	$(CGO_ENV) $(CONFORMANCE)/scripts/compare-collector.sh
