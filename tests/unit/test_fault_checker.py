"""The fault suite's checker: each committed sale in exactly one class, reported losses apart."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from edged.entrykinds import damaged_sale, gap_sale
from tests.support.checker import Committed, Refusal, journal_gaps, read_store, reconcile


def sale(n: int) -> dict[str, Any]:
    return {"id": f"sale-{n}", "total": n}


def entry(seq: int, body: dict[str, Any]) -> str:
    return json.dumps({"seq": seq, "id": f"e{seq}", "sale": body})


def make_store(path: Path) -> None:
    """A collector database with sales 1-3 (2 altered), a gap record at 10 (7..9), damage at 4."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE transactions (store_id, terminal_id, seq, id, hash, body)")
        conn.execute("CREATE TABLE slots (store_id, terminal_id, seq, kind, body)")
        for seq, body in ((1, sale(1)), (2, {**sale(2), "total": 999}), (3, sale(3))):
            conn.execute(
                "INSERT INTO transactions VALUES ('S1', 'T1', ?, ?, 'h', ?)",
                (seq, body["id"], entry(seq, body)),
            )
        conn.execute(
            "INSERT INTO slots VALUES ('S1', 'T1', 10, 'journal_gap', ?)",
            (entry(10, gap_sale(7, 9, "wal damaged")),),
        )
        conn.execute(
            "INSERT INTO slots VALUES ('S1', 'T1', 4, 'damaged_entry', ?)",
            (entry(4, damaged_sale(b"\x80{", "not UTF-8")),),
        )
        conn.execute(  # another terminal's gap names nothing of T1
            "INSERT INTO slots VALUES ('S1', 'T2', 20, 'journal_gap', ?)",
            (entry(20, gap_sale(11, 19, "other till")),),
        )


def make_journal(path: Path) -> None:
    """A journal that declares its own gap 12..13 at seq 14."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, id TEXT, sale TEXT)")
        conn.execute(
            "INSERT INTO entries VALUES (14, 'g', ?)",
            (json.dumps(gap_sale(12, 13, "tail lost"), separators=(",", ":")),),
        )
        conn.execute("INSERT INTO entries VALUES (15, 's', ?)", (json.dumps(sale(15)),))


def test_each_committed_sale_is_classified_once(tmp_path: Path) -> None:
    make_store(tmp_path / "store.db")
    make_journal(tmp_path / "journal.db")
    committed = [Committed(f"sale-{n}", n, sale(n)) for n in (1, 2, 3, 4, 5, 8, 11, 12, 16)]
    committed.append(Committed("sale-17", 17, sale(17), epoch=1))
    committed.append(Committed("sale-18", 18, sale(18), epoch=0))
    view = read_store(str(tmp_path / "store.db"), "S1", "T1")
    gaps = journal_gaps(str(tmp_path / "journal.db"))
    result = reconcile(committed, view, gaps, [Refusal(epoch=0, after=16, upto=18)])

    assert result.stored_once == 2  # 1 and 3
    assert result.mismatched == [2]
    assert sorted(result.reported_lost) == [4, 8, 12, 18]  # damaged, store gap, own gap, refusal
    assert sorted(result.lost) == [5, 11, 16, 17]  # 11: T2 gap; 16, 17: not in the refusal
    assert not result.duplicated
    assert not result.ok
    assert result.counts()["reported_lost"] == 4
