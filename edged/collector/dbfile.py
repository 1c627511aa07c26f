"""Which file is the collector's database: made once, then never silently lost or replaced.

Two guards. At start, a small marker next to the database (a dot file, so `rm collector.db*`
or `rm dir/*` leaves it) remembers the identity of the database this collector had: a missing
database, or one with another identity, is refused until an admin says `init`. While running,
the file at the path must stay the file that was opened (device and inode, with its WAL):
a database deleted or replaced under a running collector ends it before anything more is
acknowledged, since every later commit would go to a file that nobody will ever read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from edged.clock import utc_now_iso
from edged.collector.schema import RESTORE_HINT, CollectorDbChangedError, CollectorStoreError

WAL_SUFFIX = "-wal"


def marker_path(db_path: str) -> Path:
    """Where the identity of `db_path` is remembered: `.NAME.identity` in the same directory."""
    db = Path(db_path)
    return db.with_name(f".{db.name}.identity")


def read_marker(db_path: str) -> str | None:
    """The identity of the database this collector had at `db_path`, or None if it had none."""
    path = marker_path(db_path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CollectorStoreError(f"cannot read {path}: {exc}") from exc
    try:
        db_id = json.loads(text)["db_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CollectorStoreError(
            f"{path} is damaged ({exc!r}); it should hold the identity of {db_path}. If "
            f"{db_path} is the right database, run `edged collector --config FILE init`"
        ) from exc
    return str(db_id)


def write_marker(db_path: str, db_id: str) -> None:
    """Remember `db_id` as this collector's database, durably (write, fsync, rename)."""
    path = marker_path(db_path)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps({"db": db_path, "db_id": db_id, "since": utc_now_iso()}) + "\n"
    try:
        with tmp.open("w") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CollectorStoreError(f"cannot write {path}: {exc}") from exc


def check_may_open(db_path: str, *, had: str | None, init: bool) -> None:  # SQLite only
    """Refuse a missing database that the marker says existed, unless `init` says start anew."""
    if had is not None and not init and not os.path.exists(db_path):
        raise CollectorDbChangedError(
            f"collector db {db_path} is missing, but {marker_path(db_path)} says this collector "
            f"had one there; {RESTORE_HINT}"
        )


def check_identity(
    db_path: str, *, had: str | None, found: str, init: bool, name: str | None = None
) -> None:
    """Refuse a database that is not the one the marker names, unless `init` adopts it.

    `db_path` locates the marker; `name` is the database as messages name it (default: the
    path; PostgreSQL: its URL)."""
    if had is not None and had != found and not init:
        raise CollectorDbChangedError(
            f"collector db {name or db_path} is not the database this collector had (identity "
            f"{found}, expected {had} from {marker_path(db_path)}): it was replaced. If you put it "
            "there on purpose, run `edged collector --config FILE init` to adopt it; otherwise "
            "put this collector's database back (or restore it from the backup)"
        )


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """The device and inode of the database file and its WAL, as opened."""

    db: tuple[int, int]
    wal: tuple[int, int] | None

    @classmethod
    def of(cls, db_path: str) -> FileIdentity | None:
        """The files at `db_path` now; None if the database file is gone."""
        db = dev_ino(db_path)
        if db is None:
            return None
        return cls(db, dev_ino(db_path + WAL_SUFFIX))

    def check(self, db_path: str) -> None:
        """Raise CollectorDbChangedError unless the files at `db_path` are still these."""
        now = FileIdentity.of(db_path)
        if now == self:
            return
        if now is None:
            what = "was deleted"
        elif now.db != self.db:
            what = "was replaced by another file"
        else:
            what = f"lost its write-ahead log {db_path}{WAL_SUFFIX} (deleted or replaced)"
        raise CollectorDbChangedError(
            f"collector db {db_path} {what} while the collector was running; nothing more is "
            "acknowledged (what was received since is redelivered by the broker). Stop here: "
            f"{RESTORE_HINT}"
        )


def dev_ino(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CollectorStoreError(f"cannot stat {path}: {exc}") from exc
    return st.st_dev, st.st_ino
