"""Read-only check of a journal file: seq continuity and the whole hash chain (invariant 4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from edged.entrykinds import JournalGap, special_of
from edged.errors import ChainError, JournalError
from edged.journal import state
from edged.journal.preflight import check_wal_present
from edged.journal.readonly import connect_readonly
from edged.journal.rows import ENTRY_SELECT, StoredEntry, row_entry
from edged.journal.seqmark import mark_path, read_mark

MAX_LISTED = 20  # damaged seqs named in the error's text; ChainError.damaged has every seq


@dataclass(frozen=True, slots=True)
class LostSeqs:
    """Seqs the journal no longer holds: declared by a journal_gap entry (at `gap_seq`), or
    found by the seq mark and not declared yet (`gap_seq` None: edged declares them at start)."""

    first: int
    last: int
    gap_seq: int | None
    found_at: str | None
    reason: str
    adopted: bool = False  # not lost: a new journal took these seqs over from the store

    def describe(self) -> str:
        seqs = f"seq {self.first}" if self.first == self.last else f"seqs {self.first}..{self.last}"
        where = (
            f"declared at seq {self.gap_seq} on {self.found_at}"
            if self.gap_seq is not None
            else "not declared yet: edged declares them at its next start"
        )
        return f"{seqs} lost ({where}): {self.reason}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a successful check covered; `lost` are seqs the chain is intact around but whose
    sales this journal no longer holds."""

    path: str
    store_id: str
    terminal_id: str
    first_seq: int
    last_seq: int
    entries: int
    anchor_seq: int
    acked_upto: int
    lost: tuple[LostSeqs, ...] = ()
    adopted: LostSeqs | None = None  # the store's seqs this journal took over (not lost)


def _connect(path: Path) -> sqlite3.Connection:
    # Read-only: the daemon may be running; WAL lets us read a consistent snapshot.
    return connect_readonly(path)


def _rows(conn: sqlite3.Connection) -> Iterator[StoredEntry]:
    for row in conn.execute(f"SELECT {ENTRY_SELECT} FROM entries ORDER BY seq"):
        yield row_entry(row)


def _broken(damaged: list[tuple[int, str]], at: tuple[int, str] | None = None) -> ChainError:
    """One error naming the first bad seq with its problem, then every other one."""
    bad = sorted([*damaged, at] if at else damaged)
    (seq, problem), others = bad[0], bad[1:]
    if others:
        listed = ", ".join(f"seq {s} ({p})" for s, p in others[:MAX_LISTED])
        more = f" and {len(others) - MAX_LISTED} more" if len(others) > MAX_LISTED else ""
        problem = f"{problem}; also: {listed}{more}"
    return ChainError(seq, problem, damaged=[s for s, _ in damaged])


def verify_journal(path: str | Path) -> VerifyReport:
    """Check the journal; raise ChainError naming the first bad seq (and every damaged one),
    WalLostError if its -wal is lost (sales after the main file's last checkpoint are missing),
    or JournalError."""
    path = Path(path)
    with closing(_connect(path)) as conn:
        try:
            conn.execute("BEGIN")  # one snapshot for the whole walk
            check_wal_present(path, conn)
            (identity,) = conn.execute("SELECT store_id, terminal_id FROM identity").fetchall()
            ((acked_upto, anchor_seq, anchor_hash),) = conn.execute(
                "SELECT acked_upto, anchor_seq, anchor_hash FROM outbox"
            ).fetchall()
            expected_seq = anchor_seq + 1
            prev: bytes | None = bytes(anchor_hash)
            count = 0
            damaged: list[tuple[int, str]] = []  # a damaged entry does not stop the walk
            lost: list[LostSeqs] = []
            for entry in _rows(conn):
                seq = entry.seq
                gap = _declared_gap(entry, expected_seq)
                if gap is not None:
                    lost.append(gap)
                elif seq != expected_seq:
                    problem = (
                        f"expected seq {expected_seq} next, found {seq}: "
                        f"entries {expected_seq}..{seq - 1} are missing"
                        if seq > expected_seq
                        else f"out of order after seq {expected_seq - 1}"
                    )
                    raise _broken(damaged, (min(seq, expected_seq), problem))
                if entry.damage is not None:
                    damaged.append((seq, entry.damage))
                elif prev is not None and entry.prev_hash != prev:
                    problem = (
                        "prev_hash does not match the previous entry's hash (removed, "
                        "reordered or altered entry before it)"
                    )
                    raise _broken(damaged, (seq, problem))
                # After a damaged entry its stated hash is no firm ground: the next link is
                # taken as it is (the damaged seq fails the check anyway).
                prev = entry.hash if entry.damage is None else None
                expected_seq = seq + 1
                count += 1
        except sqlite3.Error as exc:
            raise state.describe(path, exc) from None
        except ValueError as exc:
            raise JournalError(f"journal {path}: not an edged journal ({exc})") from None
    if damaged:
        raise _broken(damaged)
    mark = read_mark(path)
    if mark is not None and mark.seq >= expected_seq:
        reason = f"{mark_path(path).name} says seq {mark.seq} was written: the tail was lost"
        lost.append(LostSeqs(expected_seq, mark.seq, None, None, reason))
    return VerifyReport(
        path=str(path),
        store_id=identity[0],
        terminal_id=identity[1],
        first_seq=anchor_seq + 1,
        last_seq=expected_seq - 1,
        entries=count,
        anchor_seq=anchor_seq,
        acked_upto=acked_upto,
        lost=tuple(gap for gap in lost if not gap.adopted),
        adopted=next((gap for gap in lost if gap.adopted), None),
    )


def _declared_gap(entry: StoredEntry, expected_seq: int) -> LostSeqs | None:
    """The seqs a journal_gap entry declares lost, if it is one and they are the ones the walk
    is missing (expected_seq up to the entry's seq); a gap declaring other seqs is not one."""
    if entry.damage is not None or entry.seq <= expected_seq:
        return None
    gap = special_of(entry.sale_json)
    if not isinstance(gap, JournalGap) or (gap.first, gap.to) != (expected_seq, entry.seq - 1):
        return None
    return LostSeqs(gap.first, gap.to, entry.seq, entry.created_at, gap.reason, gap.adopted)
