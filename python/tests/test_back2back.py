"""python-can's own back-to-back suite (``test/back2back_test.py`` of the python-can
4.6.1 source distribution, unmodified) as the judge of ``interface="canmc"``.

``tools/setup-venv.sh`` downloads and unpacks the sdist into ``.venv/pycan-sdist``
(override with ``CANMC_PYCAN_TESTS=<dir of back2back_test.py>``). Each class below only
chooses the two interfaces and the group, as python-can's own subclasses do; the test
bodies are python-can's. The interface for canmc comes from python-can's own
``CAN_CONFIG`` environment variable (``{"iface": ...}``; udp_multicast ignores it):
in the lab, IPv4 multicast goes through ``lo`` and IPv6 through ``v0``
(tools/netlab.sh). Runs only inside the lab; outside, every test fails.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from conftest import REPO, in_private_netns

TESTS = Path(
    os.environ.get("CANMC_PYCAN_TESTS") or REPO / ".venv/pycan-sdist/python_can-4.6.1/test"
)


def _load_suite():
    init = TESTS / "__init__.py"
    if not (TESTS / "back2back_test.py").exists():
        raise RuntimeError(
            f"python-can's test suite is missing: {TESTS}/back2back_test.py; run "
            "`bash tools/setup-venv.sh` (downloads the python-can 4.6.1 sdist) or set "
            "CANMC_PYCAN_TESTS"
        )
    spec = importlib.util.spec_from_file_location(
        "pycan_suite", init, submodule_search_locations=[str(TESTS)]
    )
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["pycan_suite"] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module("pycan_suite.back2back_test")


b2b = _load_suite()

V4 = "239.74.163.2"
# python-can's own IPv6 class uses this interface-local group; so do we.
V6 = b2b.BasicTestUdpMulticastBusIPv6.HOST_LOCAL_MCAST_GROUP_IPv6


class _Lab:
    """Fails every test outside the lab; sets canmc's interface for the family."""

    IFACE = "lo"

    @classmethod
    def setUpClass(cls):
        if not in_private_netns():
            raise RuntimeError(
                "python-can's multicast may only run inside the lab: "
                "bash tools/netlab.sh run .venv/bin/python -m pytest python/tests"
            )
        cls._saved_config = os.environ.get("CAN_CONFIG")
        os.environ["CAN_CONFIG"] = json.dumps({"iface": cls.IFACE})
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        if cls._saved_config is None:
            os.environ.pop("CAN_CONFIG", None)
        else:
            os.environ["CAN_CONFIG"] = cls._saved_config
        super().tearDownClass()


def _own_messages_unsupported(self):
    # What python-can's own udp_multicast classes expect: bus3 (INTERFACE_2) cannot
    # receive its own messages.
    with self.assertRaises(b2b.CanInterfaceNotImplementedError):
        b2b.Back2BackTestCase.test_unique_message_instances(self)


# --- baseline: python-can's udp_multicast on both sides (its own classes) -----------


class TestPycanPycanV4(_Lab, b2b.BasicTestUdpMulticastBusIPv4):
    pass


class TestPycanPycanV6(_Lab, b2b.BasicTestUdpMulticastBusIPv6):
    IFACE = "v0"


# --- canmc on both sides --------------------------------------------------------------


class TestCanmcCanmcV4(_Lab, b2b.Back2BackTestCase):
    INTERFACE_1 = INTERFACE_2 = "canmc"
    CHANNEL_1 = CHANNEL_2 = V4


class TestCanmcCanmcV6(_Lab, b2b.Back2BackTestCase):
    IFACE = "v0"
    INTERFACE_1 = INTERFACE_2 = "canmc"
    CHANNEL_1 = CHANNEL_2 = V6


class TestCanmcCanmcThreadSafeV4(_Lab, b2b.TestThreadSafeBus):
    INTERFACE_1 = INTERFACE_2 = "canmc"
    CHANNEL_1 = CHANNEL_2 = V4


# --- udp_multicast <-> canmc, both orders ---------------------------------------------


class TestPycanCanmcV4(_Lab, b2b.Back2BackTestCase):
    INTERFACE_1, INTERFACE_2 = "udp_multicast", "canmc"
    CHANNEL_1 = CHANNEL_2 = V4


class TestCanmcPycanV4(_Lab, b2b.Back2BackTestCase):
    INTERFACE_1, INTERFACE_2 = "canmc", "udp_multicast"
    CHANNEL_1 = CHANNEL_2 = V4
    test_unique_message_instances = _own_messages_unsupported


class TestPycanCanmcV6(_Lab, b2b.Back2BackTestCase):
    IFACE = "v0"
    INTERFACE_1, INTERFACE_2 = "udp_multicast", "canmc"
    CHANNEL_1 = CHANNEL_2 = V6


class TestCanmcPycanV6(_Lab, b2b.Back2BackTestCase):
    IFACE = "v0"
    INTERFACE_1, INTERFACE_2 = "canmc", "udp_multicast"
    CHANNEL_1 = CHANNEL_2 = V6
    test_unique_message_instances = _own_messages_unsupported
