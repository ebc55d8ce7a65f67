#!/usr/bin/env bash
# Benchmark of `trainlens import-tb`: one event file of N scalars (default
# 1,000,000: 10 tags x 100,000 steps, one value per event, as tensorboardX
# writes them), imported REPS times (default 5), each into a fresh SQLite
# database; prints each wall time, then the median and the spread.
# Target: median <= 0.5 s for 1M scalars.
#
#     bench/import_tb.sh [N] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
REPS="${2:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin trainlens --example tb_events
BIN="$CARGO_TARGET_DIR/release/trainlens"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/logs/run"
"$CARGO_TARGET_DIR/release/examples/tb_events" "$TMP/logs/run/events.out.tfevents.1.bench" "$N"
echo "event file: $(stat -c %s "$TMP/logs/run/events.out.tfevents.1.bench") bytes, $N scalars" >&2
times=()
for i in $(seq 1 "$REPS"); do
    rm -f "$TMP"/bench.db* "$TMP/logs/.trainlens-tb-state.json"
    # Migrate first, so the figure is the import alone.
    "$BIN" --database-url "sqlite://$TMP/bench.db" findings --project none >/dev/null 2>&1 || true
    start=$(date +%s.%N)
    "$BIN" --database-url "sqlite://$TMP/bench.db" import-tb "$TMP/logs" >"$TMP/out.txt"
    end=$(date +%s.%N)
    grep -q "$N scalars" "$TMP/out.txt" || { cat "$TMP/out.txt"; echo "not every scalar arrived" >&2; exit 1; }
    t=$(echo "$end - $start" | bc -l)
    times+=("$t")
    printf 'rep %d: %.3f s\n' "$i" "$t"
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$N" '
    { t[NR] = $1 }
    END {
        med = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
        printf "median %.3f s (min %.3f, max %.3f) over %d runs: %.2f M scalars/s; target median <= 0.5 s for 1M: %s\n",
            med, t[1], t[NR], NR, n / med / 1e6, (n == 1000000 ? (med <= 0.5 ? "PASS" : "FAIL") : "n/a")
    }'
