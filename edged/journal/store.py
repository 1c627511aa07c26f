"""The durable sale journal: gapless seq, hash chain, idempotency by sale id, outbox state.

Every commit goes through one writer task that takes all commits waiting at that moment and
writes them as one multi-row INSERT, so one fsync serves many sales (group commit).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import aiosqlite
import msgspec
import structlog

from edged.chain import GENESIS_HASH, CanonicalError, canonical, entry_bytes, entry_hash
from edged.clock import utc_now_iso
from edged.errors import (
    JournalError,
    JournalFullError,
    Problem,
    SaleConflictError,
    ValidationError,
)
from edged.journal import state
from edged.journal.schema import MIGRATIONS
from edged.sale import validate_sale

log = structlog.get_logger(__name__)

MAX_GROUP = 256  # sales per group commit; 7 parameters each stays far below SQLite's limit
BUSY_TIMEOUT_MS = 5000
# A commit queued this long is stuck: a group commit takes milliseconds, a busy database at
# most BUSY_TIMEOUT_MS, a full disk fails at once.
WRITER_STUCK_S = 30.0
_COLUMNS = "seq, id, receipt_no, created_at, sale, prev_hash, hash"


class CommitResult(msgspec.Struct, frozen=True):
    seq: int
    receipt_no: str
    hash: str
    duplicate: bool


class StoredEntry(msgspec.Struct, frozen=True):
    seq: int
    id: str
    receipt_no: str
    created_at: str
    prev_hash: bytes
    hash: bytes
    sale_json: bytes


class JournalStats(msgspec.Struct, frozen=True):
    last_seq: int
    acked_upto: int
    pending: int
    oldest_pending_created_at: str | None
    last_ack_at: str | None
    sale_transactions: int  # group commits since open: one fsync each, however many sales

    def outbox(self) -> dict[str, int]:
        """The `outbox` event's data."""
        return {"pending": self.pending, "acked_upto": self.acked_upto, "last_seq": self.last_seq}


class _Pending:
    __slots__ = ("future", "queued_at", "sale_id", "sale_json")

    def __init__(self, sale_id: str, sale_json: bytes, future: asyncio.Future[CommitResult]):
        self.sale_id = sale_id
        self.sale_json = sale_json
        self.future = future
        self.queued_at = time.monotonic()


def _row_entry(row: Sequence[Any]) -> StoredEntry:
    return StoredEntry(
        seq=row[0],
        id=row[1],
        receipt_no=row[2],
        created_at=row[3],
        sale_json=row[4].encode(),
        prev_hash=row[5],
        hash=row[6],
    )


def _is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


class Journal:
    """Open with `await Journal.open(...)`; one instance per file and process."""

    def __init__(
        self, db: aiosqlite.Connection, path: Path, store_id: str, terminal_id: str, fmt: str
    ) -> None:
        self._db = db
        self._loop = asyncio.get_running_loop()
        self.path = path
        self.store_id = store_id
        self.terminal_id = terminal_id
        self._format = fmt
        self._last_seq = 0
        self._last_hash = GENESIS_HASH
        self._acked_upto = 0
        self._last_ack_at: str | None = None
        self._oldest_pending: str | None = None
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        # Replaced by a fresh Event at each group commit; set once that commit is on disk.
        self._committed = asyncio.Event()
        self._transactions = 0
        self._closing = False
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        store_id: str,
        terminal_id: str,
        receipt_format: str = "{store}-{terminal}-{seq:06d}",
    ) -> Journal:
        """Open or create the journal; a corrupt or foreign file is an error, never replaced."""
        path = Path(path)
        exists = state.check_file(path)
        if not exists:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(f"journal {path}: cannot create its folder: {exc}") from None
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise state.describe(path, exc) from None
        journal = cls(db, path, store_id, terminal_id, receipt_format)
        try:
            await journal._prepare(exists)
        except sqlite3.Error as exc:
            await db.close()
            raise state.describe(path, exc) from None
        except BaseException:
            await db.close()
            raise
        journal._writer = asyncio.create_task(journal._write_loop(), name="journal-writer")
        log.info(
            "journal_opened",
            path=str(path),
            last_seq=journal._last_seq,
            acked_upto=journal._acked_upto,
        )
        return journal

    async def _prepare(self, exists: bool) -> None:
        db = self._db
        await self._fetch("PRAGMA journal_mode=WAL")
        await self._fetch("PRAGMA synchronous=FULL")
        await self._fetch(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        (version,) = (await self._fetch("PRAGMA user_version"))[0]
        state.check_version(self.path, version)
        if exists and version == 0:
            tables = await self._fetch("SELECT name FROM sqlite_master")
            if tables:
                raise JournalError(
                    f"journal {self.path}: a SQLite file that is not an edged journal; "
                    "point journal.path elsewhere"
                )
        for number in range(version + 1, len(MIGRATIONS) + 1):
            await db.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[number - 1]}; PRAGMA user_version={number}; COMMIT;"
            )
            log.info("journal_migrated", path=str(self.path), version=number)
        rows = await self._fetch("SELECT store_id, terminal_id FROM identity")
        wanted = (self.store_id, self.terminal_id)
        if rows:
            state.check_identity(self.path, (rows[0][0], rows[0][1]), wanted)
        else:
            await self._fetch("INSERT INTO identity VALUES (1, ?, ?, ?)", (*wanted, utc_now_iso()))
        ((acked, last_ack_at, anchor_seq, anchor_hash),) = await self._fetch(
            "SELECT acked_upto, last_ack_at, anchor_seq, anchor_hash FROM outbox"
        )
        last = await self._fetch("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")
        self._last_seq, self._last_hash = last[0] if last else (anchor_seq, anchor_hash)
        self._acked_upto, self._last_ack_at = acked, last_ack_at
        await self._load_oldest_pending()

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and fetch its rows in a single hop to the database thread."""
        return list(await self._db.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement in its own durable transaction, for the journal's other tables."""
        try:
            return await self._fetch(sql, params)
        except sqlite3.Error as exc:
            if _is_disk_full(exc):
                raise JournalFullError(f"journal {self.path}: disk full") from None
            raise JournalError(f"journal {self.path}: {exc}") from None

    async def _load_oldest_pending(self) -> None:
        rows = await self._fetch(
            "SELECT created_at FROM entries WHERE seq = ?", (self._acked_upto + 1,)
        )
        self._oldest_pending = rows[0][0] if rows else None

    # -- commits -------------------------------------------------------------------------

    async def commit(self, sale: Any) -> CommitResult:
        """Validate and durably journal a sale; returns once it is on disk."""
        validate_sale(sale)
        try:
            sale_json = canonical(sale)
        except CanonicalError as exc:
            raise ValidationError([Problem("sale", str(exc))]) from None
        if self._closing:
            raise JournalError("the journal is closing; retry after the daemon restarts")
        future: asyncio.Future[CommitResult] = self._loop.create_future()
        self._queue.append(_Pending(sale["id"], sale_json, future))
        self._wake.set()
        # A caller that goes away cancels only this future: the queued sale is still written
        # (the writer skips futures that are done), so a commit on disk is never undone.
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                await self._write_group(group)
            if self._closing:
                return

    async def _write_group(self, group: list[_Pending]) -> None:
        fresh: dict[str, _Pending] = {}
        followers: list[_Pending] = []
        for item in group:
            if item.sale_id in fresh:
                followers.append(item)
            else:
                fresh[item.sale_id] = item
        try:
            results = await self._insert(list(fresh.values()))
        except sqlite3.IntegrityError:
            results = await self._insert_checking_duplicates(list(fresh.values()))
        except sqlite3.Error as exc:
            error: JournalError
            if _is_disk_full(exc):
                error = JournalFullError(
                    f"journal {self.path}: disk full; the sale was NOT committed and nothing "
                    "committed before is lost. Free space on the terminal, then retry."
                )
                log.critical("journal_disk_full", path=str(self.path), sales=len(group))
            else:
                error = JournalError(f"journal {self.path}: write failed: {exc}")
                log.exception("journal_write_failed", path=str(self.path))
            for item in group:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for item in fresh.values():
            outcome = results[item.sale_id]
            if not item.future.done():
                if isinstance(outcome, Exception):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
        for item in followers:
            first = fresh[item.sale_id]
            outcome = results[item.sale_id]
            if item.future.done():
                continue  # its caller went away
            if isinstance(outcome, Exception):
                item.future.set_exception(outcome)
            elif item.sale_json == first.sale_json:
                item.future.set_result(msgspec.structs.replace(outcome, duplicate=True))
            else:
                item.future.set_exception(SaleConflictError(item.sale_id, outcome.seq))

    async def _insert(self, items: list[_Pending]) -> dict[str, CommitResult | Exception]:
        """Chain and write `items` as new entries in one statement (one transaction, one fsync)."""
        results: dict[str, CommitResult | Exception] = {}
        if not items:
            return results
        params: list[Any] = []
        seq, prev = self._last_seq, self._last_hash
        created_at = utc_now_iso()
        for item in items:
            seq += 1
            receipt_no = self._format.format(
                store=self.store_id, terminal=self.terminal_id, seq=seq
            )
            digest = entry_hash(
                prev, entry_bytes(seq, item.sale_id, receipt_no, created_at, item.sale_json)
            )
            sale_text = item.sale_json.decode()
            params += (seq, item.sale_id, receipt_no, created_at, sale_text, prev, digest)
            results[item.sale_id] = CommitResult(seq, receipt_no, digest.hex(), duplicate=False)
            prev = digest
        rows = ",".join(["(?,?,?,?,?,?,?)"] * len(items))
        await self._fetch(f"INSERT INTO entries ({_COLUMNS}) VALUES {rows}", params)
        self._transactions += 1
        if self._oldest_pending is None:
            self._oldest_pending = created_at
        self._last_seq, self._last_hash = seq, prev
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()
        return results

    async def _insert_checking_duplicates(
        self, items: list[_Pending]
    ) -> dict[str, CommitResult | Exception]:
        """Slow path: some ids were committed before (a UI retrying after a lost answer)."""
        marks = ",".join("?" * len(items))
        rows = await self._fetch(
            f"SELECT id, seq, receipt_no, hash, sale FROM entries WHERE id IN ({marks})",
            [item.sale_id for item in items],
        )
        known = {row[0]: row for row in rows}
        results: dict[str, CommitResult | Exception] = {}
        new = []
        for item in items:
            row = known.get(item.sale_id)
            if row is None:
                new.append(item)
            elif row[4].encode() == item.sale_json:
                results[item.sale_id] = CommitResult(row[1], row[2], row[3].hex(), duplicate=True)
            else:
                results[item.sale_id] = SaleConflictError(item.sale_id, row[1])
        results.update(await self._insert(new))
        return results

    # -- reads ---------------------------------------------------------------------------

    async def get(self, sale_id: str) -> tuple[StoredEntry, bool] | None:
        """The entry for a sale id and whether the store has acknowledged it."""
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM entries WHERE id = ?", (sale_id,))
        if not rows:
            return None
        entry = _row_entry(rows[0])
        return entry, entry.seq <= self._acked_upto

    async def unacked(self, after_seq: int, limit: int) -> list[StoredEntry]:
        """Entries not yet acknowledged, in seq order, starting after `after_seq`."""
        rows = await self._fetch(
            f"SELECT {_COLUMNS} FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
            (max(after_seq, self._acked_upto), limit),
        )
        return [_row_entry(row) for row in rows]

    def stats(self) -> JournalStats:
        return JournalStats(
            last_seq=self._last_seq,
            acked_upto=self._acked_upto,
            pending=self._last_seq - self._acked_upto,
            oldest_pending_created_at=self._oldest_pending,
            last_ack_at=self._last_ack_at,
            sale_transactions=self._transactions,
        )

    @property
    def last_seq(self) -> int:
        return self._last_seq

    async def wait_committed(self, after_seq: int) -> None:
        """Return once an entry with seq > after_seq exists."""
        while self._last_seq <= after_seq:
            await self._committed.wait()

    # -- the writer's health, for the daemon's supervisor and watchdog ---------------------

    def writer_problem(self, now: float) -> str | None:
        """Why commits are not being written right now, or None (`now`: monotonic seconds)."""
        if self._writer is None or self._writer.done():
            return "the journal writer is not running"
        if self._queue and now - self._queue[0].queued_at > WRITER_STUCK_S:
            return f"commits have waited more than {WRITER_STUCK_S:g} s for the journal writer"
        return None

    async def watch_writer(self) -> NoReturn:
        """Start the writer if it is not running, then wait on it: it must never end.

        Raises JournalError when it ended anyway, so that the caller's supervisor logs it and
        calls this again, which starts a new writer.
        """
        if self._closing:
            raise JournalError(f"journal {self.path}: closed")
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="journal-writer")
            self._wake.set()  # commits queued while there was no writer
        writer = self._writer
        try:
            await asyncio.shield(writer)
        except asyncio.CancelledError:
            if not writer.cancelled():
                raise  # our caller is stopping; close() finishes the writer
        raise JournalError(f"journal {self.path}: the journal writer stopped unexpectedly")

    # -- outbox and retention ------------------------------------------------------------

    async def mark_acked(self, upto: int) -> int:
        """Record the store's cumulative ack; returns the new acked_upto."""
        upto = min(upto, self._last_seq)
        if upto <= self._acked_upto:
            return self._acked_upto
        now = utc_now_iso()
        await self._fetch(
            "UPDATE outbox SET acked_upto = ?, last_ack_at = ? WHERE acked_upto < ?",
            (upto, now, upto),
        )
        self._acked_upto, self._last_ack_at = upto, now
        await self._load_oldest_pending()
        return upto

    async def purge(self, retain_days: float) -> int:
        """Delete acknowledged entries older than `retain_days`, keeping the chain's anchor."""
        cutoff = datetime.now(UTC) - timedelta(days=retain_days)
        cutoff_text = cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        rows = await self._fetch(
            "SELECT seq, hash, (SELECT anchor_seq FROM outbox) FROM entries "
            "WHERE seq <= ? AND created_at < ? ORDER BY seq DESC LIMIT 1",
            (self._acked_upto, cutoff_text),
        )
        if not rows:
            return 0
        anchor_seq, anchor_hash, old_anchor = rows[0]
        # One script, one hop: no group commit can interleave with this transaction.
        await self._db.executescript(
            f"BEGIN IMMEDIATE; DELETE FROM entries WHERE seq <= {int(anchor_seq)}; "
            f"UPDATE outbox SET anchor_seq = {int(anchor_seq)}, "
            f"anchor_hash = X'{bytes(anchor_hash).hex()}'; COMMIT;"
        )
        purged = int(anchor_seq) - int(old_anchor)  # seqs are gapless
        log.info("journal_purged", entries=purged, anchor_seq=anchor_seq)
        return purged

    async def close(self) -> None:
        """Finish the commits already accepted, then close the file cleanly."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        await self._fetch("PRAGMA wal_checkpoint(TRUNCATE)")
        await self._db.close()
        log.info("journal_closed", path=str(self.path), last_seq=self._last_seq)
