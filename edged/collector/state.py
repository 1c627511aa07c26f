"""A terminal's row of `terminals`: the store's view of its stream, read and written in one
transaction, and the progress an ack reports from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edged.collector.dialect import Conn
from edged.collector.verify import GENESIS_HEX

TerminalKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Progress:
    """What an ack tells a terminal: `upto` (every seq <= it is held), and the highest seq the
    store holds for it (past any gap) with that entry's hash."""

    upto: int
    last_seq: int
    last_hash: str
    gap: tuple[int, int] | None = None  # the first seqs missing past upto: asked for again
    # A terminal with no pinned key (edged before signatures): it gets the v1 ack `{v, upto}`,
    # which it can decode (it rejects fields it does not know), unsigned.
    plain: bool = False


@dataclass(slots=True)
class TerminalState:
    """A terminal's row of `terminals`, plus what the running transaction did to it."""

    contiguous_upto: int
    last_hash: str
    max_seq: int
    max_hash: str
    gap_from: int | None
    gap_to: int | None
    chain_broken_at: int | None
    entries: int
    duplicates: int
    problems: int
    held: int
    new: bool
    inserted: int = 0  # sales and held entries added: the walk has something to do
    touched_at: str = ""
    # (seq, prev_hash, hash) of the sales added by batched INSERT (all of `inserted`, unless
    # some went in another way): the walk takes them from here, not from the database.
    fresh: list[tuple[int, str, str]] = field(default_factory=list)

    def saw(self, seq: int, hash_hex: str) -> None:
        """An entry now occupies `seq`: it may be the highest one held."""
        if seq > self.max_seq:
            self.max_seq, self.max_hash = seq, hash_hex

    def progress(self) -> Progress:
        last_hash = self.max_hash if self.max_seq else GENESIS_HEX
        gap = None
        if self.gap_from is not None and self.gap_to is not None:
            gap = (self.gap_from, self.gap_to)
        return Progress(max(self.contiguous_upto, 0), self.max_seq, last_hash, gap)


_COLUMNS = (
    "contiguous_upto, last_hash, max_seq, max_hash, gap_from, gap_to, chain_broken_at, entries,"
    " duplicates, problems, held"
)


def all_progress(conn: Conn) -> dict[TerminalKey, Progress]:
    """What an ack tells each terminal the store knows, in one pass over `terminals`; `plain`
    for those with no pinned key, as when their batches are stored."""
    pinned = set(conn.execute("SELECT store_id, terminal_id FROM terminal_keys"))
    found: dict[TerminalKey, Progress] = {}
    for row in conn.execute(
        f"SELECT {_COLUMNS}, store_id, terminal_id FROM terminals ORDER BY store_id, terminal_id"
    ):
        key = (row[-2], row[-1])
        progress = _state_of(row[:-2]).progress()
        found[key] = Progress(
            progress.upto, progress.last_seq, progress.last_hash, plain=key not in pinned
        )
    return found


def load_state(conn: Conn, key: TerminalKey) -> TerminalState:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM terminals WHERE store_id = ? AND terminal_id = ?", key
    ).fetchone()
    if row is None:
        return TerminalState(0, GENESIS_HEX, 0, "", None, None, None, 0, 0, 0, 0, new=True)
    return _state_of(row)


def _state_of(row: tuple[Any, ...]) -> TerminalState:
    """The state of an existing `terminals` row (its _COLUMNS, in order)."""
    upto, last_hash, max_seq, max_hash, gap_from, gap_to, broken, entries, dups, problems, held = (
        row
    )
    return TerminalState(
        upto,
        last_hash,
        max_seq,
        max_hash,
        gap_from,
        gap_to,
        broken,
        entries,
        dups,
        problems,
        held,
        new=False,
    )


def save_state(conn: Conn, key: TerminalKey, state: TerminalState) -> None:
    conn.execute(
        f"INSERT INTO terminals (store_id, terminal_id, {_COLUMNS}, first_seen_at, last_seen_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (store_id, terminal_id) DO UPDATE SET"
        " contiguous_upto = excluded.contiguous_upto, last_hash = excluded.last_hash,"
        " max_seq = excluded.max_seq, max_hash = excluded.max_hash,"
        " gap_from = excluded.gap_from, gap_to = excluded.gap_to,"
        " chain_broken_at = excluded.chain_broken_at, entries = excluded.entries,"
        " duplicates = excluded.duplicates, problems = excluded.problems, held = excluded.held,"
        " last_seen_at = excluded.last_seen_at",
        (
            *key,
            state.contiguous_upto,
            state.last_hash,
            state.max_seq,
            state.max_hash,
            state.gap_from,
            state.gap_to,
            state.chain_broken_at,
            state.entries,
            state.duplicates,
            state.problems,
            state.held,
            state.touched_at,
            state.touched_at,
        ),
    )
