"""Moving a terminal's `contiguous_upto` forward over what the store holds (design rule 3).

Every seq the store holds something for (a sale, or a slot in `held`) is passed, in order. An
ordinary gap stops the walk until the terminal resends. A `journal_gap` entry at seq S that
declares from..to with from <= upto + 1 and to == S - 1 lets the walk jump to S: the seqs the
store lacks in upto+1..to are recorded in `lost` (ERROR `terminal_journal_gap`). Each entry must
chain to its predecessor (a journal_gap to seq from-1; an entry whose hash does not verify
is not checked, its problem is reported already); a break is recorded and reported once
(ERROR `chain_broken`), and the walk goes on from the entry's own hash: holding the ack could
not mend it, as the store never replaces what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import structlog

from edged.collector.dialect import Conn
from edged.collector.problems import record_problem
from edged.collector.state import TerminalKey, TerminalState
from edged.collector.verify import GENESIS_HEX

log = structlog.get_logger(__name__)

_HELD_AFTER = (
    "SELECT seq, NULL, prev_hash, hash, NULL, NULL FROM transactions"
    " WHERE store_id = ? AND terminal_id = ? AND seq > ?"
    " UNION ALL SELECT seq, kind, prev_hash, hash, gap_from, gap_to FROM held"
    " WHERE store_id = ? AND terminal_id = ? AND seq > ? ORDER BY 1"
)
_HELD_BETWEEN = (
    "SELECT seq FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq BETWEEN ? AND ?"
    " UNION ALL SELECT seq FROM held WHERE store_id = ? AND terminal_id = ? AND seq BETWEEN ? AND ?"
    " ORDER BY 1"
)
_HASH_AT = (
    "SELECT hash FROM transactions WHERE store_id = ? AND terminal_id = ? AND seq = ?"
    " UNION ALL SELECT hash FROM held WHERE store_id = ? AND terminal_id = ? AND seq = ?"
)
_JUMP = (
    "SELECT seq, kind, prev_hash, hash, gap_from, gap_to FROM held"
    " WHERE store_id = ? AND terminal_id = ? AND seq >= ? AND gap_from IS NOT NULL"
    " AND gap_from <= ? AND gap_to = seq - 1 ORDER BY seq LIMIT 1"
)
# A permanent gap (seqs a terminal purged before the store had them) an admin accepted.
_ACCEPTED = (
    "SELECT max(seq_to) FROM unavailable WHERE store_id = ? AND terminal_id = ?"
    " AND accepted_at IS NOT NULL AND seq_from <= ? AND seq_to >= ? HAVING count(*) > 0"
)


# Held entries whose hash does not verify: their prev_hash is a claim nothing vouches for, and
# the entry is reported at its seq already. The walk takes their stated hash without a check.
_UNVERIFIED = frozenset({"invalid", "bad_hash", "damaged_entry"})


class _Row(NamedTuple):
    seq: int
    kind: str | None  # None: a sale
    prev_hash: str
    hash: str
    gap_from: int | None  # a journal_gap entry's declared range
    gap_to: int | None


def held_after(conn: Conn, key: TerminalKey, seq: int) -> Iterator[int]:
    """The seqs after `seq` that the store holds something for, in order."""
    rows = conn.execute(_HELD_AFTER, (*key, seq, *key, seq))
    try:
        for row in rows:
            yield row[0]
    finally:
        rows.close()


def advance(conn: Conn, key: TerminalKey, state: TerminalState, now: str) -> None:
    """Walk held seqs past contiguous_upto; update the state's upto, hash, gap and break."""
    upto, last = _walk_fresh(conn, key, state, now)
    gap: tuple[int, int] | None = None
    while True:
        ahead = None
        rows = conn.execute(_HELD_AFTER, (*key, upto, *key, upto))
        for row in map(_Row._make, rows):
            if row.seq != upto + 1:
                ahead = row.seq
                break
            _check_link(conn, key, state, row, upto=upto, last=last, now=now)
            upto, last = row.seq, row.hash
        rows.close()
        if ahead is None:
            break
        found = conn.execute(_JUMP, (*key, ahead, upto + 1)).fetchone()
        if found is None:
            accepted = conn.execute(_ACCEPTED, (*key, upto + 1, upto + 1)).fetchone()
            if accepted is not None and accepted[0] < ahead:
                upto, last = accepted[0], ""  # an admin accepted the loss: no hash to chain to
                continue
            gap = (upto + 1, ahead - 1)
            break
        jump = _Row._make(found)
        _record_lost(conn, key, upto, jump, now)
        _check_link(conn, key, state, jump, upto=upto, last=last, now=now)
        upto, last = jump.seq, jump.hash
    _log_gap(key, state, gap, upto)
    state.contiguous_upto, state.last_hash = upto, last
    state.gap_from, state.gap_to = gap if gap else (None, None)


def _walk_fresh(conn: Conn, key: TerminalKey, state: TerminalState, now: str) -> tuple[int, str]:
    """contiguous_upto and its hash after the sales this transaction added, when they are all
    of what it added and continue it without a hole: the walk over the database then starts
    after them instead of reading them back (a sixth of a drain's store time on PostgreSQL)."""
    upto, last = state.contiguous_upto, state.last_hash
    fresh = sorted(state.fresh)
    if len(fresh) != state.inserted or not fresh or fresh[0][0] != upto + 1:
        return upto, last
    if fresh[-1][0] - fresh[0][0] != len(fresh) - 1:
        return upto, last  # another hole: the database's walk sees what fills it
    for seq, prev_hash, hash_hex in fresh:
        if prev_hash != last and last:  # _check_link's test, for a sale right after upto
            row = _Row(seq, None, prev_hash, hash_hex, None, None)
            _check_link(conn, key, state, row, upto=upto, last=last, now=now)
        upto, last = seq, hash_hex
    return upto, last


def _check_link(
    conn: Conn,
    key: TerminalKey,
    state: TerminalState,
    row: _Row,
    *,
    upto: int,
    last: str,
    now: str,
) -> None:
    """Record a break if `row` does not chain to its predecessor (a journal_gap: seq from-1)."""
    if row.kind in _UNVERIFIED:
        return
    before = row.seq - 1 if row.gap_from is None else row.gap_from - 1
    expected = last if before == upto else _hash_at(conn, key, before)
    if not expected or row.prev_hash == expected:
        return  # the predecessor was lost (at the terminal, or accepted as lost): no comparison
    if state.chain_broken_at is None:
        state.chain_broken_at = row.seq
    detail = f"prev_hash {row.prev_hash} is not the hash {expected} of seq {before}"
    record_problem(
        conn,
        key,
        seq=row.seq,
        hash_hex=row.hash,
        kind="chain_broken",
        detail=detail,
        body="",
        now=now,
        event="chain_broken",
    )


def _hash_at(conn: Conn, key: TerminalKey, seq: int) -> str | None:
    if seq == 0:
        return GENESIS_HEX
    row = conn.execute(_HASH_AT, (*key, seq, *key, seq)).fetchone()
    return str(row[0]) if row is not None else None


def _record_lost(conn: Conn, key: TerminalKey, upto: int, jump: _Row, now: str) -> None:
    """Record the seqs upto+1..to that a journal_gap jumps over and the store does not hold."""
    assert jump.gap_to is not None  # _JUMP selects journal_gap entries only
    expect = upto + 1
    ranges: list[tuple[int, int]] = []
    rows = conn.execute(_HELD_BETWEEN, (*key, expect, jump.gap_to, *key, expect, jump.gap_to))
    for (seq,) in rows:
        if seq > expect:
            ranges.append((expect, seq - 1))
        expect = seq + 1
    rows.close()
    if expect <= jump.gap_to:
        ranges.append((expect, jump.gap_to))
    # A permanent gap (seqs the terminal answered it no longer has) that this entry declares
    # lost is settled by it: the terminal itself says why, no admin need accept it.
    conn.execute(
        "UPDATE unavailable SET accepted_at = ?, accepted_by = ? WHERE store_id = ?"
        " AND terminal_id = ? AND accepted_at IS NULL AND seq_from >= ? AND seq_to <= ?",
        (
            now,
            f"the terminal: its journal_gap at seq {jump.seq} declares these seqs lost",
            *key,
            jump.gap_from,
            jump.gap_to,
        ),
    )
    for first, to in ranges:
        conn.execute(
            "INSERT INTO lost (store_id, terminal_id, seq_from, seq_to, gap_seq, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (*key, first, to, jump.seq, now),
        )
        log.error(
            "terminal_journal_gap",
            store=key[0],
            terminal=key[1],
            seq_from=first,
            seq_to=to,
            gap_seq=jump.seq,
        )


def _log_gap(
    key: TerminalKey, state: TerminalState, gap: tuple[int, int] | None, upto: int
) -> None:
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
