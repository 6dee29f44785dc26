#!/usr/bin/env bash
# test.sh — the README's test command: the Debian packages and Rust toolchain the tests
# need when they are missing (tools/install-deps.sh), the python-can venv, then every
# test in release
# mode (the network tests are timing-sensitive; debug builds are too slow for them), then
# a bounded libFuzzer run of every fuzz target (tools/fuzz.sh, docs/fuzzing.md: ~1.5 M
# cases; the first run also installs cargo-fuzz and builds the targets).
#
# Then the Python package's tests (python/tests, pytest) inside the network lab
# (tools/netlab.sh run): python-can's own back2back suite against canmc, the file
# plugins, canmc.read/record/replay/info.
#
# Usage: tools/test.sh [extra cargo test args...]
# Env:   CANMC_PYTHON overrides the venv interpreter the interop tests use (the
#        Python package must then be installed in it).
#        CANMC_PYTEST=0 skips the Python package's tests.
#        CANMC_FUZZ=0 skips the fuzz run (quick local runs).
# The fuzz run happens even when tests failed; the script fails if either did.
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
cd "$REPO"
# A fresh machine: install what is missing (root or sudo), nothing when all is there.
bash tools/install-deps.sh
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi
if [[ -z "${CANMC_PYTHON:-}" ]]; then
    bash tools/setup-venv.sh >/dev/null
fi
# --no-fail-fast: one failing test binary must not hide the results of the others.
tests=0
cargo test --release --no-fail-fast "$@" || tests=$?
pytests=0
if [[ ${CANMC_PYTEST:-1} != 0 ]]; then
    bash tools/netlab.sh run "${CANMC_PYTHON:-$REPO/.venv/bin/python}" -m pytest -q \
        -p no:cacheprovider python/tests || pytests=$?
fi
fuzz=0
if [[ ${CANMC_FUZZ:-1} != 0 ]]; then
    bash tools/fuzz.sh || fuzz=$?
fi
if [[ $tests -ne 0 || $pytests -ne 0 || $fuzz -ne 0 ]]; then
    echo "test.sh: FAILED (cargo test exit $tests, pytest exit $pytests, tools/fuzz.sh exit $fuzz)" >&2
    exit $((tests != 0 ? tests : pytests != 0 ? pytests : fuzz))
fi
