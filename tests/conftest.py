from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port, killed after the test."""
    b = Mosquitto(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()
