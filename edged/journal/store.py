"""The durable sale journal: gapless seq, hash chain, idempotency by sale id, outbox state.

Every commit goes through one writer task that takes all commits waiting at that moment and
writes them as one multi-row INSERT, so one fsync serves many sales (group commit). A failing
group (a full disk, an I/O error, a bug) fails only its own callers; the writer goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import aiosqlite
import msgspec
import structlog

from edged import files
from edged.chain import GENESIS_HASH, CanonicalError, canonical, entry_bytes, entry_hash
from edged.clock import utc_now_iso
from edged.errors import JournalError, Problem, SaleConflictError, ValidationError
from edged.journal import state
from edged.journal.adoption import PROVISIONAL_MARK, adoption_reason, renumbered
from edged.journal.create import create_journal
from edged.journal.damaged import DamagedSeqs
from edged.journal.gaps import RECENT_GAPS, GapEntry, GapRecord, gap_entry
from edged.journal.preflight import lost_wal, preflight
from edged.journal.rows import ENTRY_SELECT, StoredEntry, row_entry
from edged.journal.schema import MIGRATIONS
from edged.journal.seqmark import SeqMark, SeqMarkFile, mark_path, read_mark
from edged.sale import validate_sale

log = structlog.get_logger(__name__)

MAX_GROUP = 256  # sales per group commit; 7 parameters each stays far below SQLite's limit
BUSY_TIMEOUT_MS = 5000
ID_RETAIN_DAYS = 400.0  # how long sale ids are kept, by default: [journal] id_retain_days
WRITER_STUCK_S = 15.0  # a commit waiting longer than this means the writer makes no progress
_COLUMNS = "seq, id, receipt_no, created_at, sale, prev_hash, hash"


def _cutoff(days: float) -> str:
    """The journal's timestamp `days` ago: rows created before it are older."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    return cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CommitResult(msgspec.Struct, frozen=True):
    seq: int
    receipt_no: str
    hash: str
    duplicate: bool


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


class WriterHealth(msgspec.Struct, frozen=True):
    """The journal writer as the daemon's watchdog sees it: feed it only while `ok`.

    A full disk is not ill health: the writer still answers every commit (with -32001), and a
    restart would not free space; `failing_since` and `last_error` say so for `status`.
    """

    alive: bool  # the writer task runs (False after close, or if it ended unasked)
    stuck: bool  # the oldest waiting commit has waited longer than the bound given to health()
    waiting: int  # commits queued or being written whose callers wait for an answer
    oldest_wait_s: float  # how long the oldest of them has waited; 0.0 when none waits
    failing_since: str | None  # UTC time of the first of the group commits failing since
    last_error: str | None  # what the callers of the latest failed group were told

    @property
    def ok(self) -> bool:
        return self.alive and not self.stuck


class _Pending:
    __slots__ = ("future", "queued_at", "sale_id", "sale_json")

    def __init__(self, sale_id: str, sale_json: bytes, future: asyncio.Future[CommitResult]):
        self.sale_id = sale_id
        self.sale_json = sale_json
        self.future = future
        self.queued_at = future.get_loop().time()


class _Mark(NamedTuple):
    """What the sale id index keeps of an entry: enough to tell whether a sale is its sale."""

    seq: int
    receipt_no: str
    created_at: str
    prev_hash: bytes
    hash: bytes

    def holds(self, sale_id: str, sale_json: bytes) -> bool:
        """Whether this entry was made from this canonical sale (its hash says so)."""
        body = entry_bytes(self.seq, sale_id, self.receipt_no, self.created_at, sale_json)
        return entry_hash(self.prev_hash, body) == self.hash


# sale id -> the result of its entry and what tells a retry of the same sale from another
_Stored = dict[str, tuple[CommitResult, _Mark]]


def _tighten_modes(path: Path) -> None:
    """A journal made before edged set modes may be readable by everyone: make it 0640."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        try:
            former = files.tighten(path.with_name(name))
        except OSError as exc:
            log.warning("journal_mode_not_tightened", path=name, error=str(exc))
            continue
        if former is not None:
            log.warning("journal_mode_tightened", path=str(path.with_name(name)), was=oct(former))


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
        self._in_flight: list[_Pending] = []  # the group being written
        self._wake = asyncio.Event()
        # Replaced by a fresh Event at each group commit; set once that commit is on disk.
        self._committed = asyncio.Event()
        self._transactions = 0
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._failing_since: str | None = None
        self._last_error: str | None = None
        self._open_marked = False  # the main file says "open" (see _mark_open)
        self._seq_mark: SeqMarkFile | None = None
        self._seq_mark_failing = False
        # Seqs up to this one are taken (lost entries, the store's): the next entry follows it.
        self._skip_past = 0
        self._skip_reason = ""
        self._gaps: list[GapRecord] = []  # the most recent first
        self._gap_count = 0
        self._last_ack_store_at: str | None = None
        self._adoption_token: str | None = None  # set while adoption is pending
        self._adopt_upto: int | None = None  # the store's answer, for the writer to apply
        self._adopted = asyncio.Event()  # set once no adoption is pending
        self.damaged = DamagedSeqs()  # damaged entries its readers came across

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        store_id: str,
        terminal_id: str,
        receipt_format: str = "{store}-{terminal}-{seq:06d}",
        adopt: bool = False,
    ) -> Journal:
        """Open the journal, or create it where no file is; a corrupt, foreign or incomplete
        file (a lost -wal) is an error, never replaced."""
        path = Path(path)
        created = not await asyncio.to_thread(preflight, path)
        if created and adopt and await asyncio.to_thread(read_mark, path) is not None:
            adopt = False  # the seq mark knows this terminal's seqs: they go on after it
        if created:
            await asyncio.to_thread(create_journal, path, store_id, terminal_id, adopt=adopt)
            log.info(
                "journal_created",
                path=str(path),
                store_id=store_id,
                terminal_id=terminal_id,
                adoption="pending" if adopt else None,
            )
        _tighten_modes(path)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise state.describe(path, exc) from None
        journal = cls(db, path, store_id, terminal_id, receipt_format)
        try:
            await journal._prepare()
        except sqlite3.Error as exc:
            await db.close()
            raise state.describe(path, exc) from None
        except BaseException:
            await db.close()
            raise
        journal._start_writer(recover=False)
        if journal._skip_past:
            journal._wake.set()  # declare the lost tail before the first sale
        log.info(
            "journal_opened",
            path=str(path),
            last_seq=journal._last_seq,
            acked_upto=journal._acked_upto,
        )
        return journal

    async def _prepare(self) -> None:
        db = self._db
        await self._fetch(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        (version,) = (await self._fetch("PRAGMA user_version"))[0]
        state.check_version(self.path, version)
        if version == 0:  # edged creates journals whole: this one is not, or not any more
            if not await self._fetch("SELECT name FROM sqlite_master"):
                raise lost_wal(self.path, None)
            raise JournalError(
                f"journal {self.path}: a SQLite file that is not an edged journal; "
                "point journal.path elsewhere"
            )
        await self._fetch("PRAGMA journal_mode=WAL")
        await self._fetch("PRAGMA synchronous=FULL")
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
        ((self._last_ack_store_at,),) = await self._fetch("SELECT last_ack_store_at FROM outbox")
        await self._load_oldest_pending()
        await self._load_gaps()
        await self._check_seq_mark()
        pending = await self._fetch("SELECT token FROM adoption WHERE state = 'pending'")
        self._adoption_token = pending[0][0] if pending else None
        if self._adoption_token is None:
            self._adopted.set()
        try:
            await self._mark_open()
        except sqlite3.Error as exc:
            if not state.is_disk_full(exc):
                raise
            await self._end_transaction()  # an existing journal opens on a full disk too
            log.warning("journal_open_not_marked", path=str(self.path), hint="disk full")

    async def _load_gaps(self) -> None:
        self._gaps, self._gap_count = await self._read_gaps()

    async def _read_gaps(self) -> tuple[list[GapRecord], int]:
        """The newest RECENT_GAPS declared gaps, and how many there are in all."""
        rows = await self._fetch(
            "SELECT seq, first, last, found_at, reason FROM journal_gaps ORDER BY seq DESC LIMIT ?",
            (RECENT_GAPS,),
        )
        ((count,),) = await self._fetch("SELECT count(*) FROM journal_gaps")
        return [GapRecord(*row) for row in rows], count

    async def _check_seq_mark(self) -> None:
        """Compare the journal with its seq mark (journal.seqmark); a lost tail is declared."""
        mark = await asyncio.to_thread(read_mark, self.path)
        error: str | None = None
        try:
            self._seq_mark = await asyncio.to_thread(SeqMarkFile, self.path)
        except OSError as exc:
            error = str(exc)
        if error is not None:
            log.error(
                "journal_seq_mark_failed",
                path=str(mark_path(self.path)),
                error=error,
                hint="sales are journaled; a lost journal tail would go unnoticed",
            )
            self._seq_mark_failing = True
        if mark is not None and mark.seq > self._last_seq:
            self.skip_past(
                mark.seq,
                f"the journal ends at seq {self._last_seq} but {mark_path(self.path).name} says "
                f"seq {mark.seq} was written: its tail was lost (a damaged or lost -wal, or an "
                "older copy of the journal)",
            )
        elif mark != SeqMark(self._last_seq, bytes(self._last_hash)):
            await asyncio.to_thread(self._write_seq_mark, self._last_seq, bytes(self._last_hash))

    def skip_past(self, seq: int, reason: str) -> bool:
        """Declare every seq up to `seq` taken: the next entry is a `journal_gap` after it.

        For a journal found behind its seq mark or behind the store. Returns False if the
        journal is not behind `seq` (nothing to declare).
        """
        if seq <= max(self._last_seq, self._skip_past):
            return False
        self._skip_past, self._skip_reason = seq, reason
        log.error(
            "journal_tail_lost",
            path=str(self.path),
            last_seq=self._last_seq,
            missing_from=self._last_seq + 1,
            missing_to=seq,
            reason=reason,
            hint="the sales in these seqs are not in this journal; restore them from a backup "
            "(edgectl journal backup copies) if they matter. Selling goes on after them",
        )
        self._wake.set()
        return True

    def _write_seq_mark(self, seq: int, digest: bytes) -> None:
        """Record the head in the seq mark; a failure is logged, never fails a commit."""
        if self._seq_mark is None:
            return  # it could not be opened (logged at open)
        try:
            self._seq_mark.write(seq, digest)
        except OSError as exc:
            error: OSError | None = exc
        else:
            error = None
        if error is not None and not self._seq_mark_failing:
            log.error(
                "journal_seq_mark_failed",
                path=str(self._seq_mark.path),
                seq=seq,
                error=str(error),
                hint="sales are journaled; a lost journal tail would go unnoticed",
            )
        self._seq_mark_failing = error is not None

    async def _mark_open(self) -> None:
        """Say "open" in the main file itself, so that a lost -wal is seen (journal.preflight).

        RESTART, not TRUNCATE: the -wal must keep content while the journal is open. The writer
        calls this before its first group if the open could not (a full disk).
        """
        await self._fetch("UPDATE run_state SET open = 1, since = ?", (utc_now_iso(),))
        self._open_marked = True
        ((busy, _, _),) = await self._fetch("PRAGMA wal_checkpoint(RESTART)")
        if busy:
            log.warning(
                "journal_open_not_checkpointed",
                path=str(self.path),
                hint="a reader held the journal; a lost -wal may go unnoticed until the next start",
            )

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and fetch its rows in a single hop to the database thread."""
        return list(await self._db.execute_fetchall(sql, params))

    @contextlib.asynccontextmanager
    async def _sqlite(self, doing: str) -> AsyncIterator[None]:
        """Raise a sqlite3 error as a JournalError (JournalFullError on a full disk)."""
        try:
            yield
        except sqlite3.Error as exc:
            await self._end_transaction()
            raise state.describe(self.path, exc, doing) from exc

    async def _end_transaction(self) -> None:
        """Roll back whatever a failed statement left open, so the next one is durable."""
        try:
            await self._db.rollback()  # a no-op outside a transaction
        except sqlite3.Error as exc:
            log.warning("journal_rollback_failed", path=str(self.path), error=str(exc))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement in its own durable transaction, for the journal's other tables."""
        async with self._sqlite("writing a record"):
            return await self._fetch(sql, params)

    async def _load_oldest_pending(self) -> None:
        self._oldest_pending = await self._created_at(self._acked_upto + 1)

    async def _created_at(self, seq: int) -> str | None:
        rows = await self._fetch("SELECT created_at, min(seq) FROM entries WHERE seq >= ?", (seq,))
        return None if rows[0][0] is None else str(rows[0][0])  # created_at of min(seq)'s row

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
        if self._writer is None or self._writer.done():
            raise JournalError(
                f"journal {self.path}: the journal writer is not running, the sale was not "
                "committed; retry with the same id, and restart edged if this persists"
            )
        future: asyncio.Future[CommitResult] = self._loop.create_future()
        self._queue.append(_Pending(sale["id"], sale_json, future))
        self._wake.set()
        # A caller that goes away cancels only this future: the queued sale is still written
        # (the writer skips futures that are done), so a commit on disk is never undone.
        return await future

    def health(self, stuck_after_s: float = WRITER_STUCK_S) -> WriterHealth:
        """Whether the writer is alive and making progress, for the daemon's watchdog."""
        waiting = [item for item in self._in_flight + self._queue if not item.future.done()]
        waited = self._loop.time() - waiting[0].queued_at if waiting else 0.0
        alive = self._writer is not None and not self._writer.done()
        return WriterHealth(
            alive=alive,
            stuck=waited > stuck_after_s,
            waiting=len(waiting),
            oldest_wait_s=waited,
            failing_since=self._failing_since,
            last_error=self._last_error,
        )

    def ensure_writer(self) -> bool:
        """Start the writer again if it ended unasked (for the daemon's supervisor).

        Returns True if it had to be restarted; the new writer first reloads the chain's head
        from the file, so a group that was cut short is neither lost nor written twice.
        """
        if self._closing or (self._writer is not None and not self._writer.done()):
            return False
        self._start_writer(recover=True)
        log.warning("journal_writer_restarted", path=str(self.path), last_seq=self._last_seq)
        return True

    def _start_writer(self, *, recover: bool) -> None:
        self._writer = asyncio.create_task(self._write_loop(recover), name="journal-writer")
        self._writer.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        """An unasked end fails every waiting commit at once instead of leaving it hanging."""
        error = None if task.cancelled() else task.exception()
        if self._closing and not task.cancelled() and error is None:
            return
        reason = "cancelled" if task.cancelled() else f"{type(error).__name__}: {error}"
        stranded = [item for item in self._in_flight + self._queue if not item.future.done()]
        self._in_flight, self._queue = [], []
        log.error(
            "journal_writer_ended",
            path=str(self.path),
            reason=reason,
            sale_ids=[item.sale_id for item in stranded],
            last_seq=self._last_seq,
            exc_info=error,
        )
        failure = JournalError(
            f"journal {self.path}: the journal writer stopped ({reason}); the outcome of this "
            "commit is unknown. Retry with the same id: a sale already committed is answered "
            "as a duplicate, never stored twice"
        )
        for item in stranded:
            item.future.set_exception(failure)

    async def _write_loop(self, recover: bool) -> None:
        if recover:
            await self._reload_head()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._adopt_upto is not None:
                await self._adopt(self._adopt_upto)
            if not self._queue and self._skip_past > self._last_seq:
                await self._write_gap_alone()
            while self._queue:
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                self._in_flight = group
                try:
                    await self._write_group(group)
                except Exception as exc:  # any failure belongs to this group alone
                    await self._fail_group(group, exc)
                self._fail_unanswered(group)
                self._in_flight = []
            if self._closing:
                return

    def _fail_unanswered(self, group: list[_Pending]) -> None:
        """No caller waits forever: one the group left unanswered (a bug) is failed loudly."""
        unanswered = [item for item in group if not item.future.done()]
        if not unanswered:
            return
        log.error(
            "journal_commit_unanswered",
            path=str(self.path),
            sale_ids=[item.sale_id for item in unanswered],
            last_seq=self._last_seq,
        )
        failure = JournalError(
            f"journal {self.path}: the journal writer left this commit unanswered (a bug in "
            "edged; please report it); its outcome is unknown. Retry with the same id: a sale "
            "already committed is answered as a duplicate, never stored twice"
        )
        for item in unanswered:
            item.future.set_exception(failure)

    async def _write_group(self, group: list[_Pending]) -> None:
        """Write the group's sales and answer its callers; raise for those left unanswered."""
        by_id: dict[str, _Pending] = {}
        for item in group:
            by_id.setdefault(item.sale_id, item)
        firsts = list(by_id.values())
        if not self._open_marked:
            await self._mark_open()
        try:
            written = await self._insert(firsts)
        except sqlite3.IntegrityError:
            # Some ids were committed before (a UI retrying after a lost answer). Answer those
            # first, so that a failure writing the others cannot take their first result away.
            known = await self._committed_before(firsts)
            self._answer(group, known)
            written = await self._insert([item for item in firsts if item.sale_id not in known])
        self._answer(group, written)
        if self._failing_since is not None:
            log.warning("journal_write_recovered", path=str(self.path), since=self._failing_since)
            self._failing_since = None

    @staticmethod
    def _answer(group: list[_Pending], stored: _Stored) -> None:
        """Answer every caller whose sale id is in `stored`: the first writer gets the result,
        the same content again is a duplicate, other content a conflict."""
        for item in group:
            if item.sale_id not in stored:
                continue
            result, mark = stored[item.sale_id]
            if not mark.holds(item.sale_id, item.sale_json):
                outcome: CommitResult | Exception = SaleConflictError(item.sale_id, result.seq)
            else:
                outcome = result
                stored[item.sale_id] = (msgspec.structs.replace(result, duplicate=True), mark)
            if item.future.done():
                continue  # its caller went away
            if isinstance(outcome, Exception):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    async def _fail_group(self, group: list[_Pending], exc: Exception) -> None:
        """Fail the group's unanswered callers with one error, logged once; then recover."""
        error = state.write_error(self.path, exc)
        failed = [item for item in group if item.future.cancelled() or not item.future.done()]
        fields: dict[str, Any] = {
            "path": str(self.path),
            "sale_ids": [item.sale_id for item in failed],
            "last_seq": self._last_seq,  # none of them took a seq; everything up to it is kept
        }
        if isinstance(exc, sqlite3.Error) and state.is_disk_full(exc):
            log.critical("journal_disk_full", **fields)
        elif isinstance(exc, sqlite3.Error):
            log.error("journal_write_failed", error=str(exc), **fields)
        else:
            log.error("journal_write_failed", exc_info=exc, **fields)
        for item in failed:
            if not item.future.done():
                item.future.set_exception(error)
        self._failing_since = self._failing_since or utc_now_iso()
        self._last_error = str(error)
        await self._end_transaction()
        await self._reload_head()

    async def _reload_head(self) -> None:
        """Take the chain's head from the file: a write whose outcome was unknown may be there."""
        try:
            rows = await self._fetch("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")
            if not rows or rows[0][0] <= self._last_seq:
                return
            previous, (seq, head) = self._last_seq, (rows[0][0], bytes(rows[0][1]))
            await asyncio.to_thread(self._write_seq_mark, seq, head)
            acked = -1
            while acked != self._acked_upto:  # an ack recorded meanwhile moves the oldest
                acked = self._acked_upto
                oldest = await self._created_at(acked + 1)
            self._last_seq, self._last_hash, self._oldest_pending = seq, head, oldest
        except sqlite3.Error as exc:
            # The next group fails on the seq's uniqueness and reloads again: no fork, no gap.
            log.warning("journal_head_reload_failed", path=str(self.path), error=str(exc))
            return
        log.warning(
            "journal_head_reloaded", path=str(self.path), last_seq=self._last_seq, was=previous
        )
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()

    async def _write_gap_alone(self) -> None:
        """Declare a lost tail at once, with no sale waiting (found at open or by an ack)."""
        try:
            await self._insert([])
        except Exception as exc:  # the next commit writes it first, or fails loudly itself
            log.exception("journal_gap_not_written", path=str(self.path), error=str(exc))
            await self._end_transaction()

    def _receipt_no(self, seq: int) -> str:
        number = self._format.format(store=self.store_id, terminal=self.terminal_id, seq=seq)
        if self._adoption_token is not None:
            number += PROVISIONAL_MARK.format(token=self._adoption_token)
        return number

    @property
    def adoption_pending(self) -> bool:
        """A new journal that has not yet heard the store: its entries are provisional."""
        return self._adoption_token is not None

    async def wait_adopted(self) -> None:
        """Return once no adoption is pending (at once for most journals)."""
        await self._adopted.wait()

    def resolve_adoption(self, store_upto: int) -> None:
        """The store holds seqs 1..store_upto for this terminal (0: none): renumber past them.

        The first answer counts; asked again, the writer tries it again (after a full disk)."""
        if self._adoption_token is None:
            return
        if self._adopt_upto is None:
            self._adopt_upto = store_upto
        self._wake.set()

    async def _adopt(self, store_upto: int) -> None:
        """Renumber the provisional entries after the store's seqs, in one transaction."""
        now = utc_now_iso()
        try:
            found = await self._fetch(f"SELECT {ENTRY_SELECT} FROM entries ORDER BY seq")
            rows = [row_entry(row) for row in found] if store_upto else []
            damaged = next((entry for entry in rows if entry.damage is not None), None)
            renumber = store_upto > 0 and damaged is None
            await self._fetch("BEGIN IMMEDIATE")
            if renumber:
                params, seq, head = renumbered(
                    [(e.id, e.receipt_no, e.created_at, e.sale_json.decode()) for e in rows],
                    store_upto=store_upto,
                    receipt_no=self._receipt_no(store_upto + 1),
                    now=now,
                )
                await self._fetch("DELETE FROM entries")
                await self._fetch("DELETE FROM sale_ids")
                await self._fetch("DELETE FROM journal_gaps")
                for start in range(0, len(params), 7 * MAX_GROUP):
                    chunk = params[start : start + 7 * MAX_GROUP]
                    marks = ",".join(["(?,?,?,?,?,?,?)"] * (len(chunk) // 7))
                    await self._fetch(f"INSERT INTO entries ({_COLUMNS}) VALUES {marks}", chunk)
            await self._fetch(
                "UPDATE adoption SET state = ?, store_upto = ?, resolved_at = ?",
                ("adopted" if renumber else "none", store_upto, now),
            )
            await self._fetch("COMMIT")
        except sqlite3.Error as exc:
            await self._end_transaction()  # kept: tried again at the writer's next wake
            log.exception("journal_adoption_failed", path=str(self.path), error=str(exc))
            return
        if damaged is not None:  # renumbering would hash damaged bytes anew: declare a gap
            log.error(
                "journal_adoption_refused",
                path=str(self.path),
                seq=damaged.seq,
                hint="a provisional entry is damaged; this journal continues after the store's "
                "seqs with a journal_gap entry, and its earlier entries reach the store as "
                "seq_conflict evidence",
            )
            self.skip_past(store_upto, adoption_reason(store_upto))
        elif renumber:  # read first, then head, gaps, age and state move in one step
            await asyncio.to_thread(self._write_seq_mark, seq, head)
            gaps = await self._read_gaps()
            oldest = await self._created_at(self._acked_upto + 1)
            self._last_seq, self._last_hash = seq, head
            (self._gaps, self._gap_count), self._oldest_pending = gaps, oldest
        self._adoption_token, self._adopt_upto = None, None
        self._adopted.set()
        if damaged is not None:
            return
        log.warning(
            "journal_adopted" if renumber else "journal_adoption_none",
            path=str(self.path),
            store_upto=store_upto,
            renumbered=len(rows) if renumber else 0,
            last_seq=self._last_seq,
        )
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()

    async def _insert(self, items: list[_Pending]) -> _Stored:
        """Chain and write `items` as new entries in one statement (one transaction, one fsync).

        A lost tail declared by skip_past() goes first, as a `journal_gap` entry. The statement
        also writes their sale id index rows (a trigger, schema migration 4), and fails on an
        id the index holds. The seq mark is written meanwhile. The journal's head moves only
        once both are done.
        """
        stored: _Stored = {}
        created_at = utc_now_iso()
        gap: GapEntry | None = None
        if self._skip_past > self._last_seq:
            gap = gap_entry(
                self._last_seq,
                self._last_hash,
                skip_past=self._skip_past,
                reason=self._skip_reason,
                receipt_no=self._receipt_no(self._skip_past + 1),
                now=created_at,
            )
        elif not items:
            return stored
        params: list[Any] = list(gap.row()) if gap else []
        seq, prev = (gap.record.seq, gap.hash) if gap else (self._last_seq, self._last_hash)
        for item in items:
            seq += 1
            receipt_no = self._receipt_no(seq)
            digest = entry_hash(
                prev, entry_bytes(seq, item.sale_id, receipt_no, created_at, item.sale_json)
            )
            sale_text = item.sale_json.decode()
            params += (seq, item.sale_id, receipt_no, created_at, sale_text, prev, digest)
            result = CommitResult(seq, receipt_no, digest.hex(), duplicate=False)
            stored[item.sale_id] = (result, _Mark(seq, receipt_no, created_at, prev, digest))
            prev = digest
        rows = ",".join(["(?,?,?,?,?,?,?)"] * (len(items) + (gap is not None)))
        await self._fetch(f"INSERT INTO entries ({_COLUMNS}) VALUES {rows}", params)
        # After the commit, never before: a mark ahead of the journal would declare sales lost
        # that were never confirmed (a kill -9 between the two).
        await asyncio.to_thread(self._write_seq_mark, seq, prev)
        self._transactions += 1
        if self._oldest_pending is None:
            self._oldest_pending = gap.record.found_at if gap else created_at
        self._last_seq, self._last_hash = seq, prev
        if gap is not None:
            self._gap_written(gap.record)
        committed, self._committed = self._committed, asyncio.Event()
        committed.set()
        return stored

    def _gap_written(self, record: GapRecord) -> None:
        self._gaps = [record, *self._gaps][:RECENT_GAPS]
        self._gap_count += 1
        log.error(
            "journal_gap_recorded",
            path=str(self.path),
            seq=record.seq,
            missing_from=record.first,
            missing_to=record.last,
            reason=record.reason,
        )

    async def _committed_before(self, items: list[_Pending]) -> _Stored:
        """The sales committed before under these ids, from the sale id index: it remembers
        them after their entries were purged (a read: works on a full disk)."""
        marks = ",".join("?" * len(items))
        rows = await self._fetch(
            "SELECT id, seq, receipt_no, created_at, prev_hash, hash FROM sale_ids "
            f"WHERE id IN ({marks})",
            [item.sale_id for item in items],
        )
        return {
            sale_id: (
                CommitResult(seq, receipt_no, digest.hex(), duplicate=True),
                _Mark(seq, receipt_no, created_at, bytes(prev), bytes(digest)),
            )
            for sale_id, seq, receipt_no, created_at, prev, digest in rows
        }

    # -- reads ---------------------------------------------------------------------------

    async def get(self, sale_id: str) -> tuple[StoredEntry, bool] | None:
        """The entry for a sale id and whether the store has acknowledged it."""
        async with self._sqlite(f"reading sale {sale_id}"):
            rows = await self._fetch(f"SELECT {ENTRY_SELECT} FROM entries WHERE id = ?", (sale_id,))
        if not rows:
            return None
        entry = row_entry(rows[0])
        return entry, entry.seq <= self._acked_upto

    async def unacked(self, after_seq: int, limit: int) -> list[StoredEntry]:
        """Entries not yet acknowledged, in seq order, starting after `after_seq`; a damaged
        row is an entry with its `damage` said, never an error.

        Only up to the head (`stats().last_seq`): a group is in the file a moment before the
        writer takes it as its head (the seq mark is written in between), and an entry sent
        and acknowledged in that moment would make the store look ahead of the journal."""
        async with self._sqlite("reading unacknowledged entries"):
            rows = await self._fetch(
                f"SELECT {ENTRY_SELECT} FROM entries WHERE seq > ? AND seq <= ?"
                " ORDER BY seq LIMIT ?",
                (max(after_seq, self._acked_upto), self._last_seq, limit),
            )
        return [row_entry(row) for row in rows]

    async def retained(self, after_seq: int, upto: int, limit: int) -> list[StoredEntry]:
        """Entries after `after_seq` up to `upto`, acknowledged ones included (a resend the
        store asked for), in seq order; never past the head, as for `unacked`."""
        async with self._sqlite("reading entries to resend"):
            rows = await self._fetch(
                f"SELECT {ENTRY_SELECT} FROM entries WHERE seq > ? AND seq <= ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, min(upto, self._last_seq), limit),
            )
        return [row_entry(row) for row in rows]

    async def retained_from(self) -> int:
        """The first seq the journal can send from: entries up to the anchor were purged, and
        the seqs of a journal_gap (a lost tail, an adoption) that follows on from them were
        never held. A gap after entries the journal still holds is not counted: those entries
        are sent, and the gap's own entry declares the rest, which the store then records as
        lost (saying the whole run was unavailable would have the store give up on them)."""
        async with self._sqlite("reading the purge anchor"):
            ((anchor_seq,),) = await self._fetch("SELECT anchor_seq FROM outbox")
            gaps = await self._fetch("SELECT first, last FROM journal_gaps ORDER BY first")
        first = int(anchor_seq) + 1
        for gap_first, gap_last in gaps:
            if int(gap_first) <= first:
                first = max(first, int(gap_last) + 1)
        return first

    def stats(self) -> JournalStats:
        return JournalStats(
            last_seq=self._last_seq,
            acked_upto=self._acked_upto,
            pending=self._last_seq - self._acked_upto - self._skipped_after(self._acked_upto),
            oldest_pending_created_at=self._oldest_pending,
            last_ack_at=self._last_ack_at,
            sale_transactions=self._transactions,
        )

    def _skipped_after(self, seq: int) -> int:
        """How many seqs after `seq` are declared lost (they have no entry)."""
        return sum(
            max(0, gap.last - max(gap.first, seq + 1) + 1) for gap in self._gaps if gap.seq > seq
        )

    def gaps(self) -> dict[str, Any]:
        """The declared gaps for `status`: how many, and the most recent ones."""
        return {
            "count": self._gap_count,
            "recent": [gap.report(self._acked_upto) for gap in self._gaps],
        }

    @property
    def last_ack_store_at(self) -> str | None:
        """The store's clock when it sent the last ack that moved acked_upto."""
        return self._last_ack_store_at

    @property
    def last_seq(self) -> int:
        return self._last_seq

    async def wait_committed(self, after_seq: int) -> None:
        """Return once an entry with seq > after_seq exists."""
        while self._last_seq <= after_seq:
            await self._committed.wait()

    # -- the writer's health, for the daemon's supervisor and watchdog ---------------------

    def writer_problem(self) -> str | None:
        """Why commits are not being written right now, or None: for the daemon's watchdog."""
        health = self.health()
        if not health.alive:
            return "the journal writer is not running"
        if health.stuck:
            return f"commits have waited more than {WRITER_STUCK_S:g} s for the journal writer"
        return None

    async def watch_writer(self) -> NoReturn:
        """Start the writer if it is not running, then wait on it: it must never end.

        Raises JournalError when it ended anyway, so that the caller's supervisor logs it and
        calls this again, which starts a new writer (ensure_writer).
        """
        if self._closing:
            raise JournalError(f"journal {self.path}: closed")
        self.ensure_writer()
        writer = self._writer
        assert writer is not None
        try:
            await asyncio.shield(writer)
        except asyncio.CancelledError:
            if not writer.cancelled():
                raise  # our caller is stopping; close() finishes the writer
        raise JournalError(f"journal {self.path}: the journal writer stopped unexpectedly")

    # -- outbox and retention ------------------------------------------------------------

    async def mark_acked(self, upto: int, store_at: str | None = None) -> int:
        """Record the store's cumulative ack (and the store's clock when it sent it, for
        `doctor`); returns the new acked_upto."""
        upto = min(upto, self._last_seq)
        if upto <= self._acked_upto:
            return self._acked_upto
        now = utc_now_iso()
        store_at = store_at or self._last_ack_store_at
        async with self._sqlite(f"recording the store's ack up to seq {upto}"):
            await self._fetch(
                "UPDATE outbox SET acked_upto = ?, last_ack_at = ?, last_ack_store_at = ?"
                " WHERE acked_upto < ?",
                (upto, now, store_at, upto),
            )
            # Read before any state moves: stats() never says "nothing pending" with the
            # age of a sale the store has just acknowledged (an `outbox` event in between).
            oldest = await self._created_at(upto + 1)
            self._acked_upto, self._last_ack_at = upto, now
            self._last_ack_store_at = store_at
            self._oldest_pending = oldest
        return upto

    async def purge(self, retain_days: float, id_retain_days: float = ID_RETAIN_DAYS) -> int:
        """Delete acknowledged entries older than `retain_days`, keeping the chain's anchor,
        and the sale id index rows of purged entries older than `id_retain_days`."""
        cutoff, id_cutoff = _cutoff(retain_days), _cutoff(id_retain_days)
        async with self._sqlite("purging acknowledged entries"):
            ((anchor_seq, anchor_hash),) = await self._fetch(
                "SELECT anchor_seq, anchor_hash FROM outbox"
            )
            rows = await self._fetch(
                "SELECT seq, hash FROM entries WHERE seq <= ? AND created_at < ? "
                "ORDER BY seq DESC LIMIT 1",
                (self._acked_upto, cutoff),
            )
            if rows:
                anchor_seq, anchor_hash = rows[0]
            ids = await self._fetch(
                "SELECT seq FROM sale_ids WHERE seq <= ? AND created_at < ? "
                "ORDER BY seq DESC LIMIT 1",
                (anchor_seq, id_cutoff),
            )
            if not rows and not ids:
                return 0
            id_upto = int(ids[0][0]) if ids else 0
            purged_rows = await self._fetch(
                "SELECT count(*) FROM entries WHERE seq <= ?", (int(anchor_seq),)
            )
            # One script, one hop: no group commit can interleave with this transaction.
            await self._db.executescript(
                f"BEGIN IMMEDIATE; DELETE FROM entries WHERE seq <= {int(anchor_seq)}; "
                f"UPDATE outbox SET anchor_seq = {int(anchor_seq)}, "
                f"anchor_hash = X'{bytes(anchor_hash).hex()}'; "
                f"DELETE FROM sale_ids WHERE seq <= {id_upto}; COMMIT;"
            )
        purged = int(purged_rows[0][0]) if rows else 0
        log.info("journal_purged", entries=purged, anchor_seq=anchor_seq, sale_ids_upto=id_upto)
        return purged

    async def close(self) -> None:
        """Answer the commits already accepted, then close the file, even on a full disk."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await asyncio.wait([self._writer])  # it ends once the queue is answered
        try:
            await self._fetch("UPDATE run_state SET open = 0")
            await self._fetch("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # Nothing is lost: every commit stays in the -wal file, replayed on the next open.
            log.warning(
                "journal_checkpoint_failed",
                path=str(self.path),
                error=str(exc),
                hint="keep the -wal file next to the journal; it holds the latest sales",
            )
        if self._seq_mark is not None:
            self._seq_mark.close()
        try:
            await self._db.close()
        except sqlite3.Error as exc:
            raise state.describe(self.path, exc, "closing") from exc
        log.info("journal_closed", path=str(self.path), last_seq=self._last_seq)
