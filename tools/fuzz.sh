#!/usr/bin/env bash
# fuzz.sh — a bounded libFuzzer run of every cargo-fuzz target in fuzz/ (docs/fuzzing.md),
# for CI (tools/test.sh runs it after the tests) and for people.
#
# Usage: tools/fuzz.sh [TARGET...]        (default: every target below)
# Env:   CANMC_FUZZ_SCALE    integer factor on every target's case count (default 1; 10
#                            for a longer run; 0 only replays the corpus and the
#                            regressions). At scale 1 the targets run 1.5 M cases.
#        CANMC_FUZZ_MAX_TIME safety cap in seconds per target (default 300): a target that
#                            reaches it stops early (reported, not a failure).
#        CARGO_BUILD_JOBS    as for cargo (e.g. 1 on a shared machine).
#
# Installs cargo-fuzz if it is missing (`cargo install cargo-fuzz --locked`), builds every
# target with `--sanitizer none` (the only mode stable Rust supports: no nightly, no ASan),
# then runs each on its committed corpus fuzz/corpus/TARGET with -runs=N and
# -max_total_time as a cap. The committed corpus is read only: libFuzzer writes new inputs
# to the first corpus directory it is given, here an empty scratch directory that is
# removed afterwards. Prints one line per target (cases, time, cases/s) and exits non-zero
# if any target crashed, panicked, timed out (-timeout=10 s per input) or ran out of memory;
# the reproducer is in fuzz/artifacts/TARGET/ (keep it in fuzz/regressions/TARGET/).
# Before fuzzing, each target runs once on every input in fuzz/regressions/TARGET/ (inputs
# that once failed); one that fails again fails the script too.
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
cd "$REPO"

# Cases per target at scale 1: the fast datagram decoders take most; the file readers
# (a file written and read several ways per case) fewer.
declare -A RUNS=(
    [pycan_decode]=500000
    [native_decode]=400000
    [can_text]=250000
    [log_reader]=120000
    [asc_reader]=120000
    [cmc_reader]=110000
    [trc_reader]=100000
    [blf_reader]=100000
    [mf4_reader]=60000
)
ORDER=(pycan_decode native_decode can_text log_reader asc_reader cmc_reader trc_reader blf_reader mf4_reader)
SCALE=${CANMC_FUZZ_SCALE:-1}
MAX_TIME=${CANMC_FUZZ_MAX_TIME:-300}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ORDER[@]}")
for t in "${targets[@]}"; do
    if [[ -z ${RUNS[$t]:-} ]]; then
        echo "fuzz.sh: unknown target '$t' (known: ${ORDER[*]})" >&2
        exit 2
    fi
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Scratch space in RAM when possible: new corpus entries, logs, and the files the
# whole-file targets write (they honour TMPDIR).
if [[ -d /dev/shm && -w /dev/shm ]]; then
    SCRATCH=$(mktemp -d /dev/shm/canmc-fuzz.XXXXXX)
else
    SCRATCH=$(mktemp -d)
fi
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/tmp"

ms() { date +%s%3N; }
# What a failed libFuzzer run says: the panic, libFuzzer's verdict, the input it saved.
why() {
    {
        grep -A1 -m1 'panicked at' "$1" || true
        grep -m1 'ERROR: libFuzzer' "$1" || true
        grep -m1 'Test unit written to' "$1" || true
    } | sed 's/^/    /'
}
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }

t0=$(ms)
echo "fuzz.sh: building ${#targets[@]} targets (cargo fuzz build -s none)"
if [[ ${#targets[@]} -eq ${#ORDER[@]} ]]; then
    cargo fuzz build -s none
else
    for t in "${targets[@]}"; do cargo fuzz build -s none "$t"; done
fi
build_ms=$(($(ms) - t0))
echo "fuzz.sh: build $(secs $build_ms) s"

failed=()
total_cases=0
total_ms=0
for t in "${targets[@]}"; do
    # Inputs that once failed (fuzz/regressions/TARGET/), each run once first.
    for r in fuzz/regressions/"$t"/*; do
        [[ -f $r ]] || continue
        if ! TMPDIR=$SCRATCH/tmp cargo fuzz run -s none "$t" "$r" -- -runs=1 \
            >"$SCRATCH/regression.log" 2>&1; then
            failed+=("$t:${r##*/}")
            echo "fuzz: $t FAILED on regression input $r:"
            why "$SCRATCH/regression.log"
        fi
    done
    runs=$((RUNS[$t] * SCALE))
    mkdir -p "$SCRATCH/corpus/$t"
    log=$SCRATCH/$t.log
    start=$(ms)
    status=0
    TMPDIR=$SCRATCH/tmp cargo fuzz run -s none "$t" "$SCRATCH/corpus/$t" "fuzz/corpus/$t" -- \
        -runs="$runs" -max_total_time="$MAX_TIME" -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    took=$(($(ms) - start))
    cases=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cases=${cases:-0}
    rate=$((cases * 1000 / (took > 0 ? took : 1)))
    total_cases=$((total_cases + cases))
    total_ms=$((total_ms + took))
    if [[ $status -ne 0 ]]; then
        failed+=("$t")
        echo "fuzz: $t FAILED after $cases cases, $(secs $took) s (exit $status):"
        why "$log"
        mkdir -p "fuzz/artifacts/$t"
        cp "$log" "fuzz/artifacts/$t/fuzz.log"
        echo "    whole log: fuzz/artifacts/$t/fuzz.log"
    else
        note=""
        [[ $cases -ge $runs ]] || note="  (stopped by -max_total_time=$MAX_TIME before $runs)"
        printf 'fuzz: %-14s %9s cases %6s s %8s/s  ok%s\n' \
            "$t" "$cases" "$(secs $took)" "$rate" "$note"
    fi
done
echo "fuzz: total $total_cases cases in $(secs $total_ms) s of fuzzing" \
    "(+ $(secs $build_ms) s build)"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]}; reproducers in fuzz/artifacts/<target>/, rerun one with:" \
        "cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>" >&2
    exit 1
fi
