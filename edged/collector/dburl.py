"""The collector's `db` URL: which database, and where its local files (identity marker, key) go.

`sqlite:///PATH` is a file; the marker and `collector.key` live next to it. `postgresql://...`
(or `postgres://`) is any libpq connection URL; a server has no directory of ours, so the
marker and the key live in `[collector] state_dir`. A password never goes into the URL (config
files are read by many): libpq takes it from its password file (`~/.pgpass`, `PGPASSFILE`, or
`passfile=` in the URL) or from `PGPASSWORD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edged.collector.schema import CollectorStoreError
from edged.config import SQLITE_URL_PREFIX, CollectorSection, db_url_problem

POSTGRES_LOCAL_NAME = "collector-postgresql"  # the marker is .collector-postgresql.identity


@dataclass(frozen=True, slots=True)
class DbTarget:
    """A parsed `db` URL. `local` names a path whose directory holds the collector's files (for
    SQLite the database file itself); "" if a PostgreSQL collector was given no state_dir."""

    url: str
    local: str

    @property
    def postgres(self) -> bool:
        return not self.url.startswith(SQLITE_URL_PREFIX)

    @property
    def path(self) -> str:
        """The SQLite file; for PostgreSQL the URL (what messages name)."""
        return self.url.removeprefix(SQLITE_URL_PREFIX) if not self.postgres else self.url

    def local_files(self) -> str:
        """`local`, or a clear error if a PostgreSQL collector has no state_dir."""
        if not self.local:
            raise CollectorStoreError(
                f"collector db {self.url}: set [collector] state_dir (a directory for the "
                "collector's key and the identity of its database)"
            )
        return self.local


def db_target(url: str, state_dir: str = "") -> DbTarget:
    """The target of a `db` URL (config-resolved: an absolute SQLite path)."""
    problem = db_url_problem(url)
    if problem is not None:
        raise CollectorStoreError(f"collector db: {problem}")
    if url.startswith(SQLITE_URL_PREFIX):
        return DbTarget(url, url.removeprefix(SQLITE_URL_PREFIX))
    local = str(Path(state_dir) / POSTGRES_LOCAL_NAME) if state_dir else ""
    return DbTarget(url, local)


def as_target(db: str | DbTarget) -> DbTarget:
    """A target from a target, a `db` URL, or a bare SQLite path (tests and tools)."""
    if isinstance(db, DbTarget):
        return db
    if "://" in db:
        return db_target(db)
    return DbTarget(SQLITE_URL_PREFIX + db, db)


def configured(collector: CollectorSection) -> DbTarget:
    """The target of a loaded config's `[collector]` (its db URL and state_dir)."""
    return db_target(collector.db, collector.state_dir)
