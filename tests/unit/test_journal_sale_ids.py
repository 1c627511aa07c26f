"""Sale ids outlive their purged entries: a late retry is a duplicate or a conflict, never a
second sale (issue 10, item 4). Real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from edged.chain import GENESIS_HASH, canonical, entry_bytes, entry_hash
from edged.clock import utc_now_iso
from edged.config import load_config
from edged.errors import ConfigError, SaleConflictError
from edged.journal import Journal
from edged.journal.schema import MIGRATIONS
from edged.journal.verify import verify_journal
from tests.support.waiting import until


def sale(total: int = 100) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [{"sku": "A", "qty": 1, "amount": total}],
        "payments": [{"method": "cash", "amount": total}],
    }


async def open_journal(path: Path) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1")


def index_seqs(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [seq for (seq,) in conn.execute("SELECT seq FROM sale_ids ORDER BY seq")]


async def purged_journal(path: Path, sales: list[dict[str, Any]]) -> Journal:
    """A journal whose entries for `sales` were acknowledged and purged."""
    j = await open_journal(path)
    for one in sales:
        await j.commit(one)
    await j.mark_acked(len(sales))
    # purge(0) takes entries stamped before now: let the millisecond clock pass the last one.
    newest = utc_now_iso()
    await until(lambda: utc_now_iso() > newest, "the clock past the last entry's stamp")
    assert await j.purge(retain_days=0) == len(sales)
    return j


async def test_a_retry_after_purge_is_answered_with_the_first_result(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = sale()
    j = await open_journal(path)
    original = await j.commit(first)
    await j.commit(sale())
    await j.mark_acked(2)
    assert await j.purge(retain_days=0) == 2
    assert await j.get(first["id"]) is None  # the body is gone: sale.get says "not found"
    again = await j.commit(first)
    assert (again.seq, again.receipt_no, again.hash) == (1, original.receipt_no, original.hash)
    assert again.duplicate
    await j.close()
    j = await open_journal(path)  # remembered across restarts too
    assert await j.commit(first) == again
    assert (await j.commit(sale())).seq == 3  # no seq was taken by the retries
    await j.close()
    report = verify_journal(path)
    assert (report.anchor_seq, report.last_seq, report.entries) == (2, 3, 1)


async def test_other_content_under_a_purged_id_is_a_conflict(tmp_path: Path) -> None:
    first = sale()
    j = await purged_journal(tmp_path / "j.db", [first])
    with pytest.raises(SaleConflictError):
        await j.commit(
            {
                **first,
                "total": 200,
                "lines": [{"sku": "A", "qty": 1, "amount": 200}],
                "payments": [{"method": "cash", "amount": 200}],
            }
        )
    assert j.last_seq == 1
    await j.close()


async def test_a_group_mixing_purged_retries_and_new_sales(tmp_path: Path) -> None:
    """The slow path answers the purged ids from the index and writes the others."""
    olds = [sale() for _ in range(3)]
    j = await purged_journal(tmp_path / "j.db", olds)
    news = [sale() for _ in range(3)]
    results = await asyncio.gather(*(j.commit(one) for one in [*olds, *news]))
    assert [(r.seq, r.duplicate) for r in results[:3]] == [(1, True), (2, True), (3, True)]
    assert sorted(r.seq for r in results[3:]) == [4, 5, 6]
    assert not any(r.duplicate for r in results[3:])
    await j.close()


async def test_index_rows_are_purged_after_id_retain_days(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = sale()
    j = await purged_journal(path, [first, sale()])
    await j.commit(sale())  # seq 3: not acknowledged, its id row stays whatever the age
    assert await j.purge(retain_days=0, id_retain_days=30) == 0
    assert index_seqs(path) == [1, 2, 3]
    assert await j.purge(retain_days=0, id_retain_days=0) == 0
    assert index_seqs(path) == [3]
    # Forgotten after id_retain_days, as documented: the same id is then a new sale.
    assert (await j.commit(first)).seq == 4
    await j.close()


async def test_index_rows_of_entries_still_kept_are_never_purged(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(3):
        await j.commit(sale())
    await j.mark_acked(3)
    assert await j.purge(retain_days=30, id_retain_days=0) == 0
    assert index_seqs(path) == [1, 2, 3]
    await j.close()


def version_3_journal(path: Path, sales: list[dict[str, Any]]) -> None:
    """A journal as edged wrote it before migration 4, with chained entries for `sales`."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(f"BEGIN; {';'.join(MIGRATIONS[:3])}; PRAGMA user_version=3; COMMIT;")
        conn.execute("INSERT INTO identity VALUES (1, 'S1', 'T1', '2026-01-01T00:00:00.000Z')")
        prev = GENESIS_HASH
        for seq, one in enumerate(sales, start=1):
            receipt_no, created_at = f"S1-T1-{seq:06d}", "2026-01-01T00:00:00.000Z"
            body = canonical(one)
            digest = entry_hash(prev, entry_bytes(seq, one["id"], receipt_no, created_at, body))
            conn.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, one["id"], receipt_no, created_at, body.decode(), prev, digest),
            )
            prev = digest
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def test_migration_4_backfills_the_index_from_existing_entries(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    sales = [sale() for _ in range(4)]
    version_3_journal(path, sales)
    assert verify_journal(path).last_seq == 4
    j = await open_journal(path)
    assert index_seqs(path) == [1, 2, 3, 4]
    await j.mark_acked(4)
    assert await j.purge(retain_days=0) == 4
    again = await j.commit(sales[2])
    assert (again.seq, again.receipt_no, again.duplicate) == (3, "S1-T1-000003", True)
    with pytest.raises(SaleConflictError):
        await j.commit({**sales[0], "meta": {"changed": True}})
    assert (await j.commit(sale())).seq == 5
    await j.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert verify_journal(path).last_seq == 5


GOOD = '[terminal]\nstore_id = "s1"\nterminal_id = "t1"\n'


def test_id_retain_days_defaults_to_400(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_text(GOOD)
    assert load_config(path).journal.id_retain_days == 400
    path.write_text(GOOD + "[journal]\nretain_days = 30\nid_retain_days = 30\n")
    assert load_config(path).journal.id_retain_days == 30


def test_id_retain_days_shorter_than_retain_days_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_text(GOOD + "[journal]\nretain_days = 90\nid_retain_days = 60\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.key) == (str(path), "journal.id_retain_days")
    assert "must be >= retain_days (90)" in info.value.problem
