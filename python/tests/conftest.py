"""Shared checks for canmc's Python tests.

Tests that send packets take the ``lab`` fixture: it fails (never skips) unless the test
runs inside a private network namespace (``tools/netlab.sh run``, which the README's
test command uses), so python-can's multicast never reaches a real network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def in_private_netns() -> bool:
    mine = os.readlink("/proc/self/ns/net")
    outer = os.environ.get("NETLAB_OUTER_NS")
    try:
        init = os.readlink("/proc/1/ns/net")
    except OSError:
        init = None
    return bool(outer) and mine != outer and mine != init


def require_lab() -> None:
    if not in_private_netns():
        pytest.fail(
            "this test sends multicast: run it inside the lab "
            "(bash tools/netlab.sh run .venv/bin/python -m pytest python/tests)",
            pytrace=False,
        )


@pytest.fixture
def lab() -> None:
    require_lab()


_PORT = [41000 + (os.getpid() % 500) * 8]


@pytest.fixture
def port() -> int:
    """A UDP port no other test of this run uses."""
    _PORT[0] += 1
    return _PORT[0]
