"""Compare a terminal's journal with the collector's database: lost, duplicated, out of order."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field


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


def compare(journal: str, collector_db: str, store: str, terminal: str) -> Consistency:
    """Read both files (read-only) and compare them entry by entry, in seq order."""
    with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as conn:
        ours = {
            seq: (sale_id, bytes(digest).hex())
            for seq, sale_id, digest in conn.execute("SELECT seq, id, hash FROM entries")
        }
        (acked,) = conn.execute("SELECT acked_upto FROM outbox").fetchone()
    with closing(sqlite3.connect(f"file:{collector_db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT seq, id, hash FROM transactions WHERE store_id = ? AND terminal_id = ? "
            "ORDER BY seq",
            (store, terminal),
        ).fetchall()
    theirs: dict[int, tuple[str, str]] = {}
    ids: set[str] = set()
    duplicated = 0
    for seq, sale_id, digest in rows:
        if seq in theirs or sale_id in ids:
            duplicated += 1
        theirs[seq] = (sale_id, digest)
        ids.add(sale_id)
    return Consistency(
        journal_entries=len(ours),
        stored=len(rows),
        acked_upto=acked,
        lost=sorted(set(ours) - set(theirs)),
        extra=sorted(set(theirs) - set(ours)),
        mismatched=sorted(seq for seq in set(ours) & set(theirs) if ours[seq] != theirs[seq]),
        duplicated=duplicated,
    )
