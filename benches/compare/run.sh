#!/usr/bin/env bash
# The code as it is against an earlier commit, in one run: on a shared
# machine only figures measured side by side compare. Builds BASE in a
# worktree of its own (under target/compare/, kept for the next run), then
# alternates the two builds PAIRS times (default 5; which build runs first
# alternates too, evenly for an even PAIRS) and prints a Markdown table of
# medians and their ratios:
#   - consume: ns per span (`replay 1000`) and, with CALLGRIND=1,
#     instructions per span (callgrind inside `consume`, `replay 300` minus
#     `replay 100`, which repeat exactly);
#   - memory per waiting span (`memory 1000000`: the store's own account);
#   - render of 10,000 edges, ms (`replay --render FORMAT 50`).
# A row whose example BASE does not have is left out. `git worktree remove
# target/compare/BASE/tree` lets the worktree go.
#
#     benches/compare/run.sh BASE [PAIRS]     (make bench-compare BASE=...)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=$(git rev-parse --short "${1:?usage: benches/compare/run.sh BASE [PAIRS]}")
pairs=${2:-5}
dir=target/compare/$base
if [[ ! -d $dir/tree ]]; then
	git worktree add --detach "$dir/tree" "$base" >&2
fi
build() { (cd "$1" && CARGO_TARGET_DIR=$2 cargo build --release --locked --features cli --examples >&2); }
build "$dir/tree" "$PWD/$dir/target"
build . "$PWD/target"
old=$dir/target/release/examples
new=target/release/examples

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# ratio BEFORE AFTER: after over before, or a dash when either is missing
# (a base whose program prints no such line, or names `consume` otherwise).
ratio() { awk -v x="$1" -v y="$2" 'BEGIN {if (x > 0 && y != "") printf "%.3f×", y / x; else printf "–"}'; }
# row NAME UNIT PATTERN FIELD COMMAND...: runs COMMAND from each build
# PAIRS times, alternating, and takes the FIELDth word (brackets dropped) of
# the first line of its output that matches PATTERN.
row() {
	local name=$1 unit=$2 pattern=$3 field=$4
	shift 4
	[[ -x $old/$1 ]] || return 0
	local a=() b=() pick i
	# Reads to the end, so that the program never writes to a closed pipe.
	pick=$'!found && $0 ~ p {gsub(/[()]/, "", $f); print $f; found = 1}'
	# The pairs take turns at going first, so that whatever favours the first
	# (or second) run of a pair favours neither build.
	for i in $(seq "$pairs"); do
		if ((i % 2)); then
			a+=("$("$old/$1" "${@:2}" | awk -v p="$pattern" -v f="$field" "$pick")")
			b+=("$("$new/$1" "${@:2}" | awk -v p="$pattern" -v f="$field" "$pick")")
		else
			b+=("$("$new/$1" "${@:2}" | awk -v p="$pattern" -v f="$field" "$pick")")
			a+=("$("$old/$1" "${@:2}" | awk -v p="$pattern" -v f="$field" "$pick")")
		fi
	done
	local ma mb
	ma=$(printf '%s\n' "${a[@]}" | median)
	mb=$(printf '%s\n' "${b[@]}" | median)
	echo "| $name | ${a[*]}: **$ma** $unit | ${b[*]}: **$mb** $unit | $(ratio "$ma" "$mb") |"
}

instructions() {
	local out total=()
	out=$(mktemp -d)
	for n in 100 300; do
		valgrind --tool=callgrind --callgrind-out-file="$out/$n" \
			--toggle-collect='servicemap::engine::consume::*::consume' "$1/replay" "$n" >/dev/null 2>&1
		total+=("$(callgrind_annotate "$out/$n" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')")
	done
	rm -rf "$out"
	awk -v a="${total[0]}" -v b="${total[1]}" 'BEGIN {if (b > a) printf "%.1f", (b - a) / 200000}'
}

echo "| figure | $base | $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with changes)') | ratio |"
echo "|---|---|---|---|"
row "consume (\`replay 1000\`)" ns/span '^consume' 2 replay 1000
if [[ ${CALLGRIND:-0} == 1 ]]; then
	ia=$(instructions "$old")
	ib=$(instructions "$new")
	echo "| consume, instructions per span | $ia | $ib | $(ratio "$ia" "$ib") |"
fi
row "bytes per waiting span (\`memory 1000000\`, the store's account)" B store_bytes 3 memory 1000000
for format in prometheus openmetrics otlp; do
	row "render 10,000 edges, $format" ms '^render' 3 replay --render "$format" 50
done
