"""Reference data snapshots on disk: `refdata.db` beside the journal (the journal stays lean).

Chunks are staged in the file as they arrive; a snapshot is built from them only once all are
there, and only after its size and SHA-256 verify; its articles are written under a snapshot
row marked complete in the same transaction. The active snapshot is one row of `state`,
flipped in its own transaction, so a lookup never sees a half-written snapshot. Lookups read
through their own connection on the caller's thread (one indexed point query); writers run in
a worker thread (`asyncio.to_thread`), one at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edged import files, memory
from edged.clock import utc_now_iso
from edged.errors import EdgedError
from edged.refwire import Article, BodyError, Discount, Manifest, article_key, decode_lines

log = structlog.get_logger(__name__)

INSERT_BATCH = 500
BUSY_TIMEOUT_S = 5.0
# Per connection. Lookups are point reads of an index (a few pages each, from the OS's cache
# when not in ours); a small cache keeps the daemon's RSS flat however large the catalog.
CACHE_KIB = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY,
    date TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    articles INTEGER NOT NULL,
    discounts INTEGER NOT NULL,
    published_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS articles (
    snapshot INTEGER NOT NULL,
    key TEXT NOT NULL,
    barcode TEXT NOT NULL,
    description TEXT NOT NULL,
    price INTEGER NOT NULL,
    tax_code TEXT NOT NULL,
    PRIMARY KEY (snapshot, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS discounts (
    snapshot INTEGER NOT NULL,
    id TEXT NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (snapshot, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    snapshot_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (snapshot_id, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
"""


class RefdataFileError(EdgedError):
    """refdata.db cannot be opened or used; names the file."""


def _unusable(file: Path, exc: Exception) -> RefdataFileError:
    return RefdataFileError(
        f"reference data file {file} cannot be used: {exc}; check its folder and owner "
        "(edged's user must write there)"
    )


class SnapshotRejected(EdgedError):
    """A snapshot failed its checks (size, hash, a line, a count); it was not kept."""

    def __init__(self, kind: str, problem: str) -> None:
        self.kind = kind
        self.problem = problem
        super().__init__(problem)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One complete snapshot held in refdata.db."""

    row: int
    date: str
    snapshot_id: str
    sha256: str
    articles: int
    discounts: int
    published_at: str
    received_at: str

    def summary(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "id": self.snapshot_id,
            "sha256": self.sha256,
            "articles": self.articles,
            "discounts": self.discounts,
            "published_at": self.published_at,
            "received_at": self.received_at,
        }


_SNAPSHOT_COLUMNS = "id, date, snapshot_id, sha256, articles, discounts, published_at, received_at"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return conn


class RefdataStore:
    """refdata.db: staged chunks, complete snapshots, the active one; see the module doc."""

    def __init__(self, path: Path, reader: sqlite3.Connection, writer: sqlite3.Connection) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.RLock()  # build() holds it from its checks to its commit
        self.active: Snapshot | None = self._load_active()

    @classmethod
    def open(cls, path: str | Path) -> RefdataStore:
        """Open (creating 0640) the file; RefdataFileError if it cannot be used.

        A file SQLite cannot read as a database is set aside (`NAME.damaged-TIME`) and a new
        one made: it holds only copies of what the store publishes (retained), so the till
        sells on and gets the store's snapshot again at its next connection.
        """
        file = Path(path)
        try:
            return cls._open(file)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, no such folder, read-only
                raise _unusable(file, exc) from exc
            damage = str(exc)
        except OSError as exc:
            raise _unusable(file, exc) from exc
        aside = file.with_name(f"{file.name}.damaged-{int(time.time())}")
        try:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{file}{suffix}").rename(f"{aside}{suffix}")
        except OSError as exc:
            raise _unusable(file, exc) from exc
        log.error("refdata_file_set_aside", path=str(file), aside=str(aside), error=damage)
        try:
            return cls._open(file)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(file, exc) from exc

    @classmethod
    def _open(cls, file: Path) -> RefdataStore:
        files.make_folders(file.parent)
        if not file.exists():
            with contextlib.suppress(FileExistsError):
                os.close(files.create_new(file))
        writer = _connect(file)
        try:
            writer.executescript(_SCHEMA)
            reader = _connect(file)
        except BaseException:
            writer.close()
            raise
        reader.execute("PRAGMA query_only=ON")
        return cls(file, reader, writer)

    def close(self) -> None:
        self._reader.close()
        with self._write_lock:
            self._writer.close()

    # -- reads (any thread; cheap) -----------------------------------------------------

    def lookup(self, barcode: str) -> dict[str, Any] | None:
        """The active snapshot's article for `barcode`, or None (also with no snapshot)."""
        active = self.active
        if active is None:
            return None
        row = self._reader.execute(
            "SELECT barcode, description, price, tax_code FROM articles "
            "WHERE snapshot = ? AND key = ?",
            (active.row, article_key(barcode)),
        ).fetchone()
        if row is None:
            return None
        return {"barcode": row[0], "description": row[1], "price": row[2], "tax_code": row[3]}

    def snapshots(self) -> list[Snapshot]:
        """The complete snapshots held, oldest date first."""
        rows = self._reader.execute(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE complete = 1 ORDER BY date, id"
        ).fetchall()
        return [Snapshot(*row) for row in rows]

    def holds(self, manifest: Manifest) -> bool:
        """True if this exact snapshot (date, id, hash) is held complete already."""
        row = self._reader.execute(
            "SELECT 1 FROM snapshots WHERE complete = 1 AND date = ? AND snapshot_id = ? "
            "AND sha256 = ?",
            (manifest.date, manifest.id, manifest.sha256),
        ).fetchone()
        return row is not None

    def staged(self, snapshot_id: str) -> set[int]:
        """Indexes of the chunks of `snapshot_id` staged so far."""
        rows = self._reader.execute(
            "SELECT n FROM chunks WHERE snapshot_id = ?", (snapshot_id,)
        ).fetchall()
        return {n for (n,) in rows}

    def state(self, key: str) -> str | None:
        row = self._reader.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _load_active(self) -> Snapshot | None:
        row = self._reader.execute(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE complete = 1 AND id = "
            "(SELECT CAST(value AS INTEGER) FROM state WHERE key = 'active')"
        ).fetchone()
        return None if row is None else Snapshot(*row)

    # -- writes (one at a time; call them through asyncio.to_thread) -------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def set_state(self, key: str, value: str | None) -> None:
        with self._transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM state WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    def stage(self, snapshot_id: str, n: int, data: bytes) -> None:
        """Keep one chunk until its snapshot is built (a repeat replaces it)."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?)", (snapshot_id, n, data))

    def drop_staged(self, keep: str | None = None) -> None:
        """Forget staged chunks of every snapshot but `keep`."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM chunks WHERE snapshot_id IS NOT ?", (keep,))

    def build(self, manifest: Manifest) -> Snapshot:
        """Verify the staged chunks against `manifest` and write its snapshot, complete.

        SnapshotRejected (nothing kept) if a chunk is missing or the wrong size, or the size,
        hash, a line or the counts do not match.
        """
        with self._write_lock:
            self._verify(manifest)
            try:
                return self._write(manifest)
            except BodyError as exc:
                raise SnapshotRejected("bad_line", f"snapshot body {exc}") from None
            finally:  # a build is rare and large: keep none of its memory (README: Performance)
                self._writer.execute("PRAGMA shrink_memory")
                memory.release()

    def _chunks(self, manifest: Manifest) -> Iterator[bytes]:
        cursor = self._writer.execute(
            "SELECT data FROM chunks WHERE snapshot_id = ? AND n < ? ORDER BY n",
            (manifest.id, manifest.chunks),
        )
        for (data,) in cursor:
            yield bytes(data)

    def _verify(self, manifest: Manifest) -> None:
        with self._write_lock:
            present = [
                n
                for (n,) in self._writer.execute(
                    "SELECT n FROM chunks WHERE snapshot_id = ? AND n < ? ORDER BY n",
                    (manifest.id, manifest.chunks),
                )
            ]
            missing = sorted(set(range(manifest.chunks)) - set(present))
            if missing:
                shown = ", ".join(str(n) for n in missing[:10])
                raise SnapshotRejected(
                    "incomplete", f"{len(missing)} of {manifest.chunks} chunks missing ({shown})"
                )
            digest = hashlib.sha256()
            size = 0
            for n, data in self._writer.execute(
                "SELECT n, data FROM chunks WHERE snapshot_id = ? AND n < ? ORDER BY n",
                (manifest.id, manifest.chunks),
            ):
                want = min(manifest.chunk_size, manifest.size - n * manifest.chunk_size)
                if len(data) != want:
                    raise SnapshotRejected(
                        "bad_chunk", f"chunk {n} has {len(data)} bytes, the manifest says {want}"
                    )
                digest.update(data)
                size += len(data)
        if size != manifest.size:  # pragma: no cover - the per-chunk sizes add up to it
            raise SnapshotRejected("bad_size", f"{size} bytes, the manifest says {manifest.size}")
        if digest.hexdigest() != manifest.sha256:
            raise SnapshotRejected(
                "bad_hash",
                f"SHA-256 of the {size} bytes is {digest.hexdigest()}, "
                f"the manifest says {manifest.sha256}",
            )

    def _write(self, manifest: Manifest) -> Snapshot:
        received_at = utc_now_iso()
        with self._transaction() as conn:
            row = conn.execute(
                "INSERT INTO snapshots (date, snapshot_id, sha256, size, articles, discounts, "
                "published_at, received_at) VALUES (?, ?, ?, ?, 0, 0, ?, ?)",
                (
                    manifest.date,
                    manifest.id,
                    manifest.sha256,
                    manifest.size,
                    manifest.published_at,
                    received_at,
                ),
            ).lastrowid
            assert row is not None
            articles = discounts = 0
            batch: list[tuple[int, str, str, str, int, str]] = []
            for line in decode_lines(self._chunks(manifest)):
                if isinstance(line, Article):
                    articles += 1
                    batch.append(
                        (
                            row,
                            article_key(line.barcode),
                            line.barcode,
                            line.description,
                            line.price,
                            line.tax_code,
                        )
                    )
                    if len(batch) >= INSERT_BATCH:
                        self._insert(conn, batch)
                        batch.clear()
                elif isinstance(line, Discount):
                    discounts += 1
                    try:
                        conn.execute(
                            "INSERT INTO discounts VALUES (?, ?, ?)",
                            (row, line.id, msgspec.json.encode(line.rule).decode()),
                        )
                    except sqlite3.IntegrityError:
                        raise SnapshotRejected(
                            "bad_line", f"discount {line.id!r} appears twice"
                        ) from None
            self._insert(conn, batch)
            if (articles, discounts) != (manifest.articles, manifest.discounts):
                raise SnapshotRejected(
                    "bad_count",
                    f"{articles} articles and {discounts} discounts, the manifest says "
                    f"{manifest.articles} and {manifest.discounts}",
                )
            conn.execute(
                "UPDATE snapshots SET articles = ?, discounts = ?, complete = 1 WHERE id = ?",
                (articles, discounts, row),
            )
            conn.execute("DELETE FROM chunks WHERE snapshot_id = ?", (manifest.id,))
        return Snapshot(
            row,
            manifest.date,
            manifest.id,
            manifest.sha256,
            articles,
            discounts,
            manifest.published_at,
            received_at,
        )

    @staticmethod
    def _insert(conn: sqlite3.Connection, batch: list[tuple[int, str, str, str, int, str]]) -> None:
        try:
            conn.executemany("INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?)", batch)
        except sqlite3.IntegrityError:
            raise SnapshotRejected("bad_line", _duplicate(batch)) from None

    def activate(self, snapshot: Snapshot) -> None:
        """Make `snapshot` the one lookups answer from (one transaction)."""
        self.set_state("active", str(snapshot.row))
        self.active = snapshot

    def purge(self, keep: int) -> list[Snapshot]:
        """Keep the `keep` newest snapshots by date (and the active one); returns the purged.

        Of two snapshots for one date only the later received counts.
        """
        held = sorted(self.snapshots(), key=lambda s: (s.date, s.row), reverse=True)
        kept: list[Snapshot] = []
        gone: list[Snapshot] = []
        dates: set[str] = set()
        for snap in held:
            if self.active is not None and snap.row == self.active.row:
                kept.append(snap)
            elif snap.date in dates or len(kept) >= keep:
                gone.append(snap)
            else:
                kept.append(snap)
            dates.add(snap.date)
        if gone:
            with self._transaction() as conn:
                for snap in gone:
                    conn.execute("DELETE FROM articles WHERE snapshot = ?", (snap.row,))
                    conn.execute("DELETE FROM discounts WHERE snapshot = ?", (snap.row,))
                    conn.execute("DELETE FROM snapshots WHERE id = ?", (snap.row,))
                # and anything a crash left half-written
                conn.execute(
                    "DELETE FROM articles WHERE snapshot IN "
                    "(SELECT id FROM snapshots WHERE complete = 0)"
                )
                conn.execute("DELETE FROM snapshots WHERE complete = 0")
        return gone


def _duplicate(batch: list[tuple[int, str, str, str, int, str]]) -> str:
    """Say which barcode repeats (in this batch, or one of an earlier batch)."""
    seen: dict[str, str] = {}
    for item in batch:
        if item[1] in seen:
            return f"barcodes {seen[item[1]]!r} and {item[2]!r} are one article (GTIN {item[1]})"
        seen[item[1]] = item[2]
    return "a barcode repeats one of an earlier line"
