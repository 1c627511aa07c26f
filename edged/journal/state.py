"""Opening a journal file safely: refuse anything that is not an edged journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edged.errors import JournalError
from edged.journal.schema import SCHEMA_VERSION

SQLITE_MAGIC = b"SQLite format 3\x00"


def check_file(path: Path) -> bool:
    """True if `path` holds a journal to open, False if a new one is to be made there."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise JournalError(
            f"journal {path}: cannot read ({exc.strerror}); check its owner and mode"
        ) from None
    if not head:
        return False
    if head != SQLITE_MAGIC:
        raise JournalError(
            f"journal {path}: not a SQLite file (it starts {head[:8]!r}); it may be corrupt. "
            "Move it aside and keep it for analysis; edged will not start over it."
        )
    return True


def check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path}: schema version {version} is newer than this edged supports "
            f"({SCHEMA_VERSION}); install the newer edged that wrote it"
        )


def check_identity(path: Path, found: tuple[str, str], wanted: tuple[str, str]) -> None:
    if found != wanted:
        raise JournalError(
            f"journal {path}: belongs to store {found[0]!r} terminal {found[1]!r}, but the config "
            f"says store {wanted[0]!r} terminal {wanted[1]!r}; fix [terminal] or journal.path"
        )


def describe(path: Path, exc: sqlite3.Error) -> JournalError:
    """A journal error a technician can act on, from a sqlite3 error."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return JournalError(
            f"journal {path}: corrupt ({text}); move it aside and keep it for analysis, "
            "edged will not start over it"
        )
    if "readonly" in text or "unable to open" in text:
        return JournalError(f"journal {path}: cannot open for writing ({text}); check permissions")
    return JournalError(f"journal {path}: {text}")
