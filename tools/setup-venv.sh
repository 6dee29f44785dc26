#!/usr/bin/env bash
# setup-venv.sh — makes <repo>/.venv with python-can and msgpack (the interop peer's
# interpreter), asammdf (MF4 peer, and what python-can's MF4Reader/MF4Writer need) and
# duckdb (reads canmc's Parquet in the tests). Idempotent: does nothing when the venv
# already imports them all.
#
# Usage: tools/setup-venv.sh    (prints the interpreter's path on stdout)
# Env:   PYTHON (default python3) creates the venv; PIP_ARGS are passed to pip install;
#        SPARK=1 also installs pyspark (docs/data-lake.md's Spark run; needs Java 17).
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
VENV=$REPO/.venv
PY=$VENV/bin/python
# python-can 4.x is the wire format canmc must match (SPEC §2.1).
REQS=("python-can>=4.6,<5" "msgpack>=1.0" "asammdf>=8" "duckdb>=1.1")
IMPORTS="can, msgpack, asammdf, duckdb"
if [[ "${SPARK:-0}" == 1 ]]; then
    REQS+=("pyspark>=3.5")
    IMPORTS+=", pyspark"
fi

if [[ -x "$PY" ]] && "$PY" -c "import $IMPORTS" 2>/dev/null; then
    echo "$PY"
    exit 0
fi
if [[ ! -x "$PY" ]]; then
    rm -rf "$VENV"
    "${PYTHON:-python3}" -m venv "$VENV" >&2 || {
        echo "setup-venv: '${PYTHON:-python3} -m venv' failed; on Debian: apt-get install python3-venv" >&2
        exit 1
    }
fi
# shellcheck disable=SC2086
"$PY" -m pip install --disable-pip-version-check --quiet ${PIP_ARGS:-} "${REQS[@]}" >&2
"$PY" -c "import $IMPORTS" >&2
"$PY" -c 'import can, msgpack; print("setup-venv: python-can", can.__version__, file=__import__("sys").stderr)'
echo "$PY"
