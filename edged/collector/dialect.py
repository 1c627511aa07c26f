"""What differs between the collector's two databases, SQLite and PostgreSQL, and nothing else.

Every module of the collector writes one SQL text for both: `?` placeholders, `ON CONFLICT`
upserts, `RETURNING`, savepoints and explicit BEGIN/COMMIT all mean the same on SQLite 3.35+
and PostgreSQL. What does not is kept here: how a write transaction starts and who waits for
whom (SQLite: one writer per file; PostgreSQL: a lock per terminal, so collectors sharing the
load wait only for each other's work on the same terminal), the column types of the schema
scripts, where the schema version lives, and the driver's error classes.

PostgreSQL is reached with psycopg 3's synchronous API from the collector's database thread,
the same model as sqlite3: one connection, autocommit on, transactions opened by the code.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

TerminalKey = tuple[str, str]

_PG_TYPES = {"INTEGER": "BIGINT", "BLOB": "BYTEA"}  # SQLite's INTEGER is 64-bit, PG's is not
_PG_TYPE_WORD = re.compile(r"\b(INTEGER|BLOB)\b")
_PG_VERSION_TABLE = "edged_schema"
INSERT_ROWS_MAX = 500  # SQLite rows a statement: 11 columns stay under its 32766 variables
_PG_MIGRATION_LOCK = 0x65646765  # any constant: one migration at a time per database


class Cursor(Protocol):
    """The part of a DB-API cursor the collector uses (sqlite3's and psycopg's both fit)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def close(self) -> None: ...


class Conn(Protocol):
    """A connection in autocommit mode whose `execute` takes `?` placeholders."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    @property
    def in_transaction(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """One database engine's differences; see SQLITE and postgres()."""

    name: str  # "sqlite" or "postgresql"
    begin_write: str  # starts a write transaction
    begin_read: str  # starts a read-only snapshot (the status report)
    errors: tuple[type[Exception], ...]  # anything the driver raises
    # Raised for the values bound, not by the database: the batch, not the store, is at fault.
    data_errors: tuple[type[Exception], ...]
    operational_error: type[Exception]  # the database failed (disk, connection, lock)

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def ddl(self, script: str) -> str:
        """A schema script (written with SQLite's types) in this dialect."""
        if not self.postgres:
            return script
        return _PG_TYPE_WORD.sub(lambda m: _PG_TYPES[m.group(1)], script)

    def extra_ddl(self, version: int) -> list[str]:
        """Statements this dialect adds to schema step `version`."""
        if self.postgres and version == 1:
            # SQLite's implicit rowid orders `problems` by insertion; PostgreSQL needs a column.
            return ["ALTER TABLE problems ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY"]
        return []

    def schema_version(self, conn: Conn) -> int:
        if not self.postgres:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        found = conn.execute("SELECT to_regclass(?)", (_PG_VERSION_TABLE,)).fetchone()[0]
        if found is None:
            return 0
        row = conn.execute(f"SELECT version FROM {_PG_VERSION_TABLE}").fetchone()
        return int(row[0]) if row is not None else 0

    def set_schema_version(self, conn: Conn, version: int) -> None:
        if not self.postgres:
            conn.execute(f"PRAGMA user_version = {int(version)}")
            return
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_PG_VERSION_TABLE} (version BIGINT NOT NULL)")
        conn.execute(f"DELETE FROM {_PG_VERSION_TABLE}")
        conn.execute(f"INSERT INTO {_PG_VERSION_TABLE} (version) VALUES (?)", (version,))

    def table_count(self, conn: Conn) -> int:
        """Tables in the collector's namespace (the file; PostgreSQL: the current schema)."""
        if not self.postgres:
            sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        else:
            sql = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        return int(conn.execute(sql).fetchone()[0])

    def insert_many(
        self,
        conn: Conn,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        returning: str,
    ) -> list[Any]:
        """INSERT `rows` in order, skipping any that conflicts (`ON CONFLICT DO NOTHING`);
        returns `returning` of the rows inserted. `columns` are (name, SQL type) pairs.

        SQLite: multi-row VALUES, INSERT_ROWS_MAX rows a statement. PostgreSQL: one statement
        over `unnest` of one array per column, whatever the count: its text stays the same, so
        it is prepared once, and no statement carries thousands of placeholders.
        """
        if not rows:
            return []
        names = ", ".join(name for name, _ in columns)
        tail = f" ON CONFLICT DO NOTHING RETURNING {returning}"
        if self.postgres:
            arrays = ", ".join(f"?::{kind}[]" for _, kind in columns)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){tail}"
            assert isinstance(conn, PgConn)
            arrays_of = [list(col) for col in zip(*rows, strict=True)]
            return [r[0] for r in conn.execute_binary(sql, arrays_of)]
        found: list[Any] = []
        one = "(" + ", ".join("?" * len(columns)) + ")"
        for start in range(0, len(rows), INSERT_ROWS_MAX):
            chunk = rows[start : start + INSERT_ROWS_MAX]
            values = ",".join([one] * len(chunk))
            params = [value for row in chunk for value in row]
            sql = f"INSERT INTO {table} ({names}) VALUES {values}{tail}"
            found += [r[0] for r in conn.execute(sql, params)]
        return found

    def lock_schema(self, conn: Conn) -> None:
        """Inside a write transaction: wait for any other migration of this database."""
        if self.postgres:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))

    def lock_terminals(self, conn: Conn, keys: Iterable[TerminalKey]) -> None:
        """Inside a write transaction: be the only writer of these terminals until it ends.

        SQLite's `BEGIN IMMEDIATE` has made this transaction the file's only writer already.
        On PostgreSQL one transaction-scoped advisory lock per terminal, taken in sorted order
        (no deadlock between collectors), serializes the read-modify-write of its state.
        """
        if not self.postgres:
            return
        names = {f"{s}/{t}".encode(errors="replace").decode() for s, t in keys}  # no surrogates
        for name in sorted(names):
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))


SQLITE = Dialect(
    name="sqlite",
    begin_write="BEGIN IMMEDIATE",
    begin_read="BEGIN",
    errors=(sqlite3.Error,),
    data_errors=(
        sqlite3.DataError,
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
    ),
    operational_error=sqlite3.OperationalError,
)


def postgres() -> Dialect:
    """The PostgreSQL dialect; CollectorStoreError-worthy ImportError if psycopg is missing."""
    import psycopg

    return Dialect(
        name="postgresql",
        begin_write="BEGIN",
        begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        errors=(psycopg.Error,),
        data_errors=(
            psycopg.DataError,
            psycopg.IntegrityError,
            psycopg.ProgrammingError,
        ),
        operational_error=psycopg.OperationalError,
    )


@lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (the collector's SQL has no `?` or `%` literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A psycopg connection that takes the collector's `?` SQL; `reconnect` swaps it in place,
    so the store and its pins keep the same object."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._conn = _pg_connect(conninfo)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        cur: Cursor = self._conn.execute(pg_sql(sql), parameters)
        return cur

    def execute_binary(self, sql: str, parameters: Sequence[Any]) -> Cursor:
        """`execute` in PostgreSQL's binary format: arrays of text need no escaping."""
        query = sql.replace("%", "%%").replace("?", "%b")  # parameters sent as binary too
        cur: Cursor = self._conn.cursor(binary=True).execute(query, parameters)
        return cur

    def copy_rows(
        self, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]
    ) -> None:
        """COPY `rows` into `table` in PostgreSQL's binary format; `columns` are (name, SQL
        type) pairs. A row the table refuses fails the whole COPY."""
        names = ", ".join(name for name, _ in columns)
        with self._conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([kind for _, kind in columns])
            for row in rows:
                copy.write_row(row)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self._conn.info.transaction_status != TransactionStatus.IDLE)

    @property
    def broken(self) -> bool:
        return bool(self._conn.closed or self._conn.broken)

    def reconnect(self) -> None:
        self._conn.close()
        self._conn = _pg_connect(self.conninfo)

    def close(self) -> None:
        self._conn.close()


def _pg_connect(conninfo: str) -> Any:
    import psycopg

    return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
