# servicemap: every build, test and demo step. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
GO ?= go
RUST_LIB := target/release/libservicemap.a

.PHONY: help build rust collector test test-rust test-go test-e2e demo bench setup-test clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: rust collector ## Build the Rust library, the CLI and bin/otelcol-servicemap

rust: ## Build the Rust static library, shared library and CLI (release)
	$(CARGO) build --release --locked

test: test-rust test-go test-e2e ## Run every test (what CI runs)

test-rust: ## Rust unit and integration tests, the C ABI test, the header check
	$(CARGO) test --release --locked

clean:
	$(CARGO) clean
	rm -rf bin go-shim/_build
