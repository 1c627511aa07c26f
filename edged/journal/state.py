"""Opening a journal file safely: refuse anything that is not an edged journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edged.errors import JournalError, JournalFullError
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


def is_disk_full(exc: sqlite3.Error) -> bool:
    """SQLite says the disk (or the file's size limit) is full: SQLITE_FULL."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL


def describe(path: Path, exc: sqlite3.Error, doing: str = "") -> JournalError:
    """A journal error a technician can act on, from a sqlite3 error (`doing`: while what)."""
    text = str(exc)
    during = f" while {doing}" if doing else ""
    if is_disk_full(exc):
        return JournalFullError(
            f"journal {path}: disk full{during}; nothing committed before is lost. "
            f"Free space on the disk holding {path.parent}"
        )
    if "not a database" in text or "malformed" in text:
        return JournalError(
            f"journal {path}: corrupt{during} ({text}); move it aside and keep it for analysis, "
            "edged will not start over it"
        )
    if "readonly" in text or "unable to open" in text:
        return JournalError(
            f"journal {path}: cannot open for writing{during} ({text}); check permissions"
        )
    return JournalError(f"journal {path}: {text}{during}")


def write_error(path: Path, exc: BaseException) -> JournalError:
    """What the callers of a failed group commit are told: full, or an unknown outcome."""
    if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
        return JournalFullError(
            f"journal {path}: disk full; the sale was not committed by this request and nothing "
            f"committed before is lost. Free space on the disk holding {path.parent}, then "
            "retry with the same id"
        )
    detail = str(exc) if isinstance(exc, sqlite3.Error) else f"{type(exc).__name__}: {exc}"
    return JournalError(
        f"journal {path}: write failed ({detail}); the outcome of this commit is unknown and "
        "nothing committed before is lost. Retry with the same id: a sale already committed "
        "is answered as a duplicate, never stored twice"
    )
