"""Fixtures shared by the unit tests of the collector's store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.collector.store import CollectorStore
from tests.support.collectordb import CollectorDb


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    """A SQLite collector database's path, for what only SQLite has (files, WAL, PRAGMAs)."""
    return str(tmp_path / "collector.db")


@pytest.fixture
def db(collector_db: CollectorDb) -> CollectorDb:
    """The test's collector database, on each backend."""
    return collector_db


@pytest.fixture
def store(db: CollectorDb) -> Iterator[CollectorStore]:
    """A collector store on a fresh database (SQLite, then PostgreSQL), closed after the test."""
    s = CollectorStore.open(db.target, received_by="c1")
    yield s
    s.close()
