"""The collector's durable store: idempotent, chain-verified, and the only source of `upto`.

Each terminal's entries are kept once (unique on store/terminal/seq and on the sale id). The
acknowledgement a terminal gets is the contiguous prefix: the highest seq up to which every entry
is stored and links by hash to its predecessor. Entries after a gap or a chain break are kept but
never acknowledged past it, so the terminal resends and nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edged.clock import utc_now_iso
from edged.collector.dbfile import (
    WAL_SUFFIX,
    FileIdentity,
    check_identity,
    check_may_open,
    dev_ino,
    read_marker,
    write_marker,
)
from edged.collector.report import TerminalReport, recent_problems, terminal_report
from edged.collector.schema import (
    CollectorDbChangedError,
    CollectorStoreError,
    db_identity,
    prepare,
    sqlite_path,
)
from edged.collector.verify import GENESIS_HEX, Rejected, check_entry
from edged.wire import DEFAULT_TOPIC_PREFIX, WIRE_VERSION, Entry, Topics, TxBatch, encode

log = structlog.get_logger(__name__)

INSERT_ROWS_MAX = 500  # 11 variables a row: well under SQLite's 32766 per statement

_INSERT_HEAD = (
    "INSERT INTO transactions (store_id, terminal_id, seq, id, receipt_no, created_at,"
    " prev_hash, hash, body, received_at, received_by) VALUES "
)
_INSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_MANY_TAIL = " ON CONFLICT DO NOTHING RETURNING seq"


RAW_KEPT_BYTES = 1024 * 1024  # of a quarantined message; its size and SHA-256 cover the rest
QUARANTINE_SEQ = 0  # `problems.seq` of a quarantined message: it has no seq we could trust
_SAVEPOINT = "batch"
# sqlite3 errors that come from the values bound, not from the database: the batch is at fault.
_DATA_ERRORS = (
    sqlite3.DataError,
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)

TerminalKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Message:
    """A tx message as it arrived, kept as evidence if it has to be quarantined."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """The entries one tx message carries for one terminal."""

    store_id: str
    terminal_id: str
    entries: Sequence[Entry]
    message: Message

    @classmethod
    def of(cls, store_id: str, terminal_id: str, entries: Sequence[Entry]) -> Batch:
        """The batch a terminal sends for `entries`, with the message it would publish."""
        topic = Topics(DEFAULT_TOPIC_PREFIX, store_id, terminal_id).tx
        tx = TxBatch(v=WIRE_VERSION, store=store_id, terminal=terminal_id, entries=list(entries))
        return cls(store_id, terminal_id, entries, Message(topic, encode(tx)))


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A message that cannot be stored (malformed, out of range, oversized): kept in `problems`,
    settled so that it is not redelivered, and never acknowledged to its terminal."""

    message: Message
    store_id: str  # from its topic; "" if the topic names none
    terminal_id: str
    reason: str


@dataclass(slots=True)
class _State:
    """A terminal's row of `terminals`, read and written inside one transaction."""

    contiguous_upto: int
    last_hash: str
    max_seq: int
    gap_from: int | None
    gap_to: int | None
    chain_broken_at: int | None
    entries: int
    duplicates: int
    problems: int
    new: bool
    inserted: int = 0
    min_problem_seq: int | None = None
    touched_at: str = ""


class CollectorStore:
    """SQLite store of forwarded journal entries. Not thread-safe: use it from one thread."""

    def __init__(
        self, conn: sqlite3.Connection, path: str, received_by: str, files: FileIdentity
    ) -> None:
        self._conn = conn
        self.path = path
        self.received_by = received_by
        self._files = files

    @classmethod
    def open(cls, path: str, *, received_by: str = "", init: bool = False) -> CollectorStore:
        """Open the store at `path`, creating it only on a first start or with `init`.

        WAL, synchronous=FULL. A database that the marker says existed but is missing or was
        replaced raises CollectorDbChangedError unless `init` (an admin's decision) is given.
        """
        parent = Path(path).parent
        if not parent.is_dir():
            raise CollectorStoreError(
                f"cannot open collector db {path}: directory {parent} does not exist; create it"
            )
        had = read_marker(path)
        check_may_open(path, had=had, init=init)
        try:
            conn = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"cannot open collector db {path}: {exc}") from exc
        try:
            prepare(conn, path, may_create=init or had is None)
            found = db_identity(conn)
            check_identity(path, had=had, found=found, init=init)
            files = FileIdentity.of(path)
        except sqlite3.Error as exc:
            conn.close()
            raise CollectorStoreError(f"cannot prepare collector db {path}: {exc}") from exc
        except CollectorStoreError:
            conn.close()
            raise
        if files is None:
            conn.close()
            raise CollectorDbChangedError(f"collector db {path} was deleted while it was opened")
        if found != had:
            write_marker(path, found)
            log.info("collector_db_adopted", db=path, db_id=found, previous=had)
        return cls(conn, path, received_by, files)

    def close(self) -> None:
        self._conn.close()

    def store_batch(self, store_id: str, terminal_id: str, entries: Sequence[Entry]) -> int:
        """Store one batch in one transaction; return the `upto` to acknowledge."""
        result = self.store_batches([Batch.of(store_id, terminal_id, entries)])
        return result.get((store_id, terminal_id), 0)

    def store_batches(self, items: Iterable[Batch | Quarantine]) -> dict[TerminalKey, int]:
        """Store several batches in ONE transaction; return the `upto` per terminal.

        Duplicates are ignored; conflicting or invalid entries are recorded in `problems`, logged
        and never stored, and hold the terminal's `upto` below their seq. A batch that cannot be
        stored at all is rolled back alone and quarantined, as the given quarantines are: the
        other batches are stored. The database file is checked before and after: a deleted or
        replaced one raises CollectorDbChangedError, and then nothing may be acknowledged.
        """
        now = utc_now_iso()
        conn = self._conn
        states: dict[TerminalKey, _State] = {}
        try:
            self._check_files()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    if isinstance(item, Quarantine):
                        _quarantine(conn, item, now)
                    else:
                        self._put_batch(conn, states, item, now)
                result: dict[TerminalKey, int] = {}
                for key, state in states.items():
                    if state.inserted or state.new:
                        _advance(conn, key, state)
                    _save_state(conn, key, state)
                    upto = state.contiguous_upto
                    if state.min_problem_seq is not None:
                        upto = min(upto, state.min_problem_seq - 1)
                    result[key] = max(upto, 0)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot store: {exc}") from exc
        self._check_files()  # the commit went to the file that will be read later
        for (store_id, terminal_id), state in states.items():
            if state.inserted:
                log.debug(
                    "entries_stored",
                    store=store_id,
                    terminal=terminal_id,
                    inserted=state.inserted,
                    upto=result[(store_id, terminal_id)],
                )
        return result

    def _check_files(self) -> None:
        """Raise CollectorDbChangedError if the database file at the path is not ours any more.

        Then our WAL, still named after the path, would be read as part of whatever file is
        put there (a backup restored, another database): it is emptied into our own file first.
        """
        try:
            self._files.check(self.path)
        except CollectorDbChangedError:
            if self._files.wal is not None and self._files.wal == dev_ino(self.path + WAL_SUFFIX):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            raise

    def _put_batch(
        self, conn: sqlite3.Connection, states: dict[TerminalKey, _State], batch: Batch, now: str
    ) -> None:
        """Store one batch under a savepoint; if its values break the store, quarantine it."""
        key = (batch.store_id, batch.terminal_id)
        before = states.get(key)
        saved = replace(before) if before is not None else None
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            state = before or _load_state(conn, key)
            states[key] = state
            state.touched_at = now
            self._put_entries(conn, key, state, sorted(batch.entries, key=_seq_of), now)
        except Exception as exc:
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, _DATA_ERRORS):
                raise  # the database failed (full, locked, I/O): the whole group is retried
            conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            conn.execute(f"RELEASE {_SAVEPOINT}")
            if saved is None:
                states.pop(key, None)
            else:
                states[key] = saved
            reason = f"cannot be stored: {type(exc).__name__}: {exc}"
            _quarantine(conn, Quarantine(batch.message, *key, reason), now, error=exc)
            return
        conn.execute(f"RELEASE {_SAVEPOINT}")

    def _put_entries(
        self,
        conn: sqlite3.Connection,
        key: TerminalKey,
        state: _State,
        entries: list[Entry],
        now: str,
    ) -> None:
        """Store entries (sorted by seq) with one multi-row INSERT; analyse only the misses.

        Equivalent to `_put` entry by entry: the multi-row INSERT inserts rows in order with the
        same conflict rule, and problems are recorded afterwards in seq order. The one case where
        a miss's analysis could see a row stored after it, the same seq twice in the batch,
        takes the entry-by-entry path.
        """
        checked = [check_entry(entry) for entry in entries]
        valid = [(e, body) for e, body in zip(entries, checked, strict=True) if type(body) is str]
        seqs = {entry.seq for entry, _ in valid}
        if len(seqs) != len(valid):
            for entry, body in zip(entries, checked, strict=True):
                self._put(conn, key, state, entry, body, now=now)
            return
        inserted: set[int] = set()
        for start in range(0, len(valid), INSERT_ROWS_MAX):
            chunk = valid[start : start + INSERT_ROWS_MAX]
            params: list[object] = []
            for entry, body in chunk:
                params += self._row(key, entry, body, now)
            sql = _INSERT_HEAD + ",".join([_INSERT_ROW] * len(chunk)) + _INSERT_MANY_TAIL
            inserted.update(seq for (seq,) in conn.execute(sql, params))
        if inserted:
            state.inserted += len(inserted)
            state.entries += len(inserted)
            state.max_seq = max(state.max_seq, *inserted)
        if len(inserted) == len(checked):
            return
        for entry, body in zip(entries, checked, strict=True):
            if isinstance(body, Rejected):
                _record_problem(conn, state, entry, key=key, rejected=body, now=now)
            elif entry.seq not in inserted:
                self._not_inserted(conn, key, state, entry, now)

    def _row(self, key: TerminalKey, entry: Entry, body: str, now: str) -> tuple[object, ...]:
        """The `transactions` row of a verified entry, in _INSERT_HEAD's column order."""
        return (
            key[0],
            key[1],
            entry.seq,
            entry.id,
            entry.receipt_no,
            entry.created_at,
            entry.prev_hash,
            entry.hash,
            body,
            now,
            self.received_by,
        )

    def _put(
        self,
        conn: sqlite3.Connection,
        key: TerminalKey,
        state: _State,
        entry: Entry,
        checked: str | Rejected,
        *,
        now: str,
    ) -> None:
        if isinstance(checked, Rejected):
            _record_problem(conn, state, entry, key=key, rejected=checked, now=now)
            return
        cur = conn.execute(
            _INSERT_HEAD + _INSERT_ROW + " ON CONFLICT DO NOTHING",
            self._row(key, entry, checked, now),
        )
        if cur.rowcount == 1:
            state.inserted += 1
            state.entries += 1
            state.max_seq = max(state.max_seq, entry.seq)
            return
        self._not_inserted(conn, key, state, entry, now)

    def _not_inserted(
        self, conn: sqlite3.Connection, key: TerminalKey, state: _State, entry: Entry, now: str
    ) -> None:
        """A valid entry the INSERT skipped: a resend (duplicate) or a seq or sale id conflict."""
        row = conn.execute(
            "SELECT hash FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq = ?",
            (key[0], key[1], entry.seq),
        ).fetchone()
        if row is not None:
            if row[0] == entry.hash:
                state.duplicates += 1
                return
            detail = f"seq {entry.seq} is already stored with hash {row[0]}"
            rejected = Rejected("seq_conflict", detail)
            _record_problem(conn, state, entry, key=key, rejected=rejected, now=now)
            return
        other = conn.execute(
            "SELECT store_id, terminal_id, seq FROM transactions WHERE id = ?", (entry.id,)
        ).fetchone()
        where = f"{other[0]}/{other[1]} seq {other[2]}" if other else "another entry"
        detail = f"sale id {entry.id} is already stored as {where}"
        rejected = Rejected("id_conflict", detail)
        _record_problem(conn, state, entry, key=key, rejected=rejected, now=now)

    def terminal_report(self) -> list[TerminalReport]:
        """Per terminal: contiguous_upto, gaps, chain problems and counters."""
        try:
            return terminal_report(self._conn)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc

    def problems(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent rejected or conflicting entries, newest first (bodies left out)."""
        try:
            return recent_problems(self._conn, limit)
        except sqlite3.Error as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc


def init_collector_db(db_url: str) -> str:
    """`edged collector init`: make the file at `db_url` this collector's database (created
    empty if missing, adopted if it is another one); returns what was done, for the admin."""
    path = sqlite_path(db_url)
    had = read_marker(path)
    existed = Path(path).exists()
    CollectorStore.open(path, init=True).close()
    now = read_marker(path)
    if not existed:
        return f"created an empty collector db {path} (identity {now})"
    if had is None or had == now:
        return f"collector db {path} is ready (identity {now})"
    return f"collector db {path} is now this collector's database (identity {now}, was {had})"


def _quarantine(
    conn: sqlite3.Connection, item: Quarantine, now: str, *, error: Exception | None = None
) -> None:
    """Keep a message that cannot be stored as evidence in `problems`, and log it at ERROR."""
    payload = item.message.payload
    digest = hashlib.sha256(payload).hexdigest()
    store_id, terminal_id, topic, reason = (
        _printable(text)
        for text in (item.store_id, item.terminal_id, item.message.topic, item.reason)
    )
    conn.execute(
        "INSERT INTO problems (store_id, terminal_id, seq, kind, hash, detail, body, first_at,"
        " last_at, count, topic, raw, raw_size) VALUES (?, ?, ?, 'quarantined', ?, ?, '', ?, ?,"
        " 1, ?, ?, ?) ON CONFLICT (store_id, terminal_id, seq, kind, hash)"
        " DO UPDATE SET last_at = excluded.last_at, count = count + 1",
        (
            store_id,
            terminal_id,
            QUARANTINE_SEQ,
            digest,
            reason,
            now,
            now,
            topic,
            payload[:RAW_KEPT_BYTES],
            len(payload),
        ),
    )
    log.error(
        "tx_quarantined",
        topic=topic,
        store=store_id,
        terminal=terminal_id,
        problem=reason,
        size=len(payload),
        sha256=digest,
        exc_info=error,
    )


def _printable(text: str) -> str:
    """`text` as SQLite can take it: a lone surrogate (never from the wire) becomes "?"."""
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def _record_problem(
    conn: sqlite3.Connection,
    state: _State,
    entry: Entry,
    *,
    key: TerminalKey,
    rejected: Rejected,
    now: str,
) -> None:
    """Keep a rejected entry as evidence, hold `upto` below it, and log it."""
    kind, detail = rejected.kind, rejected.detail
    state.problems += 1
    if state.min_problem_seq is None or entry.seq < state.min_problem_seq:
        state.min_problem_seq = entry.seq
    conn.execute(
        "INSERT INTO problems (store_id, terminal_id, seq, kind, hash, detail, body,"
        " first_at, last_at, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (store_id, terminal_id, seq, kind, hash)"
        " DO UPDATE SET last_at = excluded.last_at, count = count + 1",
        (
            key[0],
            key[1],
            entry.seq,
            kind,
            entry.hash,
            detail,
            msgspec.json.encode(entry).decode("utf-8", "replace"),
            now,
            now,
        ),
    )
    log.error(
        "entry_rejected",
        store=key[0],
        terminal=key[1],
        seq=entry.seq,
        kind=kind,
        problem=detail,
    )


def _seq_of(entry: Entry) -> int:
    return entry.seq


def _load_state(conn: sqlite3.Connection, key: TerminalKey) -> _State:
    row = conn.execute(
        "SELECT contiguous_upto, last_hash, max_seq, gap_from, gap_to, chain_broken_at,"
        " entries, duplicates, problems FROM terminals WHERE store_id = ? AND terminal_id = ?",
        key,
    ).fetchone()
    if row is None:
        return _State(0, GENESIS_HEX, 0, None, None, None, 0, 0, 0, new=True)
    upto, last_hash, max_seq, gap_from, gap_to, broken, entries, duplicates, problems = row
    return _State(
        upto, last_hash, max_seq, gap_from, gap_to, broken, entries, duplicates, problems, new=False
    )


def _advance(conn: sqlite3.Connection, key: TerminalKey, state: _State) -> None:
    """Walk stored entries past contiguous_upto while seq is consecutive and the chain links."""
    upto, last = state.contiguous_upto, state.last_hash
    gap: tuple[int, int] | None = None
    broken: int | None = None
    expected_prev = ""
    got_prev = ""
    rows = conn.execute(
        "SELECT seq, prev_hash, hash FROM transactions"
        " WHERE store_id = ? AND terminal_id = ? AND seq > ? ORDER BY seq",
        (key[0], key[1], upto),
    )
    for seq, prev_hash, hash_ in rows:
        if seq != upto + 1:
            gap = (upto + 1, seq - 1)
            break
        if prev_hash != last:
            broken, expected_prev, got_prev = seq, last, prev_hash
            break
        upto, last = seq, hash_
    rows.close()
    store_id, terminal_id = key
    if gap is not None and (state.gap_from, state.gap_to) != gap:
        log.warning(
            "gap_detected",
            store=store_id,
            terminal=terminal_id,
            seq=gap[0],
            missing_to=gap[1],
            contiguous_upto=upto,
        )
    elif gap is None and state.gap_from is not None:
        log.info("gap_closed", store=store_id, terminal=terminal_id, seq=state.gap_from, upto=upto)
    if broken is not None and state.chain_broken_at != broken:
        log.error(
            "chain_broken",
            store=store_id,
            terminal=terminal_id,
            seq=broken,
            expected_prev_hash=expected_prev,
            prev_hash=got_prev,
            contiguous_upto=upto,
        )
    state.contiguous_upto, state.last_hash = upto, last
    state.gap_from, state.gap_to = gap if gap else (None, None)
    state.chain_broken_at = broken


def _save_state(conn: sqlite3.Connection, key: TerminalKey, state: _State) -> None:
    conn.execute(
        "INSERT INTO terminals (store_id, terminal_id, contiguous_upto, last_hash, max_seq,"
        " gap_from, gap_to, chain_broken_at, entries, duplicates, problems, first_seen_at,"
        " last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (store_id, terminal_id) DO UPDATE SET"
        " contiguous_upto = excluded.contiguous_upto, last_hash = excluded.last_hash,"
        " max_seq = excluded.max_seq, gap_from = excluded.gap_from, gap_to = excluded.gap_to,"
        " chain_broken_at = excluded.chain_broken_at, entries = excluded.entries,"
        " duplicates = excluded.duplicates, problems = excluded.problems,"
        " last_seen_at = excluded.last_seen_at",
        (
            key[0],
            key[1],
            state.contiguous_upto,
            state.last_hash,
            state.max_seq,
            state.gap_from,
            state.gap_to,
            state.chain_broken_at,
            state.entries,
            state.duplicates,
            state.problems,
            state.touched_at,
            state.touched_at,
        ),
    )
