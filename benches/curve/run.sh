#!/usr/bin/env bash
# The cost curve in BENCHMARKS.md: examples/curve at each row, one dimension
# of the work grown by ×10 steps with the others at their defaults. Prints
# ns/span (wall, noisy on a shared machine), bytes per new edge and per
# waiting span, and with CALLGRIND=1 the steady phase's instructions per
# span, which repeat exactly from run to run.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked --example curve >&2
bin=target/release/examples/curve
pairs=20000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

row() {
	local name=$1
	shift
	local line instr=""
	line=$("$bin" "$@" --pairs "$pairs")
	if [[ ${CALLGRIND:-0} == 1 ]]; then
		valgrind --tool=callgrind --callgrind-out-file="$out/$name" --toggle-collect='curve::steady' \
			"$bin" "$@" --pairs "$pairs" >/dev/null 2>&1
		local total
		total=$(callgrind_annotate "$out/$name" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
		instr=" | $((total / (2 * pairs))) instructions/span"
	fi
	echo "$name$instr | $line"
}

for n in 10 100 1000 10000 100000; do row "edges=$n" --edges "$n" --services 1000; done
row "edges=100000, max_graph_edges=200000" --edges 100000 --services 1000 --max-graph-edges 200000
for n in 10 100 1000 10000; do row "services=$n" --services "$n" --edges "$n"; done
for n in 100 1000 10000 100000 1000000; do row "waiting=$n" --waiting "$n"; done
for n in 0 1 2 4 8; do row "dimensions=$n" --dimensions "$n"; done
for n in 1 10 100 1000 10000; do row "batch=$n" --batch "$n"; done
