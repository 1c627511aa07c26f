"""Rebuilding a terminal's stream from its journal (DESIGN invariant 11): the database side.

The store asks a terminal to resend what it lacks (`rebuilds`: the latest request per
terminal). A terminal that answers it has purged some of those seqs gives the store a
permanent gap (`unavailable`, reported in `problems`); a store admin may accept it
(`edged collector accept-gap`), and the walk then goes past it, so acks move on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog

from edged.collector.dialect import Conn
from edged.collector.problems import record_problem
from edged.collector.state import TerminalKey, load_state, save_state
from edged.collector.walk import advance
from edged.errors import EdgedError
from edged.wire import ResendAnswer

log = structlog.get_logger(__name__)

_HELD_IN = (
    "SELECT seq FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq BETWEEN ? AND ?"
    " UNION SELECT seq FROM held WHERE store_id = ? AND terminal_id = ? AND seq BETWEEN ? AND ?"
    " ORDER BY 1"
)


class AcceptGapError(EdgedError):
    """`accept-gap` was asked for seqs that are no permanent gap the store knows of."""


@dataclass(frozen=True, slots=True)
class ResendPlan:
    """What to ask a terminal for: seqs from..upto, and why."""

    from_seq: int
    upto: int
    reason: str


def plan_resend(conn: Conn, key: TerminalKey, gap: tuple[int, int], now: str) -> ResendPlan | None:
    """The request for `gap`, less the seqs the terminal said it no longer has; None if it has
    none of them. Recorded in `rebuilds` (a request within the one before counts as a retry)."""
    first, to = gap
    for seq_from, seq_to in _ranges(conn, key, "unavailable"):
        if seq_from <= first <= seq_to:
            first = seq_to + 1
    if first > to:
        return None
    reason = (
        f"the store has no entries of this terminal before seq {to + 1}: its database was lost "
        "or restored from an older copy"
        if first == 1
        else f"the store lacks seqs {first}..{to}"
    )
    row = conn.execute(
        "SELECT from_seq, upto_seq FROM rebuilds WHERE store_id = ? AND terminal_id = ?", key
    ).fetchone()
    if row is not None and row[0] <= first and to <= row[1]:
        conn.execute(
            "UPDATE rebuilds SET requests = requests + 1, last_at = ?"
            " WHERE store_id = ? AND terminal_id = ?",
            (now, *key),
        )
    else:
        conn.execute(
            "INSERT INTO rebuilds (store_id, terminal_id, from_seq, upto_seq, reason, requests,"
            " first_at, last_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)"
            " ON CONFLICT (store_id, terminal_id) DO UPDATE SET from_seq = excluded.from_seq,"
            " upto_seq = excluded.upto_seq, reason = excluded.reason, requests = 1,"
            " first_at = excluded.first_at, last_at = excluded.last_at, answered_at = NULL,"
            " retained_from = NULL",
            (*key, first, to, reason, now, now),
        )
    return ResendPlan(first, to, reason)


def record_answer(conn: Conn, key: TerminalKey, answer: ResendAnswer, now: str) -> None:
    """Note a terminal's answer; seqs it purged that the store lacks become a permanent gap."""
    conn.execute(
        "UPDATE rebuilds SET answered_at = ?, retained_from = ?"
        " WHERE store_id = ? AND terminal_id = ?",
        (now, answer.retained_from, *key),
    )
    last = answer.retained_from - 1
    if answer.upto is not None:
        last = min(last, answer.upto)
    if last < answer.from_:
        return
    for first, to in _missing(conn, key, answer.from_, last):
        conn.execute(
            "INSERT INTO unavailable (store_id, terminal_id, seq_from, seq_to, reported_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (*key, first, to, now),
        )
        record_problem(
            conn,
            key,
            seq=first,
            hash_hex="",
            kind="unavailable",
            detail=f"seqs {first}..{to} were purged at the terminal (it keeps seqs from "
            f"{answer.retained_from}): a permanent gap; a store admin may accept it with "
            "`edged collector accept-gap`",
            body="",
            now=now,
            event="resend_unavailable",
        )


def accept_gap(conn: Conn, key: TerminalKey, seqs: tuple[int, int], *, by: str, now: str) -> str:
    """Mark the permanent gap `seqs` (first, to) accepted by `by`, then walk past it; returns
    what was done, for the admin."""
    first, to = seqs
    rows = conn.execute(
        "SELECT seq_from, seq_to, accepted_at FROM unavailable WHERE store_id = ? AND"
        " terminal_id = ? AND seq_to >= ? AND seq_from <= ? ORDER BY seq_from",
        (*key, first, to),
    ).fetchall()
    where = f"store {key[0]} terminal {key[1]}"
    if not rows or rows[0][0] != first or rows[-1][1] != to:
        known = ", ".join(f"{a}..{b}" for a, b in _ranges(conn, key, "unavailable")) or "none"
        raise AcceptGapError(
            f"seqs {first}..{to} of {where} are not a permanent gap the terminal reported "
            f"(known permanent gaps: {known}); see `edged collector status`"
        )
    conn.execute(
        "UPDATE unavailable SET accepted_at = ?, accepted_by = ? WHERE store_id = ? AND"
        " terminal_id = ? AND seq_from >= ? AND seq_to <= ? AND accepted_at IS NULL",
        (now, by, *key, first, to),
    )
    state = load_state(conn, key)
    state.touched_at = now
    before = state.contiguous_upto
    advance(conn, key, state, now)
    save_state(conn, key, state)
    log.warning(
        "gap_accepted",
        store=key[0],
        terminal=key[1],
        seq_from=first,
        seq_to=to,
        by=by,
        upto=state.contiguous_upto,
    )
    # Several reported gaps may lie within first..to: name each, not the seqs stored between.
    accepted = ", ".join(f"{a}..{b}" for a, b, _ in rows)
    return (
        f"accepted seqs {accepted} of {where} as lost (by {by}); the store now acknowledges "
        f"up to seq {state.contiguous_upto} (was {before})"
    )


def rebuild_report(conn: Conn, key: TerminalKey, upto: int) -> dict[str, Any] | None:
    """The latest resend request for a terminal and how far the store got with it."""
    row = conn.execute(
        "SELECT from_seq, upto_seq, reason, requests, first_at, last_at, answered_at,"
        " retained_from FROM rebuilds WHERE store_id = ? AND terminal_id = ?",
        key,
    ).fetchone()
    if row is None:
        return None
    first, to = row[0], row[1]
    held = conn.execute(
        f"SELECT count(*) FROM ({_HELD_IN}) AS held_in", (*key, first, to, *key, first, to)
    ).fetchone()[0]
    missing = (to - first + 1) - held
    purged = _ranges(conn, key, "unavailable")
    gone = _covered(purged, first, to)
    # Seqs that can never come: purged at the terminal, or declared lost by its journal_gap
    # (often both, after a lost -wal: counted once).
    never = _covered(purged + _ranges(conn, key, "lost"), first, to)
    return {
        "requested_from": first,
        "requested_upto": to,
        "received_upto": max(first - 1, min(upto, to)),
        "remaining": max(0, missing - never),
        "unavailable": gone,
        "reason": row[2],
        "requests": row[3],
        "first_requested_at": row[4],
        "last_requested_at": row[5],
        "answered_at": row[6],
        "terminal_retained_from": row[7],
    }


def permanent_gaps(conn: Conn, key: TerminalKey) -> list[dict[str, Any]]:
    """Seqs the terminal purged before the store had them, and whether an admin accepted them."""
    rows = conn.execute(
        "SELECT seq_from, seq_to, reported_at, accepted_at, accepted_by FROM unavailable"
        " WHERE store_id = ? AND terminal_id = ? ORDER BY seq_from",
        key,
    )
    names = ("from", "to", "reported_at", "accepted_at", "accepted_by")
    return [dict(zip(names, r, strict=True)) for r in rows]


def _ranges(
    conn: Conn, key: TerminalKey, table: Literal["unavailable", "lost"]
) -> list[tuple[int, int]]:
    """A terminal's seq ranges in `table`, in seq order."""
    rows = conn.execute(
        f"SELECT seq_from, seq_to FROM {table} WHERE store_id = ? AND terminal_id = ?"
        " ORDER BY seq_from",
        key,
    )
    return [(int(a), int(b)) for a, b in rows]


def _covered(ranges: list[tuple[int, int]], first: int, to: int) -> int:
    """How many seqs of first..to the (possibly overlapping) ranges cover."""
    count, done = 0, first - 1  # seqs up to `done` are counted
    for low, high in sorted(ranges):
        start, end = max(low, done + 1), min(high, to)
        if start <= end:
            count += end - start + 1
            done = end
    return count


def _missing(conn: Conn, key: TerminalKey, first: int, to: int) -> list[tuple[int, int]]:
    """The runs of seqs in first..to that the store holds nothing for."""
    runs: list[tuple[int, int]] = []
    expect = first
    for (seq,) in conn.execute(_HELD_IN, (*key, first, to, *key, first, to)):
        if seq > expect:
            runs.append((expect, seq - 1))
        expect = seq + 1
    if expect <= to:
        runs.append((expect, to))
    return runs
