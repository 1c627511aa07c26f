"""Creating a journal whole, never over an existing file; setting an old one aside (init --force).

A new journal is built under a temporary name beside its path: schema, identity, a TRUNCATE
checkpoint so that the main file carries them, a clean close (no `-wal` left), and only then
linked into place. So a file at the journal's path was always a complete journal once, and
edged never has a reason to initialise one that exists.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from edged.clock import utc_now_iso
from edged.errors import JournalError
from edged.files import create_new, make_folders, sync_folder
from edged.journal import state
from edged.journal.schema import MIGRATIONS, SCHEMA_VERSION

SIDE_FILES = ("-wal", "-shm")


def create_journal(path: Path, store_id: str, terminal_id: str, *, adopt: bool = False) -> None:
    """Create a new, empty journal at `path` (0640); JournalError if a file is there.

    With `adopt`, its entries stay provisional until the store says which seqs it holds for
    this terminal (edged.journal.adoption)."""
    try:
        make_folders(path.parent)
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot create its folder: {exc}") from None
    building = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
    try:
        os.close(create_new(building))
        _build(building, store_id, terminal_id, adopt=adopt)
        for suffix in SIDE_FILES:  # a clean close leaves none; never link a file that needs one
            if building.with_name(building.name + suffix).exists():
                raise JournalError(f"journal {path}: SQLite left {building.name}{suffix} behind")
        os.link(building, path)
        sync_folder(path.parent)
    except FileExistsError:
        raise JournalError(
            f"journal {path}: a file is already there; it is left as it is"
        ) from None
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot create it: {exc}") from None
    except sqlite3.Error as exc:
        raise state.describe(path, exc, "creating it") from None
    finally:
        for suffix in ("", *SIDE_FILES):
            building.with_name(building.name + suffix).unlink(missing_ok=True)


def _build(path: Path, store_id: str, terminal_id: str, *, adopt: bool) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(
            "BEGIN IMMEDIATE;" + ";".join(MIGRATIONS) + f"; PRAGMA user_version={SCHEMA_VERSION};"
        )
        conn.execute(
            "INSERT INTO identity VALUES (1, ?, ?, ?)", (store_id, terminal_id, utc_now_iso())
        )
        if adopt:
            conn.execute(
                "INSERT INTO adoption (one, state, token, since) VALUES (1, 'pending', ?, ?)",
                (secrets.token_hex(2), utc_now_iso()),
            )
        conn.execute("COMMIT")
        ((busy, _, _),) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        if busy:
            raise JournalError(f"journal {path}: the creation checkpoint could not complete")


def set_aside(path: Path) -> list[tuple[Path, Path]]:
    """Rename the journal and its `-wal`/`-shm` to `NAME.replaced-STAMP` (never delete them).

    Returns the (old, new) names of the files that were there. The side files keep their
    suffix after the new name, so SQLite still opens the set aside journal with its `-wal`.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.replaced-{stamp}")
    moves = [
        (path.with_name(path.name + suffix), aside.with_name(aside.name + suffix))
        for suffix in ("", *SIDE_FILES)
        if path.with_name(path.name + suffix).exists()
    ]
    for _, new in moves:
        if new.exists():
            raise JournalError(f"journal {path}: {new} exists already; try again in a second")
    try:
        for old, new in moves:
            os.rename(old, new)
        sync_folder(path.parent)
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot move it aside: {exc}") from None
    return moves
