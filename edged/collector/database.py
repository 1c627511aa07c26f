"""Opening the collector's database, SQLite or PostgreSQL, and checking it is still ours.

Both are opened the same way: a database that the marker (dbfile.py) says existed but is
missing or has another `db_id` is refused (CollectorDbChangedError, exit 74) unless an admin
said `init`. While running, `check()` runs before and after every commit. SQLite: the file at
the path must still be the file opened (device and inode, with its WAL). PostgreSQL: a server
cannot lose a database under an open connection; a connection that broke (server restart, a
dropped database) is made again and the database's `db_id` checked before anything more is
stored or acknowledged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from edged.collector.dbfile import (
    WAL_SUFFIX,
    FileIdentity,
    check_identity,
    check_may_open,
    dev_ino,
    marker_path,
    read_marker,
    write_marker,
)
from edged.collector.dburl import DbTarget
from edged.collector.dialect import SQLITE, Conn, Dialect, PgConn, postgres
from edged.collector.schema import (
    RESTORE_HINT,
    CollectorDbChangedError,
    CollectorStoreError,
    db_identity,
    prepare,
)

log = structlog.get_logger(__name__)

_NO_DATABASE = "3D000"  # PostgreSQL's invalid_catalog_name: the database does not exist


@dataclass(slots=True)
class Database:
    """An open collector database: its connection, dialect, and what it must stay."""

    target: DbTarget
    conn: Conn
    dialect: Dialect
    db_id: str
    files: FileIdentity | None = None  # SQLite only
    _pg: PgConn | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The database as messages name it: the SQLite path, or the PostgreSQL URL."""
        return self.target.path

    @classmethod
    def open(cls, target: DbTarget, *, init: bool = False) -> Database:
        """Open (creating only on a first start or with `init`), migrate, check the identity."""
        if target.postgres:
            return cls._open_postgres(target, init=init)
        return cls._open_sqlite(target, init=init)

    @classmethod
    def _open_sqlite(cls, target: DbTarget, *, init: bool) -> Database:
        path = target.path
        parent = Path(path).parent
        if not parent.is_dir():
            raise CollectorStoreError(
                f"cannot open collector db {path}: directory {parent} does not exist; create it"
            )
        had = read_marker(path)
        check_may_open(path, had=had, init=init)
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"cannot open collector db {path}: {exc}") from exc
        try:
            prepare(conn, SQLITE, path, may_create=init or had is None)
            found = db_identity(conn)
            check_identity(path, had=had, found=found, init=init)
            files = FileIdentity.of(path)
        except sqlite3.Error as exc:
            conn.close()
            raise CollectorStoreError(f"cannot prepare collector db {path}: {exc}") from exc
        except CollectorStoreError:
            conn.close()
            raise
        if files is None:
            conn.close()
            raise CollectorDbChangedError(f"collector db {path} was deleted while it was opened")
        _adopt(path, path, had, found)
        return cls(target, conn, SQLITE, found, files)

    @classmethod
    def _open_postgres(cls, target: DbTarget, *, init: bool) -> Database:
        try:
            dialect = postgres()
        except ImportError as exc:
            raise CollectorStoreError(
                f"collector db {target.url}: PostgreSQL needs psycopg 3 "
                "(pip install 'edged[postgres]', or apt-get install python3-psycopg)"
            ) from exc
        local = target.local_files()
        if not Path(local).parent.is_dir():
            raise CollectorStoreError(
                f"collector state_dir {Path(local).parent} does not exist; create it"
            )
        had = read_marker(local)
        try:
            pg = PgConn(target.url)
        except dialect.operational_error as exc:
            raise _connect_error(target, had, exc) from exc
        try:
            found = _prepare_postgres(pg, dialect, target, had=had, init=init)
        except BaseException:
            pg.close()
            raise
        _adopt(local, target.url, had, found)
        return cls(target, pg, dialect, found, None, pg)

    def check(self) -> None:
        """Raise CollectorDbChangedError if the database is not the one opened any more."""
        if self._pg is not None:
            self._check_postgres(self._pg)
            return
        assert self.files is not None
        path = self.target.path
        try:
            self.files.check(path)
        except CollectorDbChangedError:
            # Our WAL, still named after the path, would be read as part of whatever file is
            # put there (a backup restored, another database): empty it into our own file.
            if self.files.wal is not None and self.files.wal == dev_ino(path + WAL_SUFFIX):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raise

    def _check_postgres(self, pg: PgConn) -> None:
        if not pg.broken:
            return
        log.warning("collector_db_reconnecting", db=self.target.url)
        try:
            pg.reconnect()
        except self.dialect.operational_error as exc:
            had = self.db_id
            raise _connect_error(self.target, had, exc) from exc
        found = _prepare_postgres(pg, self.dialect, self.target, had=self.db_id, init=False)
        if found != self.db_id:  # cannot be: _prepare_postgres refuses it
            raise CollectorDbChangedError(f"collector db {self.target.url} was replaced")

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        else:
            assert isinstance(self.conn, sqlite3.Connection)
            self.conn.close()


def _prepare_postgres(
    pg: PgConn, dialect: Dialect, target: DbTarget, *, had: str | None, init: bool
) -> str:
    """Migrate and return the database's db_id, refused unless it is the one the marker names."""
    try:
        prepare(pg, dialect, target.url, may_create=init or had is None)
        found = db_identity(pg)
    except dialect.errors as exc:
        raise CollectorStoreError(f"cannot prepare collector db {target.url}: {exc}") from exc
    check_identity(target.local_files(), had=had, found=found, init=init, name=target.url)
    return found


def _connect_error(target: DbTarget, had: str | None, exc: Any) -> CollectorStoreError:
    """A connection refused: a database the marker names that is gone is a lost database."""
    # libpq reports a refused connection without a SQLSTATE: the server's text tells.
    missing = getattr(exc, "sqlstate", None) == _NO_DATABASE or "does not exist" in str(exc)
    if missing and had is not None:
        return CollectorDbChangedError(
            f"collector db {target.url} does not exist, but {marker_path(target.local_files())} "
            f"says this collector had it; create it empty and {RESTORE_HINT}"
        )
    return CollectorStoreError(f"cannot connect to collector db {target.url}: {exc}")


def _adopt(local: str, name: str, had: str | None, found: str) -> None:
    if found != had:
        write_marker(local, found)
        log.info("collector_db_adopted", db=name, db_id=found, previous=had)
