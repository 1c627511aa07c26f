"""The journal against real SQLite files: seq, chain, idempotency, outbox, retention, errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from structlog.testing import capture_logs

from edged.errors import (
    ChainError,
    JournalError,
    JournalFullError,
    SaleConflictError,
    ValidationError,
)
from edged.journal import Journal
from edged.journal.preflight import WalLostError
from edged.journal.verify import verify_journal


def sale(total: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "currency": "EUR",
        "total": total,
        "lines": [{"sku": "A", "qty": 1, "amount": total}],
        "payments": [{"method": "cash", "amount": total}],
        **extra,
    }


async def open_journal(path: Path, **kw: Any) -> Journal:
    return await Journal.open(path, store_id="S1", terminal_id="T1", **kw)


async def test_seq_receipt_and_chain(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    results = [await j.commit(sale()) for _ in range(3)]
    assert [r.seq for r in results] == [1, 2, 3]
    assert [r.receipt_no for r in results] == ["S1-T1-000001", "S1-T1-000002", "S1-T1-000003"]
    entries = await j.unacked(0, 10)
    assert entries[0].prev_hash == bytes(32)
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].hash.hex() == results[2].hash
    await j.close()
    report = verify_journal(tmp_path / "j.db")
    assert (report.first_seq, report.last_seq, report.entries) == (1, 3, 3)


async def test_a_group_holds_at_most_max_group_sales(tmp_path: Path) -> None:
    """One sale more than MAX_GROUP (256, spelled out so that a change to it shows), all
    waiting at once: two group commits, two fsyncs."""
    j = await open_journal(tmp_path / "j.db")
    results = await asyncio.gather(*(j.commit(sale()) for _ in range(257)))
    assert sorted(r.seq for r in results) == list(range(1, 258))
    assert j.stats().sale_transactions == 2
    await j.close()


async def test_concurrent_commits_are_gapless_and_grouped(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    results = await asyncio.gather(*(j.commit(sale()) for _ in range(600)))
    assert sorted(r.seq for r in results) == list(range(1, 601))
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 600


async def test_same_id_same_content_is_a_duplicate(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    s = sale()
    first = await j.commit(s)
    again = await j.commit(dict(s))
    assert again.duplicate and not first.duplicate
    assert (again.seq, again.receipt_no, again.hash) == (first.seq, first.receipt_no, first.hash)
    assert j.stats().last_seq == 1
    await j.commit(sale())  # the writer is done with the group of the retry
    assert j.health().last_error is None  # a group of retries alone writes nothing: no error
    await j.close()


async def test_same_id_in_one_group(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    s = sale()
    other = dict(s, meta={"note": "changed"})
    results = await asyncio.gather(
        j.commit(s), j.commit(dict(s)), j.commit(other), return_exceptions=True
    )
    assert results[0].seq == 1 and results[1].duplicate  # type: ignore[union-attr]
    assert isinstance(results[2], SaleConflictError)
    await j.close()


async def test_same_id_other_content_is_an_error(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    s = sale()
    await j.commit(s)
    with pytest.raises(SaleConflictError, match="already committed as seq 1"):
        await j.commit(
            dict(
                s,
                total=200,
                lines=[{"sku": "A", "qty": 2, "amount": 200}],
                payments=[{"method": "cash", "amount": 200}],
            )
        )
    fresh = await j.commit(sale())
    assert fresh.seq == 2  # a conflict takes no seq
    await j.close()


async def test_duplicates_mixed_with_new_sales_after_restart(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    old = sale()
    await j.commit(old)
    await j.close()
    j = await open_journal(tmp_path / "j.db")
    results = await asyncio.gather(j.commit(sale()), j.commit(old), j.commit(sale()))
    assert results[1].duplicate and results[1].seq == 1
    assert sorted(r.seq for r in (results[0], results[2])) == [2, 3]
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 3


async def test_invalid_sale_is_not_journaled(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    await j.commit(sale())
    with pytest.raises(ValidationError):
        await j.commit({"id": "x"})
    assert j.stats().last_seq == 1
    await j.close()


async def test_outbox_state(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    ids = [(await j.commit(sale())) for _ in range(5)]
    assert j.stats().pending == 5
    assert [e.seq for e in await j.unacked(0, 2)] == [1, 2]
    assert await j.mark_acked(3) == 3
    assert await j.mark_acked(2) == 3  # acks are cumulative; an older one changes nothing
    assert await j.mark_acked(99) == 5  # never beyond what exists
    await j.mark_acked(3)
    assert [e.seq for e in await j.unacked(0, 10)] == []
    stats = j.stats()
    assert (stats.pending, stats.acked_upto) == (0, 5)
    assert stats.outbox() == {"pending": 0, "acked_upto": 5, "last_seq": 5}
    assert stats.last_ack_at is not None and stats.oldest_pending_created_at is None
    assert ids
    await j.close()


async def test_stats_never_mix_an_ack_with_the_age_before_it(tmp_path: Path) -> None:
    """An `outbox` event taken while an ack is being recorded: "nothing pending" comes with
    no age, and a pending sale with its own (the drain's last event said so in CI)."""
    j = await open_journal(tmp_path / "j.db")
    for _ in range(3):
        await j.commit(sale())
    created = {e.seq: e.created_at for e in await j.unacked(0, 3)}
    seen = []
    for upto in (2, 3):
        recording = asyncio.create_task(j.mark_acked(upto))
        while not recording.done():
            stats = j.stats()
            seen.append((stats.acked_upto, stats.oldest_pending_created_at))
            await asyncio.sleep(0)
    assert seen and set(seen) <= {(0, created[1]), (2, created[3]), (3, None)}
    await j.close()


async def test_state_survives_reopen(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    s = sale()
    for _ in range(3):
        await j.commit(sale())
    await j.commit(s)
    await j.mark_acked(2)
    await j.close()
    j = await open_journal(tmp_path / "j.db")
    assert (j.stats().last_seq, j.stats().acked_upto, j.stats().pending) == (4, 2, 2)
    (third,) = await j.unacked(2, 1)
    assert j.stats().oldest_pending_created_at == third.created_at
    found = await j.get(s["id"])
    assert found is not None and found[0].seq == 4 and found[1] is False
    assert (await j.commit(sale())).seq == 5
    await j.close()


async def test_wait_committed_wakes_on_commit(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    waiter = asyncio.create_task(j.wait_committed(0))
    await asyncio.sleep(0)
    assert not waiter.done()
    await j.commit(sale())
    async with asyncio.timeout(5):
        await waiter
    await j.close()


async def test_purge_keeps_anchor_and_verify_passes(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    for _ in range(10):
        await j.commit(sale())
    await j.mark_acked(6)
    assert await j.purge(retain_days=0) == 6
    assert await j.purge(retain_days=0) == 0
    assert await j.purge(retain_days=30) == 0
    assert (await j.commit(sale())).seq == 11
    assert await j.retained_from() == 7  # 1-6 purged
    assert [e.seq for e in await j.retained(0, 8, 10)] == [7, 8]
    await j.close()
    report = verify_journal(tmp_path / "j.db")
    assert (report.anchor_seq, report.first_seq, report.last_seq) == (6, 7, 11)


async def test_purge_everything_then_continue(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    for _ in range(3):
        await j.commit(sale())
    await j.mark_acked(3)
    await j.purge(retain_days=0)
    await j.close()
    j = await open_journal(tmp_path / "j.db")
    assert (await j.commit(sale())).seq == 4
    await j.close()
    assert verify_journal(tmp_path / "j.db").last_seq == 4


def _tamper(path: Path, sql: str, *params: Any) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql, params)


@pytest.mark.parametrize(
    ("sql", "seq", "words"),
    [
        ("UPDATE entries SET sale = replace(sale, '100', '999') WHERE seq = 3", 3, "altered"),
        ("DELETE FROM entries WHERE seq = 3", 3, "missing"),
        ("UPDATE entries SET receipt_no = 'X' WHERE seq = 4", 4, "altered"),
        ("UPDATE entries SET created_at = '2020-01-01T00:00:00.000Z' WHERE seq = 2", 2, "altered"),
    ],
)
async def test_verify_names_the_first_bad_seq(
    tmp_path: Path, sql: str, seq: int, words: str
) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(5):
        await j.commit(sale())
    await j.close()
    _tamper(path, sql)
    with pytest.raises(ChainError) as info:
        verify_journal(path)
    assert info.value.seq == seq and words in info.value.problem


async def test_verify_detects_a_swap(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(4):
        await j.commit(sale())
    await j.close()
    with sqlite3.connect(path) as conn:
        a, b = conn.execute("SELECT sale FROM entries WHERE seq IN (2, 3) ORDER BY seq").fetchall()
        conn.execute("UPDATE entries SET sale = ? WHERE seq = 2", b)
        conn.execute("UPDATE entries SET sale = ? WHERE seq = 3", a)
    with pytest.raises(ChainError) as info:
        verify_journal(path)
    assert info.value.seq == 2


async def test_verify_reads_while_the_journal_is_open(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    for _ in range(3):
        await j.commit(sale())
    assert verify_journal(tmp_path / "j.db").last_seq == 3
    await j.commit(sale())
    assert verify_journal(tmp_path / "j.db").last_seq == 4
    await j.close()


async def test_corrupt_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(JournalError, match="not a SQLite file"):
        await open_journal(path)
    assert path.read_bytes().startswith(b"this is not sqlite")


async def test_damaged_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(50):
        await j.commit(sale(meta={"pad": "x" * 500}))
    await j.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # trash the schema page after the header
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="corrupt|not an edged journal|malformed"):
        await open_journal(path)


async def test_foreign_terminal_journal_is_refused(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    await j.close()
    with pytest.raises(JournalError, match="belongs to store 'S1' terminal 'T1'"):
        await Journal.open(tmp_path / "j.db", store_id="S1", terminal_id="T2")


async def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(JournalError, match="not an edged journal"):
        await open_journal(tmp_path / "other.db")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    await j.close()
    _tamper(tmp_path / "j.db", "PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="newer than this edged supports"):
        await open_journal(tmp_path / "j.db")


async def test_disk_full_fails_the_commit_and_keeps_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    first = await j.commit(sale())
    # Cap the file at its current size: SQLite then reports SQLITE_FULL, as on a full disk.
    await j._db.execute_fetchall("PRAGMA max_page_count = 1")
    with pytest.raises(JournalFullError, match="disk full"):
        await j.commit(sale(meta={"pad": "x" * 20000}))
    await j._db.execute_fetchall("PRAGMA max_page_count = 1000000")
    after = await j.commit(sale())
    assert (first.seq, after.seq) == (1, 2)  # the failed commit took no seq
    await j.close()
    assert verify_journal(path).last_seq == 2


async def test_a_journal_opens_from_a_path_given_as_text(tmp_path: Path) -> None:
    j = await Journal.open(str(tmp_path / "j.db"), store_id="S1", terminal_id="T1")
    assert j.path == tmp_path / "j.db"
    assert (await j.commit(sale())).seq == 1
    assert j.damaged.count == 0  # nothing read yet that could be damaged
    await j.close()


def _sqlite_threads() -> set[threading.Thread]:
    """Live threads but the event loop's executor (asyncio.to_thread): aiosqlite's, mainly."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio")}


async def test_a_journal_sqlite_cannot_read_is_refused_and_its_connection_closed(
    tmp_path: Path,
) -> None:
    """A table lost (a file edited by hand): the open fails on it, as a JournalError, and
    leaves no connection (no aiosqlite thread) behind."""
    path = tmp_path / "j.db"
    await (await open_journal(path)).close()
    _tamper(path, "DROP TABLE outbox")
    before = _sqlite_threads()
    with pytest.raises(JournalError, match="no such table: outbox"):
        await open_journal(path)
    for thread in _sqlite_threads() - before:
        await asyncio.to_thread(thread.join, 5)  # a closed connection's thread ends at once
        assert not thread.is_alive()


async def test_a_journal_sqlite_cannot_open_is_a_journal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite refusing the file after the preflight read it (as root, no mode makes it so)."""

    async def refused(*args: Any, **kw: Any) -> Any:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(aiosqlite, "connect", refused)
    with pytest.raises(JournalError, match="cannot open for writing"):
        await open_journal(tmp_path / "j.db")


async def test_a_journal_taken_out_of_wal_mode_is_put_back_at_open(tmp_path: Path) -> None:
    """Group commit and the lost -wal check rely on WAL; a tool may have switched it off."""
    path = tmp_path / "j.db"
    await (await open_journal(path)).close()
    _tamper(path, "PRAGMA journal_mode=DELETE")
    j = await open_journal(path)
    assert await j.execute("PRAGMA journal_mode") == [("wal",)]
    await j.close()


async def test_a_journal_without_identity_takes_its_first_openers(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    await (await open_journal(path)).close()
    _tamper(path, "DELETE FROM identity")  # as an older journal may lack it
    await (await open_journal(path)).close()
    with pytest.raises(JournalError, match="belongs to store 'S1' terminal 'T1'"):
        await Journal.open(path, store_id="S1", terminal_id="T2")


async def test_a_schemaless_file_with_a_foreign_wal_is_a_lost_wal(tmp_path: Path) -> None:
    """A main file with no tables (the schema was only ever in a -wal) beside a -wal SQLite
    cannot use: the journal's -wal was lost, not a foreign file."""
    path = tmp_path / "j.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # a header, no tables
    Path(f"{path}-wal").write_bytes(b"\0" * 4096)
    with pytest.raises(WalLostError):
        await open_journal(path)


async def test_a_journal_that_cannot_say_open_is_refused(tmp_path: Path) -> None:
    """Any error but a full disk marking the file "open" fails the open: a lost -wal would
    go unnoticed otherwise."""
    path = tmp_path / "j.db"
    await (await open_journal(path)).close()
    refuse = "SELECT RAISE(ABORT, 'refused')"
    _tamper(path, f"CREATE TRIGGER refuse BEFORE UPDATE ON run_state BEGIN {refuse}; END")
    with pytest.raises(JournalError, match="refused"):
        await open_journal(path)


async def test_a_failed_purge_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A statement of the purge refused mid-transaction (a trigger here; SQLite keeps the
    transaction open after such an error): it is rolled back, and the next sale is durable."""
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(3):
        await j.commit(sale())
    await j.mark_acked(3)
    refuse = "SELECT RAISE(ABORT, 'kept')"
    await j.execute(f"CREATE TRIGGER keep BEFORE DELETE ON entries BEGIN {refuse}; END")
    with pytest.raises(JournalError, match="kept"):
        await j.purge(retain_days=0)
    assert not j._db.in_transaction
    assert (await j.commit(sale())).seq == 4
    await j.close()
    assert verify_journal(path).last_seq == 4


async def test_skip_past_declares_nothing_the_journal_holds(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    for _ in range(3):
        await j.commit(sale())
    with capture_logs() as logs:
        assert j.skip_past(3, "not behind") is False
        assert j.skip_past(2, "not behind") is False
    assert not [e for e in logs if e["event"] == "journal_tail_lost"]
    assert (await j.commit(sale())).seq == 4
    assert j.gaps()["count"] == 0
    await j.close()


async def test_an_open_with_no_reader_about_is_checkpointed_without_a_warning(
    tmp_path: Path,
) -> None:
    with capture_logs() as logs:
        await (await open_journal(tmp_path / "j.db")).close()
    events = [e["event"] for e in logs]
    assert "journal_opened" in events and "journal_open_not_checkpointed" not in events


async def test_retained_reads_acknowledged_entries_up_to_the_head(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    for _ in range(5):
        await j.commit(sale())
    await j.mark_acked(3)
    assert [e.seq for e in await j.retained(1, 4, 10)] == [2, 3, 4]  # acked ones included
    assert [e.seq for e in await j.retained(0, 99, 3)] == [1, 2, 3]
    assert [e.seq for e in await j.retained(3, 99, 10)] == [4, 5]
    await j.close()


async def test_an_ack_without_the_stores_clock_keeps_the_last_one(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = await open_journal(path)
    for _ in range(3):
        await j.commit(sale())
    assert j.last_ack_store_at is None
    await j.mark_acked(1, "2026-12-06T10:00:00.000Z")
    await j.mark_acked(2)
    assert j.last_ack_store_at == "2026-12-06T10:00:00.000Z"
    await j.close()
    j = await open_journal(path)
    assert j.last_ack_store_at == "2026-12-06T10:00:00.000Z"
    assert j.stats().acked_upto == 2
    await j.close()


def _files_open_under(folder: Path) -> list[str]:
    """The files under `folder` this process holds open (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                found.append(target)
    return found


async def test_close_leaves_no_file_open(tmp_path: Path) -> None:
    j = await open_journal(tmp_path / "j.db")
    await j.commit(sale())
    assert _files_open_under(tmp_path)
    await j.close()
    assert _files_open_under(tmp_path) == []
