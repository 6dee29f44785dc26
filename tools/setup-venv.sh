#!/usr/bin/env bash
# setup-venv.sh — makes <repo>/.venv with python-can and msgpack (the interop peer's
# interpreter), the tools the Python package's tests use (maturin, numpy, pyarrow,
# pytest, ruff), python-can 4.6.1's own test suite (its sdist, unpacked into
# .venv/pycan-sdist), cantools (the DBC decoder canmc's --dbc is checked against), asammdf
# (the MF4 peer, also what python-can's MF4Reader/MF4Writer need), duckdb (reads canmc's
# Parquet in tests/offline/lake.rs), and builds and installs the `canmc` Python package (python/)
# into it with `maturin develop --release` (incremental: cargo rebuilds what changed).
# Idempotent.
#
# Usage: tools/setup-venv.sh    (prints the interpreter's path on stdout)
# Env:   PYTHON (default python3) creates the venv; PIP_ARGS are passed to pip install.
#        CANMC_PY_BUILD=0 skips building the canmc package.
#        SPARK=1 also installs pyspark (docs/data-lake.md's Spark run; needs Java 17).
#        CARGO_TARGET_DIR is honoured (default python/target).
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
VENV=$REPO/.venv
PY=$VENV/bin/python
# python-can 4.x is the wire format canmc must match (SPEC §2.1).
REQS=("python-can>=4.6,<5" "msgpack>=1.0" "maturin>=1.5,<2" "numpy>=1.21" "pyarrow>=10"
    "pytest>=7" "pytest-timeout>=2" "ruff>=0.4" "cantools>=39,<46" "asammdf>=8" "duckdb>=1.1")
IMPORTS="can, msgpack, numpy, pyarrow, pytest, pytest_timeout, cantools, asammdf, duckdb"
if [[ "${SPARK:-0}" == 1 ]]; then
    REQS+=("pyspark>=3.5")
    IMPORTS+=", pyspark"
fi
PYCAN_SDIST=python_can-4.6.1

build_canmc() {
    [[ ${CANMC_PY_BUILD:-1} != 0 ]] || return 0
    # The package's Rust half compiles against the main crate (python/Cargo.toml).
    (cd "$REPO/python" && VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH \
        "$VENV/bin/maturin" develop --release --quiet >&2) || {
        echo "setup-venv: building the canmc Python package failed (needs cargo)" >&2
        exit 1
    }
}

fetch_pycan_tests() {
    local dir=$VENV/pycan-sdist
    [[ -f $dir/$PYCAN_SDIST/test/back2back_test.py ]] && return 0
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    "$PY" -m pip download --disable-pip-version-check --quiet --no-deps \
        --no-binary :all: ${PIP_ARGS:-} -d "$dir" "python-can==${PYCAN_SDIST#python_can-}" >&2
    tar -xzf "$dir/$PYCAN_SDIST.tar.gz" -C "$dir"
}

if [[ -x "$PY" ]] && "$PY" -c "import $IMPORTS" 2>/dev/null &&
    [[ -x $VENV/bin/maturin && -x $VENV/bin/ruff ]]; then
    fetch_pycan_tests
    build_canmc
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
"$PY" -c 'import can, msgpack; print("setup-venv: python-can", can.__version__, file=__import__("sys").stderr)'
fetch_pycan_tests
build_canmc
echo "$PY"
