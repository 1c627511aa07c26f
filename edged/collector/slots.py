"""The `held` table: an entry that cannot be a sale in `transactions` still occupies its seq.

Design rule 3: every entry received is kept durably, so the acknowledgement can pass it and a
terminal's stream never stops. A slot keeps the whole entry and why it is no sale
(journal_gap, damaged_entry, id_conflict, invalid, bad_hash); the chain walk uses the prev_hash
and hash it states. The problem is logged ERROR once (`entry_held`) and listed in `problems`.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from edged.chain import MAX_SAFE_INT
from edged.collector.dialect import Conn
from edged.collector.problems import as_received, record_problem
from edged.collector.state import TerminalKey, TerminalState
from edged.collector.verify import Rejected, Special
from edged.wire import Entry

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Slot:
    """What a held seq keeps: the kind of problem, why, and the entry's evidence."""

    kind: str
    detail: str
    body: str
    gap: tuple[int, int] | None = None
    raw: bytes | None = None

    @classmethod
    def of(cls, entry: Entry, verdict: Rejected | Special) -> Slot:
        if isinstance(verdict, Rejected):
            return cls(verdict.kind, verdict.detail, as_received(entry))
        body = verdict.body if verdict.body is not None else as_received(entry)
        return cls(verdict.kind, verdict.detail, body, verdict.gap, verdict.raw)


@dataclass(frozen=True, slots=True)
class Occupant:
    """What holds a seq already: a sale (`kind` None) or a slot."""

    kind: str | None
    prev_hash: str
    hash: str
    body: str


def occupant(conn: Conn, key: TerminalKey, seq: int) -> Occupant | None:
    """The sale or slot at `seq`, if any."""
    row = conn.execute(
        "SELECT NULL, prev_hash, hash, body FROM transactions"
        " WHERE store_id = ? AND terminal_id = ? AND seq = ?"
        " UNION ALL SELECT kind, prev_hash, hash, body FROM held"
        " WHERE store_id = ? AND terminal_id = ? AND seq = ?",
        (*key, seq, *key, seq),
    ).fetchone()
    return Occupant(*row) if row is not None else None


def held_seqs(conn: Conn, key: TerminalKey, low: int, high: int) -> set[int]:
    """The seqs in low..high that slots hold."""
    rows = conn.execute(
        "SELECT seq FROM held WHERE store_id = ? AND terminal_id = ? AND seq BETWEEN ? AND ?",
        (*key, low, high),
    )
    return {seq for (seq,) in rows}


def hold(
    conn: Conn,
    key: TerminalKey,
    state: TerminalState,
    entry: Entry,
    slot: Slot,
    *,
    now: str,
    received_by: str,
) -> None:
    """Put `entry` in its seq's slot; if the seq is taken, keep it as evidence only."""
    seq = entry.seq
    if not 1 <= seq <= MAX_SAFE_INT:  # no terminal has this seq: it can hold none
        _evidence(
            conn, key, state, entry, kind=slot.kind, detail=slot.detail, body=slot.body, now=now
        )
        return
    there = occupant(conn, key, seq)
    if there is not None:
        if there.kind is not None and there.body == slot.body:
            state.duplicates += 1  # a resend of the held entry
            return
        what = "a sale" if there.kind is None else f"a {there.kind} entry"
        detail = f"{slot.detail}; seq {seq} already holds {what} with hash {there.hash}, kept"
        _evidence(conn, key, state, entry, kind=slot.kind, detail=detail, body=slot.body, now=now)
        return
    first, to = slot.gap if slot.gap is not None else (None, None)
    conn.execute(
        "INSERT INTO held (store_id, terminal_id, seq, kind, prev_hash, hash, gap_from, gap_to,"
        " detail, body, raw, received_at, received_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *key,
            seq,
            slot.kind,
            entry.prev_hash,
            entry.hash,
            first,
            to,
            slot.detail,
            slot.body,
            slot.raw,
            now,
            received_by,
        ),
    )
    state.held += 1
    state.problems += 1
    state.inserted += 1
    state.saw(seq, entry.hash)
    record_problem(
        conn,
        key,
        seq=seq,
        hash_hex=entry.hash,
        kind=slot.kind,
        detail=slot.detail,
        body=slot.body,
        now=now,
        event="entry_held",
    )


def meet_held(
    conn: Conn,
    key: TerminalKey,
    state: TerminalState,
    entry: Entry,
    body: str,
    *,
    now: str,
) -> bool:
    """A valid sale for a seq a slot holds; True if it takes the seq (the caller inserts it).

    The same entry again is a duplicate. A sale with the slot's own prev_hash and hash is the
    genuine entry the slot stood for (the chain, and every ack sent, stay true): it replaces
    the slot, whose evidence stays in `problems`. Any other sale is a seq_conflict: the slot
    is kept, the sale is kept in `problems`.
    """
    there = occupant(conn, key, entry.seq)
    if there is None or there.kind is None:
        return there is None
    if there.body == body:
        state.duplicates += 1
        return False
    if (there.prev_hash, there.hash) == (entry.prev_hash, entry.hash):
        conn.execute(
            "DELETE FROM held WHERE store_id = ? AND terminal_id = ? AND seq = ?",
            (*key, entry.seq),
        )
        state.held -= 1
        log.warning(
            "held_entry_replaced", store=key[0], terminal=key[1], seq=entry.seq, kind=there.kind
        )
        return True
    detail = f"seq {entry.seq} already holds a {there.kind} entry with hash {there.hash}, kept"
    _evidence(conn, key, state, entry, kind="seq_conflict", detail=detail, body=body, now=now)
    return False


def _evidence(
    conn: Conn,
    key: TerminalKey,
    state: TerminalState,
    entry: Entry,
    *,
    kind: str,
    detail: str,
    body: str,
    now: str,
) -> None:
    """Keep an entry that occupies no seq in `problems` only (logged `entry_rejected`)."""
    state.problems += 1
    record_problem(
        conn,
        key,
        seq=entry.seq,
        hash_hex=entry.hash,
        kind=kind,
        detail=detail,
        body=body,
        now=now,
        event="entry_rejected",
    )
