"""Fixtures of the daemon tests: a real Mosquitto per test and the calibrated tiny bundle."""

from tests.broker import broker  # noqa: F401
from tests.inspector.daemon_helpers import (  # noqa: F401
    collector,
    line_bundle,
    patchcore_line_bundle,
)
