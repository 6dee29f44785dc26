#!/usr/bin/env bash
# setup-venv.sh — makes <repo>/.venv with python-can and msgpack, the interop peer's
# interpreter, and cantools (the DBC decoder canmc's --dbc is checked against).
# Idempotent: does nothing when the venv already imports all three.
#
# Usage: tools/setup-venv.sh    (prints the interpreter's path on stdout)
# Env:   PYTHON (default python3) creates the venv; PIP_ARGS are passed to pip install.
set -euo pipefail

REPO=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
VENV=$REPO/.venv
PY=$VENV/bin/python
# python-can 4.x is the wire format canmc must match (SPEC §2.1).
REQS=("python-can>=4.6,<5" "msgpack>=1.0" "cantools>=39,<46")

if [[ -x "$PY" ]] && "$PY" -c 'import can, msgpack, cantools' 2>/dev/null; then
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
"$PY" -c 'import can, msgpack, cantools; print("setup-venv: python-can", can.__version__, "cantools", cantools.__version__, file=__import__("sys").stderr)'
echo "$PY"
