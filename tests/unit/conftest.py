"""Fixtures shared by the unit tests of the collector's store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.collector.store import CollectorStore


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "collector.db")


@pytest.fixture
def store(db_path: str) -> Iterator[CollectorStore]:
    """A collector store on a fresh SQLite file, closed after the test."""
    s = CollectorStore.open(db_path, received_by="c1")
    yield s
    s.close()
