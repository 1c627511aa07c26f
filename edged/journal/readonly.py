"""Reading a journal file beside the daemon (running or not): read-only, one snapshot.

A technician in group `edged` may read the journal but not write its directory. With the
daemon stopped, SQLite then cannot create the `-shm` index that a read-only WAL reader needs;
when no `-wal` file holds anything (a clean stop checkpoints it away), every committed entry
is in the main file and SQLite's `immutable=1` reads it without that index.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from edged.errors import JournalError
from edged.journal import state
from edged.journal.preflight import lost_wal, wal_holds_frames
from edged.journal.rows import ENTRY_SELECT, StoredEntry, row_entry

# What SQLite says when a read-only WAL reader may not create the -shm file.
_NO_SHM = frozenset({"SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT", "SQLITE_CANTOPEN"})


def file_bytes(path: str | Path) -> int:
    """The journal's size on disk: the database plus its write-ahead log."""
    total = os.stat(path).st_size
    with contextlib.suppress(FileNotFoundError):
        total += os.stat(f"{path}-wal").st_size
    return total


def _open(path: Path, mode: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("SELECT store_id FROM identity").fetchall()  # opens the WAL index, if any
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an edged journal; JournalError says what is wrong."""
    path = Path(path)
    if not state.check_file(path):
        raise JournalError(f"journal {path}: no such journal (missing or empty file)")
    try:
        return _open(path, "mode=ro")
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            if not wal_holds_frames(path):
                raise lost_wal(path, None) from None
            raise JournalError(f"journal {path}: not an edged journal ({exc})") from None
        if getattr(exc, "sqlite_errorname", "") not in _NO_SHM:
            raise state.describe(path, exc) from None
        if wal_holds_frames(path):
            raise JournalError(
                f"journal {path}: cannot read it as this user while {path.name}-wal holds "
                "sales not yet in the main file (SQLite must create its -shm index there); "
                "run as root or as user edged, or start edged"
            ) from None
    except sqlite3.Error as exc:
        raise state.describe(path, exc) from None
    try:
        return _open(path, "immutable=1")
    except sqlite3.Error as exc:
        raise state.describe(path, exc) from None


STORE_CLOCK_SCHEMA = 5  # the journal schema that keeps the store's clock at the last ack
ADOPTION_SCHEMA = 6  # the journal schema with the `adoption` table


@dataclass(frozen=True, slots=True)
class OutboxState:
    acked_upto: int
    last_ack_at: str | None
    anchor_seq: int  # entries up to here were purged after their ack
    last_ack_store_at: str | None = None  # the store's clock at that ack (schema 5 on)


class JournalReader:
    """`with JournalReader(path) as j:` the identity, outbox and entries of one snapshot."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> JournalReader:
        self._conn = connect_readonly(self.path)
        self._conn.execute("BEGIN")  # one snapshot for everything read through it
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self._conn.close()

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        assert self._conn is not None, "use `with JournalReader(path)`"
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise state.describe(self.path, exc) from None

    def identity(self) -> tuple[str, str]:
        """(store_id, terminal_id) the journal belongs to."""
        ((store, terminal),) = self._rows("SELECT store_id, terminal_id FROM identity")
        return store, terminal

    def outbox(self) -> OutboxState:
        ((acked, last_ack_at, anchor),) = self._rows(
            "SELECT acked_upto, last_ack_at, anchor_seq FROM outbox"
        )
        ((version,),) = self._rows("PRAGMA user_version")
        store_at = None
        if version >= STORE_CLOCK_SCHEMA:
            ((store_at,),) = self._rows("SELECT last_ack_store_at FROM outbox")
        return OutboxState(acked, last_ack_at, anchor, store_at)

    def adoption(self) -> tuple[str, int | None] | None:
        """(state, store_upto) of a journal made pending adoption (state `pending`, `adopted`
        or `none`); None for a journal that never was (edged.journal.adoption)."""
        ((version,),) = self._rows("PRAGMA user_version")
        if version < ADOPTION_SCHEMA:
            return None
        rows = self._rows("SELECT state, store_upto FROM adoption")
        return (str(rows[0][0]), rows[0][1]) if rows else None

    def last_seq(self) -> int:
        """The newest seq, counting purged entries (0 for an empty journal)."""
        ((last,),) = self._rows(
            "SELECT max(coalesce((SELECT max(seq) FROM entries), 0), anchor_seq) FROM outbox"
        )
        return int(last)

    def entries(self, first: int, last: int, limit: int | None = None) -> Iterator[StoredEntry]:
        """Entries with first <= seq <= last that are still in the file, oldest first; a
        damaged row is an entry with its `damage` said."""
        rows = self._rows(
            f"SELECT {ENTRY_SELECT} FROM entries WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
            (first, last, -1 if limit is None else limit),
        )
        for row in rows:
            yield row_entry(row)

    def entry(self, seq: int) -> StoredEntry | None:
        return next(self.entries(seq, seq), None)

    def newest(self) -> StoredEntry | None:
        last = self.last_seq()
        return self.entry(last) if last else None
