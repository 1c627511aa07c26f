"""Check a terminal against its store: the journal entry by entry, and every sale the seller
was told was committed, each classified as stored once, lost, duplicated, mismatched or a
reported loss (missing at the store, but named as lost by the system itself)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from edged.entrykinds import DamagedEntry, JournalGap, special_of


@dataclass
class Consistency:
    journal_entries: int
    stored: int
    acked_upto: int
    lost: list[int] = field(default_factory=list)  # in the journal, not at the store
    extra: list[int] = field(default_factory=list)  # at the store, not in the journal
    mismatched: list[int] = field(default_factory=list)  # same seq, other id or hash
    duplicated: int = 0  # rows beyond one per seq or per id

    @property
    def ok(self) -> bool:
        return not (self.lost or self.extra or self.mismatched or self.duplicated)

    def __str__(self) -> str:
        return (
            f"journal {self.journal_entries} entries (acked up to {self.acked_upto}), store "
            f"{self.stored} rows; lost {self.lost[:10]}, extra {self.extra[:10]}, mismatched "
            f"{self.mismatched[:10]}, duplicated {self.duplicated}"
        )


@dataclass(frozen=True)
class Committed:
    """A sale the seller was told is committed at `seq` of journal `epoch`."""

    sale_id: str
    seq: int
    sale: dict[str, Any]
    epoch: int = 0  # 0: the first journal; one more after each `edgectl journal init --force`


@dataclass(frozen=True)
class Refusal:
    """A start refused for a lost `-wal`, overridden with `journal init --force`.

    The refusal named every sale of journal `epoch` after seq `after` as lost; `upto` is the
    highest seq the seller had been told in that journal.
    """

    epoch: int
    after: int
    upto: int

    def covers(self, sale: Committed) -> bool:
        return sale.epoch == self.epoch and self.after < sale.seq <= self.upto


@dataclass
class Reconciliation:
    """Every committed sale in exactly one class; lists hold the seller's seqs."""

    committed: int = 0
    stored_once: int = 0
    lost: list[int] = field(default_factory=list)  # silently: a defect
    duplicated: list[int] = field(default_factory=list)  # stored more than once: a defect
    mismatched: list[int] = field(default_factory=list)  # stored with other content: a defect
    reported_lost: list[int] = field(default_factory=list)  # named as lost: counted, not failed

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched)

    def counts(self) -> dict[str, int]:
        return {
            "committed": self.committed,
            "stored_once": self.stored_once,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "mismatched": len(self.mismatched),
            "reported_lost": len(self.reported_lost),
        }

    def __str__(self) -> str:
        return (
            f"{self.committed} committed: {self.stored_once} stored once, lost "
            f"{self.lost[:10]}, duplicated {self.duplicated[:10]}, mismatched "
            f"{self.mismatched[:10]}, reported lost {len(self.reported_lost)} "
            f"{self.reported_lost[:10]}"
        )


@dataclass
class StoreView:
    """What the collector holds for one terminal: its sales, and the losses named to it."""

    sales: dict[int, tuple[str, dict[str, Any], str]]  # seq -> (id, sale, hash)
    rows_by_id: dict[str, list[int]]
    rows: int
    gaps: list[JournalGap]
    damaged: set[int]


def read_store(collector_db: str, store: str, terminal: str) -> StoreView:
    """Read the collector's database (read-only): sales, gap records and damaged entries.

    Gap and damaged-entry records are found in any table that keeps an entry's body per seq
    (the collector's slots, or `problems` as evidence), whatever it is called.
    """
    sales: dict[int, tuple[str, dict[str, Any], str]] = {}
    rows_by_id: dict[str, list[int]] = defaultdict(list)
    gaps: list[JournalGap] = []
    damaged: set[int] = set()
    with closing(sqlite3.connect(f"file:{collector_db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT seq, id, hash, body FROM transactions WHERE store_id = ? AND terminal_id = ?"
            " ORDER BY seq",
            (store, terminal),
        ).fetchall()
        for seq, sale_id, digest, body in rows:
            sales[seq] = (sale_id, json.loads(body)["sale"], digest)
            rows_by_id[sale_id].append(seq)
        for table in _tables_with_bodies(conn):
            for seq, body in conn.execute(
                f'SELECT seq, body FROM "{table}" WHERE store_id = ? AND terminal_id = ?',
                (store, terminal),
            ):
                special = _special_in_body(body)
                if isinstance(special, JournalGap):
                    gaps.append(special)
                elif isinstance(special, DamagedEntry):
                    damaged.add(seq)
    return StoreView(sales, rows_by_id, len(rows), gaps, damaged)


def _tables_with_bodies(conn: sqlite3.Connection) -> list[str]:
    tables = [
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if name != "transactions"
    ]
    wanted = {"store_id", "terminal_id", "seq", "body"}
    return [
        t for t in tables if wanted <= {row[1] for row in conn.execute(f'PRAGMA table_info("{t}")')}
    ]


def _special_in_body(body: str | bytes | None) -> JournalGap | DamagedEntry | None:
    """The gap or damaged-entry record an entry's body carries as its sale, if any."""
    try:
        entry = json.loads(body or "")
    except (ValueError, TypeError):
        return None
    sale = entry.get("sale") if isinstance(entry, dict) else None
    if not isinstance(sale, dict):
        return None
    return special_of(json.dumps(sale, separators=(",", ":")).encode())


def journal_gaps(journal: str) -> list[JournalGap]:
    """The journal_gap entries a journal holds (the terminal's own report of a tail loss)."""
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        conn.text_factory = bytes
        found = [
            special_of(sale)
            for (sale,) in conn.execute(
                "SELECT sale FROM entries WHERE sale LIKE ?",
                ('{"journal_gap"%',),
            )
        ]
    return [gap for gap in found if isinstance(gap, JournalGap)]


def reconcile(
    committed: list[Committed],
    view: StoreView,
    gaps: list[JournalGap],
    refusals: list[Refusal],
) -> Reconciliation:
    """Classify each sale the seller was told was committed (see the module docstring).

    An adopted gap declares no loss (a replaced till's seqs are the store's): a sale of the
    old journal that is not at the store is lost, not reported lost.
    """
    declared = [gap for gap in (*gaps, *view.gaps) if not gap.adopted]
    result = Reconciliation(committed=len(committed))
    for sale in committed:
        seqs = view.rows_by_id.get(sale.sale_id, [])
        if len(seqs) > 1:
            result.duplicated.append(sale.seq)
        elif seqs:
            if view.sales[seqs[0]][1] == sale.sale:
                result.stored_once += 1
            else:
                result.mismatched.append(sale.seq)
        elif (
            any(gap.first <= sale.seq <= gap.to for gap in declared)
            or sale.seq in view.damaged
            or any(refusal.covers(sale) for refusal in refusals)
        ):
            result.reported_lost.append(sale.seq)
        else:
            result.lost.append(sale.seq)
    return result


def compare(journal: str, collector_db: str, store: str, terminal: str) -> Consistency:
    """Read both files (read-only) and compare them entry by entry, in seq order.

    A journal entry the store holds as a gap or damaged-entry record is not lost, and a sale
    the store holds inside a gap the journal or the store declared is not extra.
    """
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        ours = {
            seq: (sale_id, bytes(digest).hex())
            for seq, sale_id, digest in conn.execute("SELECT seq, id, hash FROM entries")
        }
        (acked,) = conn.execute("SELECT acked_upto FROM outbox").fetchone()
    view = read_store(collector_db, store, terminal)
    theirs = {seq: (sale_id, digest) for seq, (sale_id, _, digest) in view.sales.items()}
    duplicated = sum(len(seqs) - 1 for seqs in view.rows_by_id.values())
    declared = [*journal_gaps(journal), *view.gaps]
    held = set(theirs) | view.damaged | {gap.to + 1 for gap in view.gaps}
    return Consistency(
        journal_entries=len(ours),
        stored=view.rows,
        acked_upto=acked,
        lost=sorted(set(ours) - held),
        extra=sorted(
            seq
            for seq in set(theirs) - set(ours)
            if not any(gap.first <= seq <= gap.to for gap in declared)
        ),
        mismatched=sorted(seq for seq in set(ours) & set(theirs) if ours[seq] != theirs[seq]),
        duplicated=duplicated,
    )
