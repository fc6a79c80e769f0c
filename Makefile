# servicemap: every build, test and demo step. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
GO ?= go
RUST_LIB := target/release/libservicemap.a

# Collector shim and distribution.
GO_SHIM := go-shim
TOOLS_BIN := $(CURDIR)/bin/tools
# The collector release the distribution and the shim are pinned at (core
# stable modules v1.67.0): see builder-config.yaml for why this one.
OCB_VERSION := v0.161.0
BUILDER := $(TOOLS_BIN)/builder-$(OCB_VERSION)
COLLECTOR := bin/otelcol-servicemap
DEMO_RATE ?= 20
DEMO_DURATION ?= 10m
# payment runs a new version from this share of DEMO_DURATION on (a minute
# into the 10-minute demo), so the map shows a deploy.
DEMO_ROLLOUT_AT ?= 0.1
# Go's build cache does not hash the Rust archive that cgo links, so a stale
# library could be linked after a Rust rebuild. A define carrying the
# archive's checksum, which go-shim/internal/engine keeps in its object,
# changes that package's content, and so every test and binary linking it.
CGO_ENV = CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -DSERVICEMAP_LIB_SHA256=$$(sha256sum $(CURDIR)/$(RUST_LIB) | cut -c1-16)"

.PHONY: help build rust header options collector demotraffic test lint lint-rust test-rust test-go test-go-latest test-e2e demo bench setup-test clean

help:
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: rust collector ## Build the Rust library, the CLI and bin/otelcol-servicemap

# The CLI needs the `cli` feature (OTLP/JSON); the libraries are built
# without it, last, so target/release/libservicemap.{a,so} hold only what the
# collector path uses.
rust: ## Build the CLI (target/release/servicemap), then the static and shared libraries (release)
	$(CARGO) build --release --locked --features cli --bin servicemap
	$(CARGO) build --release --locked --lib

options: ## Regenerate the README's options table and go-shim/internal/options/schema.json from src/config/options/
	SERVICEMAP_BLESS_OPTIONS=1 $(CARGO) test --release --locked --test options

header: ## Regenerate include/servicemap.h from the sources (the header test fails until it matches)
	SERVICEMAP_BLESS_HEADER=1 $(CARGO) test --release --locked --test header

test: lint test-rust test-go test-conformance test-e2e ## Run every test and lint (what CI runs)

lint: lint-rust lint-go ## Formatting and lints, Rust and Go

lint-rust: ## cargo fmt --check and cargo clippy -D warnings over every target
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --features cli --all-targets -- -D warnings

test-rust: rust ## Rust unit and integration tests, the C ABI test, the header check
	$(CARGO) test --release --locked --features cli

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

# Lints for the collector shim: gofmt (every Go file under go-shim, the
# conformance module's too, but not OCB's _build output), go vet, and
# staticcheck at a pinned release (2026.2.2, which needs the Go 1.26 that
# go.mod asks for), installed into bin/tools.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(TOOLS_BIN)/staticcheck-$(STATICCHECK_VERSION)

$(STATICCHECK):
	mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS_BIN)/staticcheck $@

.PHONY: lint-go

lint-go: rust $(STATICCHECK) ## gofmt check, go vet and staticcheck for the collector shim
	@unformatted=$$(cd $(GO_SHIM) && find . -path ./_build -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files under $(GO_SHIM) need gofmt -w:" >&2; echo "$$unformatted" >&2; exit 1; fi
	cd $(GO_SHIM) && $(CGO_ENV) $(GO) vet ./...
	cd $(GO_SHIM) && $(CGO_ENV) $(STATICCHECK) ./...

# A user's OCB build takes the highest version of each module that any module
# asks for, so the shim must also build and pass its tests against the newest
# core collector release. This copies go.mod and go.sum to a temporary
# directory, moves every go.opentelemetry.io/collector module the shim requires
# directly to @latest there (GOFLAGS=-modfile, so the committed go.mod is
# untouched), prints the versions it got, and runs go vet and go test -race.
test-go-latest: rust ## The shim's vet and race tests against the newest core collector modules (committed go.mod untouched)
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cp $(GO_SHIM)/go.mod $(GO_SHIM)/go.sum "$$tmp/"; \
	cd $(GO_SHIM); \
	core=$$($(GO) list -m -f '{{if and (not .Main) (not .Indirect)}}{{.Path}}@latest{{end}}' all | grep '^go.opentelemetry.io/collector/'); \
	export GOFLAGS="-modfile=$$tmp/go.mod $$GOFLAGS"; \
	$(GO) get $$core; \
	$(GO) mod tidy; \
	echo "test-go-latest: the shim against:"; \
	$(GO) list -m go.opentelemetry.io/collector/component go.opentelemetry.io/collector/processor/processorhelper \
	  go.opentelemetry.io/collector/connector go.opentelemetry.io/collector/config/confighttp go.opentelemetry.io/collector/pdata; \
	$(CGO_ENV) $(GO) vet ./...; \
	$(CGO_ENV) $(GO) test -race ./...

# The demo: the collector with examples/processor.yaml and a realistic
# topology of demo traffic for DEMO_DURATION (10 minutes; DEMO_DURATION=30s
# for a short look). Its ports come from DEMO_OTLP_GRPC, DEMO_OTLP_HTTP and
# DEMO_HTTP (4317, 4318, 9464), e.g. `make demo DEMO_HTTP=19464` beside
# another collector. While it runs, open http://localhost:$(DEMO_HTTP)/ for the
# live map. It waits for its own collector to say it is ready, and fails with
# the log's last lines if that collector exits or never gets there. At the end
# it prints the request counters (a new series reads 0 for
# initial_zero_hold, 15s in the example).
DEMO_OTLP_GRPC ?= 4317
DEMO_OTLP_HTTP ?= 4318
DEMO_HTTP ?= 9464
DEMO_LOG := bin/demo-collector.log
DEMO_URL := http://localhost:$(DEMO_HTTP)

demotraffic: ## Build bin/demotraffic, the demo's traffic generator (go-shim/cmd/demotraffic)
	cd $(GO_SHIM) && $(GO) build -o ../bin/demotraffic ./cmd/demotraffic

demo: build demotraffic ## Run the collector with live demo traffic: map on localhost:$(DEMO_HTTP)/, metrics on /metrics
	@set -e; \
	SERVICEMAP_OTLP_GRPC_ENDPOINT=localhost:$(DEMO_OTLP_GRPC) SERVICEMAP_OTLP_HTTP_ENDPOINT=localhost:$(DEMO_OTLP_HTTP) \
	SERVICEMAP_HTTP_ENDPOINT=localhost:$(DEMO_HTTP) \
	$(COLLECTOR) --config=examples/processor.yaml 2> $(DEMO_LOG) & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null || true' EXIT; \
	for i in $$(seq 300); do \
	  if ! kill -0 $$pid 2>/dev/null; then \
	    echo "demo: the collector exited before it was ready; the end of $(DEMO_LOG):" >&2; tail -n 15 $(DEMO_LOG) >&2; exit 1; \
	  fi; \
	  grep -q "Everything is ready" $(DEMO_LOG) && break; \
	  if [ $$i = 300 ]; then echo "demo: the collector was not ready after 60 s; the end of $(DEMO_LOG):" >&2; tail -n 15 $(DEMO_LOG) >&2; exit 1; fi; \
	  sleep 0.2; \
	done; \
	curl -sf -o /dev/null $(DEMO_URL)/metrics || { echo "demo: $(DEMO_URL)/metrics does not answer" >&2; exit 1; }; \
	echo; \
	echo "servicemap demo: sending traffic for $(DEMO_DURATION) (Ctrl-C stops)"; \
	echo "  live map:   $(DEMO_URL)/"; \
	echo "  metrics:    curl $(DEMO_URL)/metrics"; \
	echo "  impact:     curl '$(DEMO_URL)/api/impact?service=postgres'"; \
	echo "  graphviz:   curl $(DEMO_URL)/graph.dot"; \
	echo "  collector log: $(DEMO_LOG)"; \
	echo; \
	bin/demotraffic -endpoint http://localhost:$(DEMO_OTLP_HTTP)/v1/traces -rate $(DEMO_RATE) -duration $(DEMO_DURATION) \
	  -rollout-at $(DEMO_ROLLOUT_AT); \
	kill -0 $$pid 2>/dev/null || { echo "demo: the collector exited; the end of $(DEMO_LOG):" >&2; tail -n 15 $(DEMO_LOG) >&2; exit 1; }; \
	echo "waiting for unpaired spans to expire into virtual nodes (store.ttl 10s) and for their"; \
	echo "new series to show their counts (initial_zero_hold 15s)..."; sleep 27; \
	curl -sf $(DEMO_URL)/metrics | grep '^traces_service_graph_request_total'; \
	curl -sf '$(DEMO_URL)/api/impact?service=postgres'

# Python and end-to-end tests run from a virtual environment that
# setup-test makes (tests/e2e/setup.sh, which also installs Prometheus).
VENV := $(CURDIR)/.venv
PYTEST = $(VENV)/bin/python -m pytest

.PHONY: test-python

setup-test: ## Install the test tools: Prometheus and promtool (apt), .venv with tests/e2e/requirements.txt
	VENV=$(VENV) bash tests/e2e/setup.sh

test-python: rust setup-test ## Python ctypes tests against target/release/libservicemap.so
	$(PYTEST) tests/python

test-e2e: collector demotraffic setup-test test-python ## The built collector fed by the OpenTelemetry SDK and scraped by Prometheus; the demo's map, the README's picture
	$(PYTEST) -v --durations=5 tests/e2e

clean:
	$(CARGO) clean
	rm -rf bin $(GO_SHIM)/_build

# Conformance against contrib's servicegraph connector (go-shim/conformance,
# its own Go module): the differential test, Tempo scenarios, and the
# side-by-side benchmarks recorded in BENCHMARKS.md.
CONFORMANCE := $(GO_SHIM)/conformance

.PHONY: test-conformance bench-conformance bench-collector bench-curve bench-compare

test-conformance: rust ## Differential test against contrib's servicegraph connector, Tempo scenarios
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) vet ./...
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) test -count=1 ./...

bench-conformance: rust ## Benchmarks against contrib's connector: CPU per span, memory per waiting span
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) test -run '^$$' -bench BenchmarkVsContrib -benchmem -count=1 .
	cd $(CONFORMANCE) && $(CGO_ENV) $(GO) test -run '^$$' -bench BenchmarkWaitingSpanMemory -benchtime=1x -count=1 .

bench-curve: ## The cost curve: ns/span and bytes as edges, services, waiting spans, dimensions and batch size grow (CALLGRIND=1: instructions too)
	benches/curve/run.sh

bench-compare: ## The code against BASE=<commit> in one run, builds alternated: consume, bytes per waiting span, render (PAIRS=5; CALLGRIND=1: instructions too)
	benches/compare/run.sh $(BASE) $(or $(PAIRS),5)

bench-two-tier: collector setup-test ## Gateway + graph instances + Prometheus: faults, a resize, spans/s for N = 1, 2
	$(VENV)/bin/python benches/two-tier/run.py

bench-collector: rust ## Whole collector, contrib's connector vs servicemap: CPU seconds per million spans
	$(CGO_ENV) $(CONFORMANCE)/scripts/compare-collector.sh

# Fuzzing: cargo-fuzz (libFuzzer) targets in fuzz/, a workspace of its own so
# `make test` never builds them. See FUZZING.md. cargo-fuzz needs nightly
# flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the stable toolchain
# take them. Every target is built once, then the built binaries
# run one after the other, FUZZ_SECONDS each: a source change during the runs
# neither rebuilds nor breaks them, and a build error is reported as one.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := otlp_proto otlp_structured otlp_json config edges ffi
FUZZ_ENV := RUSTC_BOOTSTRAP=1
CARGO_FUZZ = $(FUZZ_ENV) $(CARGO) fuzz
FUZZ_BIN = fuzz/target/$(shell rustc -vV | sed -n 's/^host: //p')/release
# libFuzzer flags for every run (FUZZ_ARGS adds more): a unit slower than 60 s
# is a finding; the arbitrary-driven targets get room for longer programs.
FUZZ_FLAGS := -timeout=60 -print_final_stats=1
FUZZ_FLAGS_otlp_structured := -max_len=16384
FUZZ_FLAGS_ffi := -max_len=16384
FUZZ_ARGS ?=

.PHONY: fuzz fuzz-tools fuzz-build fuzz-seeds fuzz-one fuzz-regressions \
	$(addprefix fuzz-,$(FUZZ_TARGETS)) $(addprefix fuzz-run-,$(FUZZ_TARGETS))

fuzz-tools: ## Install cargo-fuzz from crates.io if it is missing
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

fuzz-build: fuzz-tools ## Build every fuzz target (ASan, coverage) without running it
	$(CARGO_FUZZ) build --fuzz-dir fuzz

fuzz-seeds: ## Fill fuzz/corpus/TARGET/ with seeds from tests/fixtures and fuzz/seeds
	$(CARGO) run --quiet --manifest-path fuzz/seedgen/Cargo.toml -- tests/fixtures fuzz/seeds fuzz/corpus

fuzz: fuzz-build fuzz-seeds ## Run each fuzz target (otlp_proto otlp_structured otlp_json config edges ffi) for FUZZ_SECONDS (60); fails on a crash
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  $(MAKE) --no-print-directory fuzz-run-$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (inputs in fuzz/artifacts/TARGET/)"; exit 1; fi; \
	echo "fuzz: no crash in $(FUZZ_TARGETS) ($(FUZZ_SECONDS) s each)"

fuzz-one: ## Run one fuzz target: make fuzz-one FUZZ_TARGET=otlp_json [FUZZ_SECONDS=300] (or make fuzz-otlp_json)
	@test -n "$(FUZZ_TARGET)" || { echo "FUZZ_TARGET is one of: $(FUZZ_TARGETS)"; exit 2; }
	$(MAKE) --no-print-directory fuzz-$(FUZZ_TARGET)

$(addprefix fuzz-,$(FUZZ_TARGETS)): fuzz-%: fuzz-build fuzz-seeds
	$(MAKE) --no-print-directory fuzz-run-$*

# Runs a built target on its corpus (what cargo fuzz run does, without the rebuild).
$(addprefix fuzz-run-,$(FUZZ_TARGETS)): fuzz-run-%:
	@mkdir -p fuzz/corpus/$* fuzz/artifacts/$*
	ASAN_OPTIONS=detect_odr_violation=0 $(FUZZ_BIN)/$* -artifact_prefix=fuzz/artifacts/$*/ \
	  -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) $(FUZZ_FLAGS_$*) $(FUZZ_ARGS) fuzz/corpus/$*

fuzz-regressions: fuzz-build ## Run the saved crash inputs (fuzz/regressions/TARGET/*) once each; fails while one still crashes
	@failed=""; for d in fuzz/regressions/*/; do t=$$(basename $$d); \
	  for f in $$d*; do \
	    if ASAN_OPTIONS=detect_odr_violation=0 $(FUZZ_BIN)/$$t -runs=1 $$f >/dev/null 2>&1; then echo "ok      $$f"; \
	    else echo "CRASHES $$f"; failed="$$failed $$f"; fi; \
	  done; done; test -z "$$failed"
