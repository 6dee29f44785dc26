#!/usr/bin/env bash
# bench_views.sh — measures the views (docs/perf.md, "Views"), loopback only (TTL 0):
#   1. `canmc top` receiving N native frames at RATE frames/s on the group, run in a
#      detached tmux session (a real terminal, redrawing at 10 Hz), against `canmc dump -q`
#      taking the same traffic in the same run (the baseline): frames received and every
#      receive-path loss counter (kernel drops, ring drops, sequence gaps) of each.
#   2. `canmc plot` of an M-frame .cmc recording to HTML, against `canmc info` reading
#      the same file (the baseline): seconds each, and the ratio.
#
# Usage: tools/bench_views.sh [N] [RATE] [M]   (defaults 10000000 1000000 10000000)
# Env:   CANMC (default target/release/canmc), PORT (default 42990).
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
CANMC=${CANMC:-${CARGO_TARGET_DIR:-$REPO/target}/release/canmc}
N=${1:-10000000}
RATE=${2:-1000000}
M=${3:-10000000}
PORT=${PORT:-42990}
WORK=$(mktemp -d /tmp/canmc-bench-views.XXXXXX)
SOCK=canmc-bench-views-$$
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v tmux >/dev/null || { echo "bench_views: tmux missing (apt-get install tmux)" >&2; exit 1; }
[[ -x $CANMC ]] || { echo "bench_views: $CANMC missing (cargo build --release)" >&2; exit 1; }

field() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"; }

wait_answering() {  # until a receiver on PORT answers ping
    for _ in $(seq 50); do
        if "$CANMC" ping --iface lo --port "$PORT" -W 0.2 --json 2>/dev/null | grep -q pid; then
            return 0
        fi
    done
    echo "bench_views: receiver not answering" >&2
    exit 1
}

gen() {
    "$CANMC" gen --iface lo --port "$PORT" --wire native -n "$N" --rate "$RATE" \
        -I r -L 8 --json >"$WORK/gen.json"
}

report() {  # name summary.json
    printf '%-10s frames %10s of %s sent  kernel_drops %s  ring_drops %s  seq_gaps %s\n' \
        "$1" "$(field "$2" frames)" "$(field "$WORK/gen.json" frames)" \
        "$(field "$2" kernel_drops)" "$(field "$2" ring_drops)" "$(field "$2" seq_gaps)"
}

echo "== receive: $N native frames at $RATE frames/s on lo"
# Baseline: dump -q, same traffic.
"$CANMC" dump --iface lo --port "$PORT" -q --json -n "$N" --duration $((N / RATE + 20)) \
    >"$WORK/dump.json" 2>/dev/null &
DUMP=$!
wait_answering
gen
wait "$DUMP" || true
report "dump -q" "$WORK/dump.json"

# top in a terminal: tmux, 150x40, quit with q after the traffic.
tmux -L "$SOCK" new-session -d -s top -x 150 -y 40 \
    "exec $CANMC top --iface lo --port $PORT --json > $WORK/top.json"
wait_answering
gen
sleep 1
tmux -L "$SOCK" send-keys -t top q
for _ in $(seq 100); do
    grep -q '"command":"top"' "$WORK/top.json" 2>/dev/null && break
    sleep 0.1
done
report "top" "$WORK/top.json"

echo "== plot: $M-frame recording"
"$CANMC" record --iface lo --port "$PORT" -o "$WORK/rec.cmc" -n "$M" --json >"$WORK/rec.json" 2>/dev/null &
REC=$!
wait_answering
"$CANMC" gen --iface lo --port "$PORT" --wire native -n "$M" --rate 2000000 -L 8 >/dev/null 2>&1
# record stops by itself at M frames; if some were lost, stop it after a while.
for _ in $(seq 30); do kill -0 "$REC" 2>/dev/null || break; sleep 0.1; done
kill -INT "$REC" 2>/dev/null || true
wait "$REC" || true
echo "recorded $(field "$WORK/rec.json" frames) frames ($(du -ch "$WORK"/rec.cmc* | tail -1 | cut -f1) of .cmc segments)"
t0=$(date +%s.%N)
"$CANMC" info "$WORK/rec.cmc" >/dev/null
t1=$(date +%s.%N)
"$CANMC" plot "$WORK/rec.cmc" -o "$WORK/rec.html"
t2=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
    printf "info (baseline) %.2f s   plot %.2f s   plot/info %.2f\n", b - a, c - b, (c - b) / (b - a) }'
