"""A fresh collector database per test, on SQLite or on the machine's PostgreSQL server.

PostgreSQL: EDGED_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test, trust auth) is
the maintenance connection; each test gets its own database, created empty and dropped after.
With psycopg missing or no server answering, PostgreSQL tests skip and say why.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from edged.collector.dburl import DbTarget, db_target
from edged.collector.dialect import pg_sql

BACKENDS = ("sqlite", "postgresql")
PG_ADMIN_URL = os.environ.get("EDGED_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'edged[postgres]')"
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL server at {PG_ADMIN_URL} ({exc}); scripts/test starts it"
    return None


@dataclass(frozen=True, slots=True)
class CollectorDb:
    """One test's collector database: its target (URL, local files) and a way to look inside."""

    backend: str
    target: DbTarget

    @property
    def url(self) -> str:
        return self.target.url

    @property
    def target_dir(self) -> Path:
        """A directory of this database's own: the SQLite file's, or PostgreSQL's state_dir."""
        return Path(self.target.local).parent

    @property
    def config_lines(self) -> str:
        """The `[collector]` keys of a config file for this database."""
        lines = f'db = "{self.url}"\n'
        if self.target.postgres:
            lines += f'state_dir = "{Path(self.target.local).parent}"\n'
        return lines

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql` (`?` placeholders) on a connection of its own."""
        if not self.target.postgres:
            with sqlite3.connect(self.target.path) as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(pg_sql(sql), params)  # type: ignore[call-overload]
            return [tuple(r) for r in cur.fetchall()] if cur.description else []


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def fresh_collector_db(backend: str, tmp_path: Path) -> Iterator[CollectorDb]:
    """An empty collector database (nothing created in it yet), removed afterwards."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        path = str(tmp_path / "collector.db")
        yield CollectorDb(backend, db_target(f"sqlite:///{path}"))
        return
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    name = f"edged_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    state = tmp_path / "collector-state"
    state.mkdir(exist_ok=True)
    try:
        yield CollectorDb(backend, db_target(_with_database(PG_ADMIN_URL, name), str(state)))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


def create_empty_postgres_database(db: CollectorDb) -> None:
    """Create `db`'s database again, empty, after a test dropped it (a lost database)."""
    import psycopg

    name = urlsplit(db.url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]


def drop_postgres_database(db: CollectorDb) -> None:
    """Drop `db`'s database, ending its connections (a lost database)."""
    import psycopg

    name = urlsplit(db.url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]
