#!/usr/bin/env bash
# canvm_perf.sh — SocketCAN figures measured in the canvm guest (tools/canvm.sh), as ratios
# within one guest run (TCG timings are slow and noisy; docs/perf.md):
#   1. bridge throughput: cangen -g 0 onto vcan0; candump -L vcan0 and
#      canmc bridge vcan0 → group (lo) → canmc record take it at the same time; CPU time
#      per frame (utime+stime from /proc) and frames delivered, canmc against candump.
#   2. replay timing: one log of 500 frames 2 ms apart, played by canplayer and by
#      canmc replay --can; candump -L vcan0 stamps the arrivals; error of each frame's
#      offset against the log's, canmc against canplayer.
# Usage: tools/canvm_perf.sh [FRAMES]   (default 50000; needs a release build of canmc)
set -euo pipefail
REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
N=${1:-50000}
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
B=$TARGET/release/canmc
[[ -x $B ]] || { echo "canvm_perf: build first: cargo build --release" >&2; exit 1; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/canvm-perf.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
cat >"$OUT/guest.sh" <<GUEST
set -u
B=$B; OUT=$OUT; N=$N
G="--iface lo --port 43700"
busybox ip link add dev vcan0 type vcan; busybox ip link set vcan0 mtu 72; busybox ip link set vcan0 up
cpu() { awk '{print \$14 + \$15}' /proc/\$1/stat; }
ready() { i=0; while [ "\$(\$B ping \$G -W 0.3 --json 2>/dev/null | grep -c .)" -lt "\$1" ]; do i=\$((i + 1)); [ \$i -lt 100 ] || exit 1; done; }
\$B bridge vcan0 \$G --json >\$OUT/bridge.json 2>\$OUT/bridge.err &
b=\$!
\$B record \$G -o /tmp/rec.cmc --json >\$OUT/rec.json 2>\$OUT/rec.err &
r=\$!
candump -L vcan0 >/tmp/cd.log &
c=\$!
ready 2
b0=\$(cpu \$b); r0=\$(cpu \$r); c0=\$(cpu \$c)
cangen vcan0 -g 0 -p 10 -n \$N
sleep 3
echo "bridge_ticks \$((\$(cpu \$b) - b0))" >\$OUT/cpu.txt
echo "record_ticks \$((\$(cpu \$r) - r0))" >>\$OUT/cpu.txt
echo "candump_ticks \$((\$(cpu \$c) - c0))" >>\$OUT/cpu.txt
echo "candump_frames \$(wc -l </tmp/cd.log)" >>\$OUT/cpu.txt
echo "hz \$(getconf CLK_TCK)" >>\$OUT/cpu.txt
kill -TERM \$b; wait \$b; kill -TERM \$r; wait \$r; kill \$c; wait \$c 2>/dev/null
i=0
: >\$OUT/in.log
while [ \$i -lt 500 ]; do
    printf '(%d.%06d) vcan0 %03X#%02X\n' \$((2000 + i * 2 / 1000)) \$(((i * 2 % 1000) * 1000)) \$((i % 2048)) \$((i % 256)) >>\$OUT/in.log
    i=\$((i + 1))
done
for who in canplayer canmc; do
    candump -L vcan0 >\$OUT/\$who.log &
    c=\$!
    sleep 1
    if [ \$who = canplayer ]; then canplayer -I \$OUT/in.log; else \$B replay --can vcan0 \$OUT/in.log 2>/dev/null; fi
    sleep 1
    kill \$c; wait \$c 2>/dev/null
done
GUEST
bash "$REPO/tools/canvm.sh" --rw "$OUT" --timeout 900 sh "$OUT/guest.sh"
python3 - "$OUT" "$N" <<'PY'
import json, sys, re
out, n = sys.argv[1], int(sys.argv[2])
cpu = dict(l.split() for l in open(f"{out}/cpu.txt"))
hz = int(cpu["hz"])
b = json.loads(open(f"{out}/bridge.json").read().splitlines()[-1])
r = json.loads(open(f"{out}/rec.json").read().splitlines()[-1])
cd_frames = int(cpu["candump_frames"])
us = lambda ticks, frames: int(ticks) / hz * 1e6 / max(frames, 1)
cd_us = us(cpu["candump_ticks"], cd_frames)
br_us = us(cpu["bridge_ticks"], b["to_group"]["frames"])
rec_us = us(cpu["record_ticks"], r["frames"])
print(f"throughput, cangen -g 0 -n {n} onto vcan0 (TCG guest):")
print(f"  candump -L:      {cd_frames} frames, {cd_us:.1f} µs CPU/frame")
print(f"  canmc bridge:    {b['to_group']['frames']} frames to the group, {b['to_group']['kernel_drops']} kernel drops, {br_us:.1f} µs CPU/frame")
print(f"  canmc record:    {r['frames']} frames, {r['kernel_drops']} kernel drops, {rec_us:.1f} µs CPU/frame")
print(f"  ratio bridge/candump CPU per frame: {br_us / cd_us:.2f}; bridge+record/candump: {(br_us + rec_us) / cd_us:.2f}")
def times(path):
    return [float(m.group(1)) for m in (re.match(r"\((\d+\.\d+)\)", l) for l in open(path)) if m]
want = times(f"{out}/in.log")
res = {}
for who in ("canplayer", "canmc"):
    got = times(f"{out}/{who}.log")
    if len(got) != len(want):
        print(f"  {who}: {len(got)} of {len(want)} frames arrived"); continue
    err = sorted(abs((g - got[0]) - (w - want[0])) * 1e6 for g, w in zip(got, want))
    q = lambda p: err[min(len(err) - 1, int(p * len(err)))]
    res[who] = (q(0.5), q(0.99), err[-1], (got[-1] - got[0]) * 1e3)
    print(f"replay {who}: offset error p50 {q(0.5):.0f} µs, p99 {q(0.99):.0f} µs, max {err[-1]:.0f} µs; span {res[who][3]:.1f} ms (log: {(want[-1]-want[0])*1e3:.1f} ms)")
if len(res) == 2:
    a, c = res["canmc"], res["canplayer"]
    print(f"  ratio canmc/canplayer: p50 error {a[0] / max(c[0], 1):.2f}, p99 error {a[1] / max(c[1], 1):.2f}")
PY
