from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto


def pytest_configure(config: pytest.Config) -> None:
    """python-escpos pickles its printer database into a new temp folder on each import; give
    this run (and the daemons it spawns) one folder, filled here before any child starts, so
    that no child reads a pickle another is still writing."""
    if "ESCPOS_CAPABILITIES_PICKLE_DIR" not in os.environ:
        os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = tempfile.mkdtemp(prefix="edged-escpos-")
    import escpos.capabilities  # noqa: F401


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port, killed after the test."""
    b = Mosquitto(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
