"""A consistent copy of the journal, taken beside the running daemon (`edgectl journal backup`).

Copying `journal.db` with cp misses the sales still in its `-wal` and may catch a page half
written; SQLite's `VACUUM INTO` writes one read snapshot as a complete database instead. It
reads through a read-only connection, so the daemon's writer is never blocked. The copy is
written under a temporary name, checked (integrity and the whole chain), and only then given
its name; it needs no `-wal`, and it is marked closed so that edged opens it after a restore.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

from edged.errors import ChainError, JournalError
from edged.files import create_new, sync_folder
from edged.journal import state
from edged.journal.preflight import check_wal_present
from edged.journal.readonly import connect_readonly
from edged.journal.verify import VerifyReport, verify_journal


def backup_journal(source: Path, target: Path, *, replace: bool = False) -> VerifyReport:
    """Copy the journal at `source` to `target` (0640) and verify the copy.

    JournalError if `target` exists (unless `replace`) or the copy cannot be made; ChainError
    if the copy (so the journal) has a broken chain: the copy is then written all the same.
    """
    if target.exists() and not replace:
        raise JournalError(f"{target} exists; choose another name, or --force to replace it")
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    try:
        os.close(create_new(partial))
        _copy(source, partial)
        _seal(partial)
        try:
            report, broken = verify_journal(partial), None
        except ChainError as exc:
            report, broken = None, exc
        if replace:
            os.replace(partial, target)
        else:
            os.link(partial, target)
        sync_folder(target.parent)
    except FileExistsError:
        raise JournalError(
            f"{target} exists; choose another name, or --force to replace it"
        ) from None
    except OSError as exc:
        raise JournalError(f"cannot write the copy {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    if broken is not None:
        raise broken
    assert report is not None
    return report


def _copy(source: Path, partial: Path) -> None:
    with closing(connect_readonly(source)) as conn:
        try:
            check_wal_present(source, conn)  # never launder a lost -wal into a "closed" copy
            # query_only forbids VACUUM INTO's writes to the copy; the source stays mode=ro.
            conn.execute("PRAGMA query_only=0")
            conn.execute("VACUUM INTO ?", (str(partial),))  # one read snapshot
        except sqlite3.Error as exc:
            raise state.describe(source, exc, f"copying it to {partial.name}") from None


def _seal(partial: Path) -> None:
    """Mark the copy closed (it is whole without a -wal), check it, and put it on disk."""
    try:
        with closing(sqlite3.connect(partial, isolation_level=None)) as conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            if "run_state" in tables:
                conn.execute("UPDATE run_state SET open = 0")
            problems = [row for (row,) in conn.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        raise state.describe(partial, exc, "checking the copy") from None
    if problems != ["ok"]:
        raise JournalError(f"the copy {partial} failed SQLite's integrity check: {problems[:3]}")
    fd = os.open(partial, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
