#!/usr/bin/env bash
# bench_gro.sh — UDP GRO on the receive path (docs/perf.md, "UDP GRO"), loopback only
# (group 239.74.163.2 on lo, TTL 0): `canmc gen` (unpaced, sendmmsg + UDP GSO) into one
# receiver, `dump -q` or `record -o` on tmpfs, with GRO on (the default) and `--no-gro`,
# on both receive paths. Prints per run: frames/datagrams sent, what the receiver counted
# (frames, datagrams, coalesced receives, kernel drops, sequence gaps, ring drops) and
# its CPU time (user + sys from /usr/bin/time, receiver process only, idle included).
#
# Usage: tools/bench_gro.sh [dump|record] [WIRE] [N] [ROUNDS]   (defaults dump native 5000000 1)
# Env:   CANMC (default $CARGO_TARGET_DIR or target, /release/canmc), PORT (default 45100).
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
CANMC=${CANMC:-${CARGO_TARGET_DIR:-$REPO/target}/release/canmc}
CMD=${1:-dump}
WIRE=${2:-native}
N=${3:-5000000}
ROUNDS=${4:-1}
PORT=${PORT:-45100}
WORK=$(mktemp -d /dev/shm/canmc-bench-gro.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[[ -x $CANMC ]] || { echo "bench_gro: $CANMC missing (cargo build --release)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "bench_gro: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

field() { sed -n "s/.*\"$2\":\([0-9.a-z]*\).*/\1/p" "$1"; }

echo "# $CMD, wire $WIRE, $N frames, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M) UTC"
printf '%-6s %-6s %-5s %10s %9s %10s %9s %9s %7s %7s %8s %6s %6s %8s\n' \
    io gro round sent_fr sent_dg recv_fr recv_dg coalesced kdrops gaps rdrops user sys ns/frame
for round in $(seq "$ROUNDS"); do
    for io in mmsg uring; do
        for gro in on off; do
            PORT=$((PORT + 1))
            extra=()
            [[ $gro == off ]] && extra=(--no-gro)
            common=(--iface lo --port "$PORT" --json --io "$io" "${extra[@]}" --duration 30 -n "$N")
            if [[ $CMD == dump ]]; then
                /usr/bin/time -f "%U %S" -o "$WORK/time" "$CANMC" dump -q "${common[@]}" \
                    >"$WORK/recv.json" 2>"$WORK/recv.err" &
            else
                /usr/bin/time -f "%U %S" -o "$WORK/time" "$CANMC" record "${common[@]}" \
                    -o "$WORK/r.cmc" >"$WORK/recv.json" 2>"$WORK/recv.err" &
            fi
            timer=$!
            sleep 0.7
            "$CANMC" gen --iface lo --port "$PORT" --wire "$WIRE" -n "$N" --json >"$WORK/gen.json"
            # Whatever was lost never arrives: stop the receiver a second after the sender.
            sleep 1
            child=$(pgrep -P "$timer" || true)
            [[ -n $child ]] && kill -INT "$child" 2>/dev/null || true
            wait "$timer" || { cat "$WORK/recv.err" >&2; exit 1; }
            read -r user sys <"$WORK/time"
            frames=$(field "$WORK/recv.json" frames)
            printf '%-6s %-6s %-5s %10s %9s %10s %9s %9s %7s %7s %8s %6s %6s %8.0f\n' \
                "$io" "$gro" "$round" "$(field "$WORK/gen.json" frames)" \
                "$(field "$WORK/gen.json" datagrams)" "$frames" \
                "$(field "$WORK/recv.json" datagrams)" "$(field "$WORK/recv.json" coalesced)" \
                "$(field "$WORK/recv.json" kernel_drops)" "$(field "$WORK/recv.json" seq_gaps)" \
                "$(field "$WORK/recv.json" ring_drops)" \
                "$user" "$sys" "$(echo "($user + $sys) * 1000000000 / $frames" | bc -l)"
            rm -f "$WORK/r.cmc"
        done
    done
done
