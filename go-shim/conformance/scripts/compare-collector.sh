#!/usr/bin/env bash
# Whole-collector comparison of contrib's servicegraph connector, the
# servicemap connector and the servicemap receiver: builds one collector
# binary holding all three (plus the OTLP receiver and a nop exporter) and the
# load driver, then runs the collector once per mode, alternating, with the
# same OTLP/HTTP load on loopback, and prints the collector's CPU seconds per
# million spans.
#
# Usage: scripts/compare-collector.sh [-spans N] [-batch N] [-workers N] [-rounds N] [-limit DURATION]
# Needs the Rust release library (make rust). Binaries go to bin/ at the
# repository root (BIN overrides).
set -euo pipefail

module=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo=$(cd "$module/../.." && pwd)
bin=${BIN:-$repo/bin}

if [[ ! -f $repo/target/release/libservicemap.a ]]; then
	echo "compare-collector: target/release/libservicemap.a is missing; run 'make rust' first" >&2
	exit 1
fi
# The driver reads CPU times from /proc/<pid>/stat in units of USER_HZ.
if [[ $(getconf CLK_TCK) != 100 ]]; then
	echo "compare-collector: expected CLK_TCK 100, got $(getconf CLK_TCK)" >&2
	exit 1
fi

mkdir -p "$bin"
(
	cd "$module"
	go build -o "$bin/otelcol-compare" ./loadtest/otelcol-compare
	go build -o "$bin/compare-collector" ./loadtest/compare
)
exec "$bin/compare-collector" -collector "$bin/otelcol-compare" "$@"
