"""The collector's durable store: idempotent, chain-verified, and the only source of acks.

Each terminal's entries are kept once: a sale in `transactions` (unique on store/terminal/seq
and on the sale id), anything else in its seq's slot in `held` (slots.py). The acknowledgement
a terminal gets passes every seq the store holds something for (walk.py): only a seq never
received holds it back, so the terminal resends and nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog

from edged.clock import utc_now_iso
from edged.collector.bulk import insert_sales
from edged.collector.database import Database
from edged.collector.dbfile import read_marker
from edged.collector.dburl import DbTarget, as_target
from edged.collector.dialect import Conn
from edged.collector.pins import KeyPins
from edged.collector.problems import (
    QUARANTINE_SEQ,
    RAW_KEPT_BYTES,
    Message,
    Quarantine,
    quarantine,
    record_problem,
)
from edged.collector.rebuild import ResendPlan, accept_gap, plan_resend, record_answer
from edged.collector.report import TerminalReport, recent_problems, terminal_report
from edged.collector.schema import CollectorStoreError
from edged.collector.slots import Slot, held_seqs, hold, meet_held
from edged.collector.state import (
    Progress,
    TerminalKey,
    TerminalState,
    all_progress,
    load_state,
    save_state,
)
from edged.collector.verify import Rejected, Special, Verdict, check_entry
from edged.collector.walk import advance
from edged.wire import (
    DEFAULT_TOPIC_PREFIX,
    WIRE_VERSION,
    Entry,
    ResendAnswer,
    Sig,
    Topics,
    TxBatch,
    encode,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

# The columns of a `transactions` row (_row's order), with their PostgreSQL types.
_COLUMNS = (
    ("store_id", "text"),
    ("terminal_id", "text"),
    ("seq", "bigint"),
    ("id", "text"),
    ("receipt_no", "text"),
    ("created_at", "text"),
    ("prev_hash", "text"),
    ("hash", "text"),
    ("body", "text"),
    ("received_at", "text"),
    ("received_by", "text"),
)
_INSERT_HEAD = f"INSERT INTO transactions ({', '.join(name for name, _ in _COLUMNS)}) VALUES "
_INSERT_ROW = "(" + ", ".join("?" * len(_COLUMNS)) + ")"


_SAVEPOINT = "batch"

__all__ = [
    "QUARANTINE_SEQ",
    "RAW_KEPT_BYTES",
    "Batch",
    "CollectorStore",
    "Message",
    "Progress",
    "Quarantine",
    "TerminalKey",
]


@dataclass(frozen=True, slots=True)
class Batch:
    """The entries one tx message carries for one terminal."""

    store_id: str
    terminal_id: str
    entries: Sequence[Entry]
    message: Message
    sig: Sig | None = None  # the terminal's signature (pins.py checks it before anything)
    # check_entry's verdict for each entry, in `entries`' order; None: checked when stored.
    checked: Sequence[Verdict] | None = None

    def verified(self) -> Batch:
        """This batch with every entry checked now: pure work, done by the collector's event
        loop while the store thread writes the group before (service.py), not in its turn.
        An entry that breaks the check leaves it to the store, which quarantines the batch."""
        try:
            return replace(self, checked=[check_entry(entry) for entry in self.entries])
        except Exception:
            return self

    @classmethod
    def of(cls, store_id: str, terminal_id: str, entries: Sequence[Entry]) -> Batch:
        """The batch a terminal sends for `entries`, with the message it would publish."""
        topic = Topics(DEFAULT_TOPIC_PREFIX, store_id, terminal_id).tx
        tx = TxBatch(v=WIRE_VERSION, store=store_id, terminal=terminal_id, entries=list(entries))
        return cls(store_id, terminal_id, entries, Message(topic, encode(tx)))


class CollectorStore:
    """The store of forwarded journal entries, on SQLite or PostgreSQL (dialect.py). Not
    thread-safe: use it from one thread."""

    def __init__(self, db: Database, received_by: str, *, trust_on_first_use: bool = True) -> None:
        self._db = db
        self._conn = db.conn
        self.dialect = db.dialect
        self.path = db.name
        self.target = db.target
        self.received_by = received_by
        self.pins = KeyPins(db.conn, db.dialect, first_use=trust_on_first_use)

    @classmethod
    def open(
        cls,
        db: str | DbTarget,
        *,
        received_by: str = "",
        init: bool = False,
        trust_on_first_use: bool = True,
    ) -> CollectorStore:
        """Open the store at `db` (a target, a URL or a SQLite path), creating it only on a
        first start or with `init`.

        SQLite: WAL, synchronous=FULL. A database that the marker says existed but is missing
        or was replaced raises CollectorDbChangedError unless `init` (an admin's decision) is
        given.
        """
        database = Database.open(as_target(db), init=init)
        return cls(database, received_by, trust_on_first_use=trust_on_first_use)

    def close(self) -> None:
        self._db.close()

    def store_batch(self, store_id: str, terminal_id: str, entries: Sequence[Entry]) -> int:
        """Store one batch in one transaction; return the `upto` to acknowledge."""
        result = self.store_batches([Batch.of(store_id, terminal_id, entries)])
        progress = result.get((store_id, terminal_id))
        return progress.upto if progress is not None else 0

    def store_batches(self, items: Iterable[Batch | Quarantine]) -> dict[TerminalKey, Progress]:
        """Store several batches in ONE transaction; return what to acknowledge per terminal.

        Duplicates are ignored; an entry that cannot be a sale occupies its seq in `held`, and
        one for a seq already taken is kept in `problems`: either way it is logged and never
        holds the terminal's `upto` back. A batch that cannot be stored at all is rolled back
        alone and quarantined, as the given quarantines are: the other batches are stored. The
        database file is checked before and after: a deleted or replaced one raises
        CollectorDbChangedError, and then nothing may be acknowledged.
        """
        now = utc_now_iso()
        conn = self._conn
        items = list(items)
        states: dict[TerminalKey, TerminalState] = {}
        try:
            self._check_files()
            conn.execute(self.dialect.begin_write)
            try:
                self.dialect.lock_terminals(conn, _keys_of(items))
                for item in items:
                    if isinstance(item, Quarantine):
                        quarantine(conn, item, now)
                    else:
                        self._put_batch(conn, states, item, now)
                result: dict[TerminalKey, Progress] = {}
                for key, state in states.items():
                    if state.inserted or state.new:
                        advance(conn, key, state, now)
                    save_state(conn, key, state)
                    result[key] = replace(state.progress(), plain=self.pins.get(key) is None)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except self.dialect.errors as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot store: {exc}") from exc
        self._check_files()  # the commit went to the file that will be read later
        for (store_id, terminal_id), state in states.items():
            if state.inserted:
                log.debug(
                    "entries_stored",
                    store=store_id,
                    terminal=terminal_id,
                    inserted=state.inserted,
                    upto=result[(store_id, terminal_id)].upto,
                )
        return result

    def _check_files(self) -> None:
        """Raise CollectorDbChangedError if the database is not ours any more (database.py)."""
        self._db.check()

    def _put_batch(
        self,
        conn: Conn,
        states: dict[TerminalKey, TerminalState],
        batch: Batch,
        now: str,
    ) -> None:
        """Store one batch under a savepoint, if its signature passes (pins.py); if its values
        break the store, quarantine it."""
        key = (batch.store_id, batch.terminal_id)
        before = states.get(key)
        saved = replace(before, fresh=list(before.fresh)) if before is not None else None
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            if self.pins.admit(key, batch.entries, batch.sig, now):  # a forgery: recorded only
                state = before or load_state(conn, key)
                states[key] = state
                state.touched_at = now
                checked = batch.checked
                if checked is None:
                    checked = [check_entry(entry) for entry in batch.entries]
                pairs = sorted(zip(batch.entries, checked, strict=True), key=_seq_of)
                self._put_entries(conn, key, state, pairs, now)
        except Exception as exc:
            errors, data_errors = self.dialect.errors, self.dialect.data_errors
            if isinstance(exc, errors) and not isinstance(exc, data_errors):
                raise  # the database failed (full, locked, I/O): the whole group is retried
            conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            conn.execute(f"RELEASE {_SAVEPOINT}")
            if saved is None:
                states.pop(key, None)
            else:
                states[key] = saved
            reason = f"cannot be stored: {type(exc).__name__}: {exc}"
            quarantine(conn, Quarantine(batch.message, *key, reason), now, error=exc)
            return
        conn.execute(f"RELEASE {_SAVEPOINT}")

    def _put_entries(
        self,
        conn: Conn,
        key: TerminalKey,
        state: TerminalState,
        pairs: list[tuple[Entry, Verdict]],
        now: str,
    ) -> None:
        """Store entries (sorted by seq, each with check_entry's verdict) with one batched
        INSERT; analyse only the misses.

        Equivalent to `_put` entry by entry: the batched INSERT inserts rows in order with the
        same conflict rule, and the rest is handled afterwards in seq order. Where an entry's
        fate could depend on one after it, the same seq twice in the batch, it takes the
        entry-by-entry path. Sales for seqs that slots hold are looked up only if the terminal
        has slots at all.
        """
        entries = [entry for entry, _ in pairs]
        checked = [verdict for _, verdict in pairs]
        if len({entry.seq for entry in entries}) != len(entries):
            for entry, verdict in zip(entries, checked, strict=True):
                self._put(conn, key, state, entry, verdict, now=now)
            return
        valid = [(e, body) for e, body in zip(entries, checked, strict=True) if type(body) is str]
        taken: set[int] = set()
        if state.held and valid:
            taken = held_seqs(conn, key, valid[0][0].seq, valid[-1][0].seq)
            valid = [(e, body) for e, body in valid if e.seq not in taken]
        rows = [self._row(key, entry, body, now) for entry, body in valid]
        inserted = insert_sales(conn, self.dialect, key, _COLUMNS, rows)
        if inserted:
            state.entries += len(inserted)
            state.inserted += len(inserted)
            added = [(e.seq, e.prev_hash, e.hash) for e, _ in valid if e.seq in inserted]
            state.fresh += added
            top, _, top_hash = added[-1]  # `valid` is in seq order
            state.saw(top, top_hash)
        if len(inserted) == len(checked):
            return
        for entry, verdict in zip(entries, checked, strict=True):
            if entry.seq in inserted:
                continue
            if isinstance(verdict, str) and entry.seq in taken:
                self._put(conn, key, state, entry, verdict, now=now)
            elif isinstance(verdict, str):
                self._not_inserted(conn, key, state, entry, verdict, now=now)
            else:
                hold(
                    conn,
                    key,
                    state,
                    entry,
                    Slot.of(entry, verdict),
                    now=now,
                    received_by=self.received_by,
                )

    def _row(self, key: TerminalKey, entry: Entry, body: str, now: str) -> tuple[object, ...]:
        """The `transactions` row of a verified entry, in _COLUMNS' order."""
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
        conn: Conn,
        key: TerminalKey,
        state: TerminalState,
        entry: Entry,
        checked: str | Rejected | Special,
        *,
        now: str,
    ) -> None:
        if not isinstance(checked, str):
            hold(
                conn,
                key,
                state,
                entry,
                Slot.of(entry, checked),
                now=now,
                received_by=self.received_by,
            )
            return
        if state.held and not meet_held(conn, key, state, entry, checked, now=now):
            return
        cur = conn.execute(
            _INSERT_HEAD + _INSERT_ROW + " ON CONFLICT DO NOTHING",
            self._row(key, entry, checked, now),
        )
        if cur.rowcount == 1:
            state.entries += 1
            state.inserted += 1
            state.saw(entry.seq, entry.hash)
            return
        self._not_inserted(conn, key, state, entry, checked, now=now)

    def _not_inserted(
        self,
        conn: Conn,
        key: TerminalKey,
        state: TerminalState,
        entry: Entry,
        body: str,
        *,
        now: str,
    ) -> None:
        """A valid sale the INSERT skipped: a resend (duplicate), a seq conflict (the store keeps
        its sale, this one is evidence) or a sale id stored at another seq (held in its slot)."""
        row = conn.execute(
            "SELECT hash FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq = ?",
            (key[0], key[1], entry.seq),
        ).fetchone()
        if row is not None:
            if row[0] == entry.hash:
                state.duplicates += 1
                return
            state.problems += 1
            record_problem(
                conn,
                key,
                seq=entry.seq,
                hash_hex=entry.hash,
                kind="seq_conflict",
                detail=f"seq {entry.seq} is already stored with hash {row[0]}, kept",
                body=body,
                now=now,
                event="entry_rejected",
            )
            return
        other = conn.execute(
            "SELECT store_id, terminal_id, seq, body FROM transactions WHERE id = ?", (entry.id,)
        ).fetchone()
        if other is None:  # cannot be: only the two unique constraints refuse a row
            where = "another entry"
        else:
            sale = _sale_of(other[3])
            same = sale is not None and sale == _sale_of(body)
            kind = "the same sale: a retry" if same else "another sale"
            where = f"{other[0]}/{other[1]} seq {other[2]} ({kind})"
        slot = Slot("id_conflict", f"sale id {entry.id} is already stored as {where}", body)
        hold(conn, key, state, entry, slot, now=now, received_by=self.received_by)

    def plan_resend(self, key: TerminalKey, gap: tuple[int, int]) -> ResendPlan | None:
        """The resend request to send a terminal for `gap` (recorded), or None."""
        return self._write(lambda conn, now: plan_resend(conn, key, gap, now), [key])

    def record_answers(self, answers: Sequence[tuple[TerminalKey, ResendAnswer]]) -> None:
        """Record terminals' answers to resend requests (permanent gaps among them)."""

        def record(conn: Conn, now: str) -> None:
            for key, answer in answers:
                record_answer(conn, key, answer, now)

        self._write(record, [key for key, _ in answers])

    def accept_gap(self, key: TerminalKey, first: int, to: int, by: str) -> str:
        """An admin accepts the permanent gap first..to; acks then go past it."""
        return self._write(
            lambda conn, now: accept_gap(conn, key, (first, to), by=by, now=now), [key]
        )

    def _write(self, fn: Callable[[Conn, str], T], keys: Iterable[TerminalKey] = ()) -> T:
        """Run `fn` in one write transaction, the only writer of the terminals `keys`."""
        conn = self._conn
        try:
            self._check_files()
            conn.execute(self.dialect.begin_write)
            try:
                self.dialect.lock_terminals(conn, keys)
                result = fn(conn, utc_now_iso())
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except self.dialect.errors as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot write: {exc}") from exc
        return result

    def current_acks(self) -> dict[TerminalKey, Progress]:
        """The ack every terminal in the database would get now (republished at each connect)."""
        try:
            return all_progress(self._conn)
        except self.dialect.errors as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc

    def terminal_report(self) -> list[TerminalReport]:
        """Per terminal: contiguous_upto, gaps, chain problems and counters."""
        try:
            return terminal_report(self._conn)
        except self.dialect.errors as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc

    def problems(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent rejected or conflicting entries, newest first (bodies left out)."""
        try:
            return recent_problems(self._conn, limit)
        except self.dialect.errors as exc:
            raise CollectorStoreError(f"collector db {self.path}: cannot read: {exc}") from exc


def init_collector_db(db: str | DbTarget) -> str:
    """`edged collector init`: make the database at `db` this collector's (created empty if
    missing, adopted if it is another one); returns what was done, for the admin."""
    target = as_target(db)
    local = target.local_files()
    had = read_marker(local)
    existed = target.postgres or Path(local).exists()
    CollectorStore.open(target, init=True).close()
    now = read_marker(local)
    if not existed:
        return f"created an empty collector db {target.path} (identity {now})"
    if had is None or had == now:
        return f"collector db {target.path} is ready (identity {now})"
    return (
        f"collector db {target.path} is now this collector's database (identity {now}, was {had})"
    )


def _keys_of(items: Sequence[Batch | Quarantine]) -> list[TerminalKey]:
    return [(i.store_id, i.terminal_id) for i in items if isinstance(i, Batch)]


def _seq_of(pair: tuple[Entry, Verdict]) -> int:
    return pair[0].seq


def _sale_of(body: str) -> Any:
    """The sale in a stored entry body (to tell a retried sale from another one), or None."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return doc.get("sale") if isinstance(doc, dict) else None
