#!/bin/bash
# Issue 9, item 9: the receive, record and replay benchmarks on the tree before the
# restructuring (7aa8115) and on this one, in one sitting, alternating.
#
#   git worktree add /work/before 7aa8115
#   (cd /work/before && CARGO_TARGET_DIR=/work/before/target cargo build --release --bins --examples)
#   cargo build --release --bins --examples
#   bash tools/bench_before_after.sh /work/before /tmp/bench9
#
# Each tree runs its own copy of the tools against its own binaries; the JSON results go
# to OUT (docs/perf/issue9/ holds the run reported in docs/perf.md).
set -eu
BEFORE=${1:?usage: bench_before_after.sh BEFORE_TREE OUT_DIR}
OUT=${2:?usage: bench_before_after.sh BEFORE_TREE OUT_DIR}
AFTER=$(cd "$(dirname "$0")/.." && pwd)
PY=${CANMC_PYTHON:-$AFTER/.venv/bin/python}
export CANMC_PYTHON=$PY
mkdir -p "$OUT"
date -u; uptime
for side in before after; do
    tree=$BEFORE; [ $side = after ] && tree=$AFTER
    (cd "$tree" && "$PY" tools/bench_recv.py --quick --no-build --no-plot \
        --out "$OUT/recv-$side.json" > "$OUT/recv-$side.txt" 2>&1)
done
for side in before after; do
    tree=$BEFORE; [ $side = after ] && tree=$AFTER
    (cd "$tree" && "$PY" tools/bench_capture_replay.py --canmc "$tree/target/release/canmc" \
        --out "$OUT/cr-$side.json" --tmp "/tmp/cr-$side" > "$OUT/cr-$side.txt" 2>&1)
done
# The low-rate capture points are dominated by wake-ups and vary most: three more rounds.
for i in 1 2 3; do
    for side in before after; do
        tree=$BEFORE; [ $side = after ] && tree=$AFTER
        (cd "$tree" && "$PY" tools/bench_capture_replay.py --canmc "$tree/target/release/canmc" \
            --only capture --rates 20000,100000 --out "$OUT/cap-$side-$i.json" \
            --tmp "/tmp/cap-$side" > /dev/null 2>&1)
    done
done
date -u; uptime
