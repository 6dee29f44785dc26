#!/usr/bin/env bash
# test.sh — the README's test command: the python-can venv, then every test in release
# mode (the network tests are timing-sensitive; debug builds are too slow for them).
#
# Usage: tools/test.sh [extra cargo test args...]
# Env:   CANMC_PYTHON overrides the venv interpreter the interop tests use.
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
cd "$REPO"
if [[ -z "${CANMC_PYTHON:-}" ]]; then
    bash tools/setup-venv.sh >/dev/null
fi
# --no-fail-fast: one failing test binary must not hide the results of the others.
exec cargo test --release --no-fail-fast "$@"
