"""What lies at the journal's path before SQLite opens it: nothing, a journal, or a refusal.

SQLite cannot see a lost `-wal`: the main file alone opens without complaint, minus every sale
that was only in the `-wal` (before the first checkpoint, minus the tables themselves). So the
files decide. A journal is created whole, with its schema in the main file (edged.journal.create);
from its open until a clean close its main file says `run_state.open = 1`, and its `-wal` is
never empty while it is open (the open is checkpointed with RESTART, never TRUNCATE). So "open"
in the main file with no `-wal` content beside it means the `-wal` was lost, unless the seq mark
(seqmark.py) ends exactly where the main file ends: then SQLite itself checkpointed and removed
the `-wal` at a close that could not write "closed" (a full disk), and nothing is missing.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import structlog

from edged.errors import JournalError
from edged.journal import state
from edged.journal.seqmark import read_mark

log = structlog.get_logger(__name__)

# What to do about a journal whose -wal is lost; {wal} is the missing file's name.
_WHAT_TO_DO = (
    "Look for {wal} (a crash with a clean-up, or a copy of the main file alone, loses it) and "
    "put it back beside the journal; or restore a copy made with `edgectl journal backup`. "
    "Only to give up those sales and start a new journal at seq 1, run "
    "`edgectl journal init --force` (it keeps the old files aside); the store will then refuse "
    "the new journal's sales as seq conflicts until edged can continue past the store's seq"
)


class WalLostError(JournalError):
    """The journal's `-wal` file, and the sales that were only in it, is missing."""


def wal_path(path: Path) -> Path:
    return path.with_name(f"{path.name}-wal")


def wal_holds_frames(path: Path) -> bool:
    """True if the journal's `-wal` exists with content (SQLite replays it on open)."""
    try:
        return os.stat(wal_path(path)).st_size > 0
    except FileNotFoundError:
        return False


def preflight(path: Path) -> bool:
    """True if `path` holds a journal to open, False if a new one is to be created there.

    Raises JournalError (WalLostError) for anything that must not be opened, let alone replaced.
    """
    wal = wal_path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if wal.exists():
            raise JournalError(
                f"journal {path}: missing, but {wal.name} is there: the main file was moved or "
                "deleted, and the -wal alone is not a journal. Put the main file back; to start "
                "a new journal anyway, run `edgectl journal init --force`"
            ) from None
        return False
    except OSError as exc:
        raise JournalError(
            f"journal {path}: cannot read ({exc.strerror}); check its owner and mode"
        ) from None
    if size == 0:
        raise JournalError(
            f"journal {path}: the file is empty (0 bytes). edged never leaves an empty journal, "
            "so it was truncated or made by another program. Restore a copy made with "
            "`edgectl journal backup`, or start a new journal with `edgectl journal init --force`"
        )
    state.check_file(path)  # a SQLite file, not something else
    if not wal_holds_frames(path):
        _check_main_file(path)
    return True


def _check_main_file(path: Path) -> None:
    """With no `-wal` content the main file is the whole journal: is it one, and complete?"""
    try:
        uri = f"{path.resolve().as_uri()}?immutable=1"
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            ((version,),) = conn.execute("PRAGMA user_version").fetchall()
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            if "run_state" not in tables:
                was_open = False
            else:
                ((was_open,),) = conn.execute("SELECT open FROM run_state").fetchall()
            last = last_seq(conn) if "entries" in tables else 0
            complete = bool(was_open) and _complete_by_mark(conn, path, last)
    except sqlite3.Error as exc:
        raise state.describe(path, exc) from None
    if version == 0 and not tables:
        raise lost_wal(path, None)
    if complete:
        log.warning(
            "journal_unclean_close_recovered",
            path=str(path),
            last_seq=last,
            hint="the last close could not mark the journal closed (a full disk?), but its "
            "-wal had reached the main file: its seq mark ends at the same seq and hash, "
            "nothing was lost",
        )
    elif was_open:
        raise lost_wal(path, last)


def _complete_by_mark(conn: sqlite3.Connection, path: Path, last: int) -> bool:
    """True if the seq mark, written with every commit, ends where the main file ends: a -wal
    deleted by SQLite's checkpoint at close, not lost with sales in it."""
    mark = read_mark(path)
    if mark is None or mark.seq != last:
        return False
    row = conn.execute("SELECT hash FROM entries WHERE seq = ?", (last,)).fetchone()
    return row is not None and bytes(row[0]) == mark.hash


def last_seq(conn: sqlite3.Connection) -> int:
    """The newest seq in a journal, counting purged entries."""
    ((last,),) = conn.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM entries), 0), anchor_seq) FROM outbox"
    ).fetchall()
    return int(last)


def lost_wal(path: Path, main_last_seq: int | None) -> WalLostError:
    """The error for a journal whose `-wal` is gone (`main_last_seq` None: no tables at all)."""
    wal = wal_path(path).name
    if main_last_seq is None:
        found = (
            "holds no journal tables, and there is no -wal content beside it: this is the "
            "main file of a journal whose -wal was lost before its first checkpoint, so every "
            "sale in it is missing here"
        )
    else:
        found = (
            "was not closed cleanly, and there is no -wal content beside it: the -wal was "
            f"lost, and with it every sale after seq {main_last_seq} (the last one checkpointed "
            "into the main file)"
        )
    return WalLostError(f"journal {path}: {found}. {_WHAT_TO_DO.format(wal=wal)}")


def check_wal_present(path: Path, conn: sqlite3.Connection) -> None:
    """For readers: raise WalLostError if the journal read through `conn` lost its `-wal`."""
    if wal_holds_frames(path):
        return
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    if "run_state" not in tables:
        return
    ((was_open,),) = conn.execute("SELECT open FROM run_state").fetchall()
    # A daemon that starts meanwhile writes "open" and -wal content at once: look again.
    if was_open and not wal_holds_frames(path):
        last = last_seq(conn)
        if not _complete_by_mark(conn, path, last):  # else: an unclean close, nothing lost
            raise lost_wal(path, last)
