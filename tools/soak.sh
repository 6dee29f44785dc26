#!/usr/bin/env bash
# soak.sh — canmc under a steady high load for minutes: memory stays flat, counters add up.
#
# Usage: tools/soak.sh [SECONDS]          (default: $SOAK_SECONDS, else 600 = 10 minutes)
#
# Inside a private network namespace (tools/netlab.sh run; IPv4 multicast on lo, TTL 0)
# it runs two senders into one group for SECONDS:
#   canmc gen --rate $SOAK_PYCAN_RATE (200000)                 python-can format
#   canmc gen --rate $SOAK_NATIVE_RATE (1000000) --wire native  native format
# and two receivers: `canmc record -o soak.cmc --segment-size 4` and `canmc dump -q`.
# Finished segments of the recording are deleted as it goes (a 10-minute run would
# otherwise write ~20 GB), except segment 0.
# Every $SOAK_INTERVAL (2) seconds it samples each receiver's VmRSS and RssAnon
# (/proc/PID/status). At the end it checks, for each receiver:
#   memory:   after the first 20 % of the run, max VmRSS ≤ 1.1 × VmRSS at 20 % + the
#             mapped segment (4 MiB) + 2 MiB, and max RssAnon ≤ 1.1 × RssAnon at 20 % + 1 MiB;
#   counters: the datagrams lost (sent − received) are the kernel_drops (with GRO, where
#             one drop is one receive of up to 128 datagrams: between kernel_drops and
#             128 × kernel_drops); no decode errors, no duplicates, nothing filtered;
#             seq_gaps ≤ datagrams lost; frames + ring_drops = frames sent when nothing
#             was lost, else the missing frames are between seq_gaps and 69 × the
#             datagrams lost (a native datagram holds ≤ 69 frames);
#   and that it exited 0 with a summary.
# Exits 0 when everything holds, 1 with one line per failed check otherwise, 2 on a
# setup problem. Samples and summaries are kept in $SOAK_DIR (default: a temp dir, removed
# on success).
#
# Needs root (or user namespaces) and iproute2; CANMC=path/to/canmc (default
# target/release/canmc).

set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SELF")")

if [[ -z "${SOAK_INNER:-}" ]]; then
    export SOAK_SECONDS=${1:-${SOAK_SECONDS:-600}}
    export CANMC=${CANMC:-$REPO/target/release/canmc}
    [[ -x "$CANMC" ]] || { echo "soak: no canmc at $CANMC (cargo build --release)" >&2; exit 2; }
    [[ "$SOAK_SECONDS" =~ ^[0-9]+$ && "$SOAK_SECONDS" -ge 10 ]] ||
        { echo "soak: SECONDS must be an integer ≥ 10, not '$SOAK_SECONDS'" >&2; exit 2; }
    SOAK_INNER=1 exec "$REPO/tools/netlab.sh" run "$SELF"
fi

SECS=$SOAK_SECONDS
PY_RATE=${SOAK_PYCAN_RATE:-200000}
NAT_RATE=${SOAK_NATIVE_RATE:-1000000}
INTERVAL=${SOAK_INTERVAL:-2}
PORT=43113
SEG_MIB=4
KEEP_DIR=1
if [[ -z "${SOAK_DIR:-}" ]]; then
    SOAK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/canmc-soak.XXXXXX")
    KEEP_DIR=0
fi
D=$SOAK_DIR
mkdir -p "$D"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# kib PID FIELD: a /proc/PID/status field in KiB, or 0 if the process is gone.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# jget JSON KEY: an integer field of a one-line summary.
jget() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" <<<"$1"; }

"$CANMC" record --iface lo --port $PORT -o "$D/soak.cmc" --segment-size $SEG_MIB --json \
    --no-answer >"$D/record.json" 2>"$D/record.err" &
REC=$!
PIDS+=("$REC")
"$CANMC" dump --iface lo --port $PORT -q --json --no-answer >"$D/dump.json" 2>"$D/dump.err" &
DUMP=$!
PIDS+=("$DUMP")
for _ in $(seq 250); do
    grep -q "$(printf ':%04X ' $PORT)" /proc/net/udp && break
    sleep 0.02
done
sleep 0.5

"$CANMC" gen --iface lo --port $PORT --rate "$PY_RATE" -L 8 -D i --json \
    >"$D/gen-pycan.json" 2>"$D/gen-pycan.err" &
GPY=$!
PIDS+=("$GPY")
"$CANMC" gen --iface lo --port $PORT --rate "$NAT_RATE" --wire native --json \
    >"$D/gen-native.json" 2>"$D/gen-native.err" &
GNAT=$!
PIDS+=("$GNAT")

echo "soak: ${SECS} s, python-can ${PY_RATE}/s + native ${NAT_RATE}/s into record + dump; files in $D" >&2
echo "t_s record_rss_kib record_anon_kib dump_rss_kib dump_anon_kib" >"$D/rss.txt"
start=$(date +%s.%N)
while :; do
    now=$(date +%s.%N)
    t=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
    echo "$t $(kib $REC VmRSS) $(kib $REC RssAnon) $(kib $DUMP VmRSS) $(kib $DUMP RssAnon)" >>"$D/rss.txt"
    # Keep the disk bounded: drop finished segments except 0 and the newest two.
    last=$(find "$D" -maxdepth 1 -name 'soak.cmc.*' | sed 's/.*\.//' | sort -n | tail -1)
    if [[ -n "$last" ]]; then
        for ((n = 1; n < last - 1; n++)); do rm -f "$D/soak.cmc.$n"; done
    fi
    awk -v t="$t" -v s="$SECS" 'BEGIN { exit !(t >= s) }' && break
    kill -0 $REC 2>/dev/null && kill -0 $DUMP 2>/dev/null || break
    sleep "$INTERVAL"
done

kill -TERM $GPY $GNAT 2>/dev/null || true
wait $GPY || true
wait $GNAT || true
sleep 1 # the last datagrams reach the receivers
kill -TERM $REC $DUMP 2>/dev/null || true
rc_rec=0 rc_dump=0
wait $REC || rc_rec=$?
wait $DUMP || rc_dump=$?
PIDS=()

fail=()
gp=$(head -1 "$D/gen-pycan.json")
gn=$(head -1 "$D/gen-native.json")
[[ -n "$gp" && -n "$gn" ]] || fail+=("a sender printed no summary: $(cat "$D"/gen-*.err)")
tx_dg=$(($(jget "$gp" datagrams) + $(jget "$gn" datagrams)))
tx_fr=$(($(jget "$gp" frames) + $(jget "$gn" frames)))
echo "soak: sent $tx_fr frames in $tx_dg datagrams" >&2

check_receiver() {
    local name=$1 rc=$2 col_rss=$3 col_anon=$4 j
    j=$(grep '^{' "$D/$name.json" | tail -1 || true)
    if [[ $rc -ne 0 || -z "$j" ]]; then
        fail+=("$name: exit $rc, summary '${j}', stderr: $(tr '\n' ' ' <"$D/$name.err")")
        return
    fi
    local fr dg kd rd gaps dec dup filt missing
    fr=$(jget "$j" frames) dg=$(jget "$j" datagrams) kd=$(jget "$j" kernel_drops)
    rd=$(jget "$j" ring_drops) gaps=$(jget "$j" seq_gaps)
    dec=$(jget "$j" decode_errors_total) dup=$(jget "$j" duplicates) filt=$(jget "$j" filtered)
    missing=$((tx_fr - fr - rd))
    gro=$(grep -o '"gro":[a-z]*' <<<"$j" | cut -d: -f2)
    echo "soak: $name: $fr frames, $dg datagrams, kernel_drops $kd, ring_drops $rd, seq_gaps $gaps, gro $gro" >&2
    # Without GRO the kernel counts every dropped datagram. With GRO it counts a dropped
    # receive once, and one receive of a GSO sender's traffic holds up to
    # UDP_MAX_SEGMENTS (≤ 128) datagrams: then the lost datagrams are between the drops
    # and 128 × the drops (docs/architecture.md, "UDP GRO").
    local lost=$((tx_dg - dg)) per_drop=1
    [[ $gro == true ]] && per_drop=128
    ((lost >= kd && lost <= kd * per_drop)) ||
        fail+=("$name: $lost datagrams lost ($tx_dg sent, $dg received), not within [kernel_drops $kd, $per_drop × $kd]")
    ((dec == 0)) || fail+=("$name: $dec decode errors: $j")
    ((dup == 0)) || fail+=("$name: $dup duplicates")
    ((filt == 0)) || fail+=("$name: $filt frames filtered")
    ((gaps <= lost)) || fail+=("$name: seq_gaps $gaps > $lost datagrams lost (gaps with no loss)")
    if ((lost == 0)); then
        ((missing == 0)) ||
            fail+=("$name: no datagram lost, yet frames $fr + ring_drops $rd != $tx_fr sent")
    else
        ((missing >= gaps && missing <= lost * 69)) ||
            fail+=("$name: $missing frames missing, not within [seq_gaps $gaps, $lost datagrams lost × 69]")
    fi
    # Memory: the sample at 20 % of the run is the baseline.
    local verdict
    verdict=$(awk -v secs="$SECS" -v c1="$col_rss" -v c2="$col_anon" -v seg=$((SEG_MIB * 1024)) '
        NR == 1 { next }
        $(c1) == 0 { next }
        !base && $1 >= 0.2 * secs { base = 1; r0 = $(c1); a0 = $(c2) }
        base { if ($(c1) > rmax) rmax = $(c1); if ($(c2) > amax) amax = $(c2); n++ }
        END {
            if (!base || n < 3) { print "FAIL too few samples after warm-up"; exit }
            rl = 1.1 * r0 + seg + 2048; al = 1.1 * a0 + 1024
            printf "%s VmRSS at 20%% %d KiB, max after %d KiB (limit %d); RssAnon at 20%% %d KiB, max after %d KiB (limit %d)\n",
                (rmax <= rl && amax <= al) ? "ok" : "FAIL", r0, rmax, rl, a0, amax, al
        }' "$D/rss.txt")
    echo "soak: $name: memory $verdict" >&2
    [[ $verdict == ok* ]] || fail+=("$name: memory grew: ${verdict#FAIL }")
}
check_receiver record $rc_rec 2 3
check_receiver dump $rc_dump 4 5

if ((${#fail[@]})); then
    for f in "${fail[@]}"; do echo "soak: FAIL: $f" >&2; done
    echo "soak: files kept in $D" >&2
    exit 1
fi
echo "soak: ok" >&2
((KEEP_DIR)) || rm -rf "$D"
exit 0
