#!/usr/bin/env bash
# load.sh - weir beside nginx (and other peers) under the shared loopback benchmark.
#
#   benches/load.sh                                  # release build, then S1 against nginx
#   SCENARIOS="S1 S2 S3" REPS=3 benches/load.sh      # more scenarios / repetitions
#   PEERS="nginx haproxy weir" DURATION=5 benches/load.sh
#   SKIP_BUILD=1 WEIR=/path/to/weir benches/load.sh  # measure an existing binary
#
# It builds target/release/weir (`cargo build --release`) and runs ../shared/bench/peers.sh
# (override with PEERS_SH=...) with WEIR set, which registers weir as a peer rendered from
# peers/weir.toml.tmpl (one worker, server pinned to CPU 0, load generator to CPU 1).
# Passed through: PEERS (default "nginx weir"), SCENARIOS (default S1), REPS, DURATION and
# every other knob peers.sh reads (OUT_MD, OUT_CSV, CONNS, ...). At the end it prints the
# median requests/s of weir over nginx per scenario.
# Needs the peers' packages (see the header of peers.sh): nginx wrk nghttp2-client brotli ...
# Do not build or run anything else on the box while it runs.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS_SH=${PEERS_SH:-$repo/../shared/bench/peers.sh}
[[ -f $PEERS_SH ]] || { echo "load.sh: $PEERS_SH not found (set PEERS_SH=/path/to/peers.sh)" >&2; exit 1; }

export PEERS=${PEERS:-"nginx weir"}
export SCENARIOS=${SCENARIOS:-S1}
export OUT_MD=${OUT_MD:-${TMPDIR:-/tmp}/weir-load-results.md}
export OUT_CSV=${OUT_CSV:-${TMPDIR:-/tmp}/weir-load-raw.csv}
# REPS, DURATION and the other knobs go through as they are in the environment.

if [[ -z ${WEIR:-} ]]; then
    WEIR=$repo/target/release/weir
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        echo "load.sh: cargo build --release" >&2
        (cd "$repo" && cargo build --release)
    fi
fi
[[ -x $WEIR ]] || { echo "load.sh: no weir binary at $WEIR" >&2; exit 1; }
export WEIR

echo "load.sh: $("$WEIR" version 2>&1 | head -1); PEERS=\"$PEERS\" SCENARIOS=\"$SCENARIOS\" REPS=${REPS:-3} DURATION=${DURATION:-10}" >&2
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
rc=0
bash "$PEERS_SH" "$@" || rc=$?

# Ratio of medians (rps, column 4 of the CSV: rep,scenario,peer,rps,...), clean runs only
# when a scenario has any (foreign CPU, column 19, at most FOREIGN_MAX).
if [[ -s $OUT_CSV && $OUT_CSV -nt $marker ]] && [[ " $PEERS " == *" weir "* ]] && [[ " $PEERS " == *" nginx "* ]]; then
    echo
    echo "weir / nginx, median requests/s (from $OUT_CSV; full report: $OUT_MD)"
    for s in $SCENARIOS; do
        awk -F, -v s="$s" -v m="${FOREIGN_MAX:-10}" '
            function median(list, n,   a, i, j, t) {
                n = split(list, a, " ")
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                if (n == 0) return ""
                return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
            }
            NR > 1 && $2 == s && ($3 == "weir" || $3 == "nginx") && $4 != "" && $4 != "nan" && $4 + 0 > 0 {
                all[$3] = all[$3] " " $4
                if ($19 == "" || $19 + 0 <= m) clean[$3] = clean[$3] " " $4
            }
            END {
                for (p in all) use[p] = (clean[p] != "") ? clean[p] : all[p]
                w = median(use["weir"]); n = median(use["nginx"])
                if (w == "" || n == "") { printf "  %-5s n/a (weir: %s, nginx: %s)\n", s, (w == "" ? "no run" : w), (n == "" ? "no run" : n); exit }
                printf "  %-5s weir %.0f rps, nginx %.0f rps: %.2fx\n", s, w, n, w / n
            }' "$OUT_CSV"
    done
fi
exit "$rc"
